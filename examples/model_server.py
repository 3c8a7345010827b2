"""A model server that always serves the current champion and hot-swaps on asset_promoted.

    ASSETD_PROJECT=fraud python examples/model_server.py fraud_model

It loads ``@champion`` at start, then follows ``asset_promoted`` and ``alias_rolled_back``
from a durable consumer, so a restarted server misses no promotion. When an invalidation
clears the champion (no earlier valid holder), it keeps serving what it has and says so.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from assetd.client import AssetClient, EventRejectedError, QueryError


class ModelServer:
    """Holds the model currently served; ``load`` stands in for fetching the artifact."""

    def __init__(self, asset: str) -> None:
        self.asset = asset
        self.serving: dict[str, Any] | None = None

    def load(self, instance: dict[str, Any]) -> None:
        uri = instance.get("reference", {}).get("uri")
        print(f"serving {self.asset} {instance['instance']} from {uri}", flush=True)
        self.serving = instance

    def keep(self, why: str) -> None:
        held = self.serving["instance"] if self.serving else "nothing"
        print(f"no champion for {self.asset} now ({why}); still serving {held}", flush=True)


async def main(asset: str) -> None:
    server = ModelServer(asset)
    async with AssetClient(source=f"model-server/{asset}") as client:
        try:
            server.load(await client.consume(asset, "@champion",
                                             consumer={"name": f"model-server/{asset}"}))
        except QueryError as exc:
            print(f"no champion yet ({exc.message}); waiting for a promotion", flush=True)
        async for event in client.events(asset=asset, durable=f"model-server-{asset}"):
            if event["type"] in ("asset_promoted", "alias_rolled_back"):
                if event["data"]["alias"] != "champion":
                    continue
                try:
                    server.load(await client.consume(asset, "@champion",
                                                     consumer={"name": f"model-server/{asset}"}))
                except QueryError as exc:  # the champion was cleared: keep the model in hand
                    if exc.code != "not_found":
                        raise
                    server.keep(exc.message)
                except EventRejectedError as exc:  # it moved again meanwhile: the next
                    server.keep(exc.reason)        # event says where to


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "fraud_model"))
