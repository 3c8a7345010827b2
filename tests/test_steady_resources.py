"""A daemon's own resources do not grow with the events it handles (a long-lived daemon
must not leak: a subscription per relay batch once took full garbage collections to 250 ms
and the resident memory past 200 MB within a minute at 1,000 events/s)."""

from __future__ import annotations

import asyncio
import gc
from pathlib import Path

from assetd.client import AssetClient
from assetd.daemon.embedded import EmbeddedNats
from tests.conftest import daemon_settings, running_daemon


async def test_subscriptions_tasks_and_tracked_objects_stay_flat(
        nats_server: EmbeddedNats, tmp_path: Path, db_url: str) -> None:
    settings = daemon_settings(nats_server.url, db_url, tmp_path)
    async with running_daemon(settings) as d, \
            AssetClient("steady", settings=d.settings, timeout=15) as c:
        nc = d.broker.connection

        async def footprint() -> tuple[int, int, int]:
            await asyncio.sleep(0.1)  # the last batch's relay and acks have settled
            gc.collect()
            return len(nc._subs), len(asyncio.all_tasks()), len(gc.get_objects())

        for i in range(5):  # warm up: every lazy subscription and cache made once
            await c.register_model("m", annotations={"i": i}, wait=True)
        subs, tasks, objects = await footprint()
        for i in range(60):  # one relay batch each
            await c.register_model("m", annotations={"i": i}, wait=True)
        subs2, tasks2, objects2 = await footprint()
    assert subs2 == subs, f"subscriptions {subs} -> {subs2} over 60 events"
    assert tasks2 <= tasks, f"tasks {tasks} -> {tasks2} over 60 events"
    # a leak per batch shows as hundreds of objects per event; caches may settle a little
    assert objects2 - objects < 2000, f"tracked objects {objects} -> {objects2}"
