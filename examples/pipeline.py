"""A training step that consumes data and registers its model (blocking client).

    ASSETD_PROJECT=fraud python examples/pipeline.py 0.86
"""

from __future__ import annotations

import sys

from assetd.client import SyncAssetClient


def main(f1: float) -> None:
    with SyncAssetClient(source="flows/TrainFraud/manual") as assets:
        data = assets.consume("transactions")
        model = assets.register_model(
            "fraud_model", annotations={"f1_score": f1, "latency_ms": 12},
            inputs=[f"transactions@{data['instance']}"], uri="s3://models/fraud/manual",
            wait=True)
        print(f"registered fraud_model {model['instance']} from transactions {data['instance']}")
        assets.report_quality("fraud_model", "holdout_eval", True, instance=model["instance"])


if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else 0.86)
