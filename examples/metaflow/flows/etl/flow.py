"""Extract a day of card transactions and register them as the `transactions` data asset.

    python flows/etl/flow.py run --seed 7 [--shift 25]

`--shift` adds that much to every amount (a changed upstream: what the drift monitor sees).
"""

import random

from metaflow import Parameter, step

from assetd.metaflow import ProjectFlow


class TransactionsETL(ProjectFlow):
    seed = Parameter("seed", type=int, default=1, help="seed of the synthetic day")
    rows = Parameter("rows", type=int, default=2000)
    shift = Parameter("shift", type=float, default=0.0, help="added to every amount")

    @step
    def start(self):
        rng = random.Random(self.seed)
        self.transactions = [
            {"amount": round(rng.gauss(150, 35) if fraud else rng.gauss(50, 18), 2)
             + self.shift, "fraud": fraud}
            for fraud in (rng.random() < 0.05 for _ in range(self.rows))]
        frauds = sum(t["fraud"] for t in self.transactions)
        self.prj.register_data("transactions", "transactions",
                               annotations={"rows": len(self.transactions),
                                            "fraud_rate": frauds / len(self.transactions)},
                               tags={"seed": self.seed, "source": "synthetic"})
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    TransactionsETL()
