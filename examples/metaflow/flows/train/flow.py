"""Train the fraud model on the latest transactions, evaluate it on the day before, and
register it; assetd's rules decide whether it becomes the champion.

    python flows/train/flow.py run
"""

from metaflow import step

from assetd.metaflow import ProjectFlow


def fit(rows):
    """The amount threshold with the best F1 on ``rows``."""
    candidates = sorted({round(r["amount"]) for r in rows})
    return {"threshold": max(candidates, key=lambda t: f1({"threshold": t}, rows)),
            "algo": "amount-threshold"}


def f1(model, rows):
    """F1 of ``model`` on labelled ``rows``."""
    flagged = [r["amount"] >= model["threshold"] for r in rows]
    tp = sum(f and r["fraud"] for f, r in zip(flagged, rows, strict=True))
    fp = sum(f and not r["fraud"] for f, r in zip(flagged, rows, strict=True))
    fn = sum(r["fraud"] and not f for f, r in zip(flagged, rows, strict=True))
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


class TrainFraudModel(ProjectFlow):
    @step
    def start(self):
        train = self.prj.get_data("transactions")                        # latest
        holdout = self.prj.get_data("transactions", instance="latest-1")  # the day before
        self.model = fit(train)
        self.f1_score = round(f1(self.model, holdout), 4)
        self.verdict = self.prj.register_model(
            "fraud_model", "model",
            annotations={"f1_score": self.f1_score, "threshold": self.model["threshold"],
                         "train_rows": len(train)},
            tags={"algo": self.model["algo"]}, wait="decision")
        print(f"verdict: {self.verdict}")
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    TrainFraudModel()
