"""Start a retraining flow whenever assetd says a model needs it.

    ASSETD_PROJECT=fraud python examples/retrain_listener.py

Follows ``retrain_required`` for every asset of the project from a durable consumer;
replace ``trigger`` with your orchestrator's call (Metaflow, Argo, Airflow …).
"""

from __future__ import annotations

import asyncio
from typing import Any

from assetd.client import AssetClient


def trigger(event: dict[str, Any]) -> None:
    d = event["data"]
    print(f"retrain {event['subject']}: {d['reason']} (trigger {d['trigger_asset']} "
          f"{d['trigger_instance']}, event {event['id']})", flush=True)


async def main() -> None:
    async with AssetClient(source="retrain-listener") as client:
        async for event in client.events(type="retrain_required", durable="retrain-listener"):
            trigger(event)  # idempotent by event["id"] if your orchestrator can be


if __name__ == "__main__":
    asyncio.run(main())
