"""Scheduled jobs under a lease: asset_stale once per episode, pending timeout, failover."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from assetd.client import AssetClient
from assetd.daemon.app import Daemon
from assetd.daemon.embedded import EmbeddedNats
from tests.conftest import daemon_settings, running_daemon
from tests.helpers import out_events, wait_for

RULES = """\
version: 1
rules:
  - asset: daily
    freshness: {max_age: 1s}
"""


def _settings(nats: EmbeddedNats, tmp: Path, **kw: Any) -> Any:
    rules = tmp / "rules.yaml"
    rules.write_text(RULES)
    return daemon_settings(nats.url, f"sqlite:///{tmp / 'r.db'}", tmp, rules=rules,
                           scheduler_interval=0.2, lease_ttl=1.0, **kw)


@pytest.fixture
async def sched_daemon(nc: Any, nats_server: EmbeddedNats,
                       tmp_path: Path) -> AsyncIterator[Daemon]:
    async with running_daemon(_settings(nats_server, tmp_path, pending_timeout=0.5)) as d:
        yield d


async def test_asset_stale_once_per_episode(sched_daemon: Daemon, js: Any) -> None:
    """No new ready instance within max_age → asset_stale, once; a new instance ends the
    episode and the next lapse reports again."""
    async with AssetClient("fraud", settings=sched_daemon.settings) as c:
        await c.register_data("daily", wait=True)
        (first,) = await wait_for(lambda: out_events(js, "asset_stale"), what="stale v1")
        assert first["data"]["last_instance"] == "v1"
        assert first["data"]["max_age_seconds"] == 1.0
        runs = sched_daemon.scheduler.runs
        await wait_for(lambda: _ran(sched_daemon, runs + 3), what="three more scheduler runs")
        assert len(await out_events(js, "asset_stale")) == 1, "once per episode"
        await c.register_data("daily", wait=True)
        await wait_for(lambda: _stale_count(js, 2), what="stale again after v2")
        rows = await c.request("decisions", asset="daily")
        assert [r["outcome"] for r in rows] == ["stale", "stale"]


async def test_pending_instance_times_out(sched_daemon: Daemon, js: Any) -> None:
    """Pending longer than ASSETD_PENDING_TIMEOUT → abandoned, with instance_abandoned."""
    async with AssetClient("fraud", settings=sched_daemon.settings) as c:
        await c.register_data("upload", state="pending", wait=True)
        (ev,) = await wait_for(lambda: out_events(js, "instance_abandoned"), what="abandoned")
        assert ev["data"]["instance"] == "v1" and "pending for more than" in ev["data"]["reason"]
        assert (await c.peek("upload", "v1"))["state"] == "abandoned"


async def test_lease_moves_when_its_holder_dies_or_stops(nc: Any, nats_server: EmbeddedNats,
                                                         tmp_path: Path) -> None:
    """One leader at a time; it moves when the leader stops renewing, and on shutdown."""
    a = Daemon(_settings(nats_server, tmp_path))
    b = Daemon(_settings(nats_server, tmp_path).model_copy(update={"data_dir": tmp_path / "b"}))
    await a.start()
    await b.start()
    try:
        await wait_for(lambda: _one_leader(a, b), what="a leader")
        leader, other = (a, b) if a.scheduler.is_leader else (b, a)
        st = await other.status()
        assert st["lease"]["holder"] == leader.scheduler.holder
        assert st["lease"]["this_replica"] is False
        assert leader.scheduler._aps is not None
        leader.scheduler._aps.pause()  # "dies": stops renewing, keeps the row
        await wait_for(lambda: _leads(other), timeout=10, what="takeover after expiry")
        leader.scheduler.is_leader = False
    finally:
        await a.stop()
        await b.stop()


async def _ran(d: Daemon, n: int) -> bool:
    return d.scheduler.runs >= n


async def _stale_count(js: Any, n: int) -> bool:
    return len(await out_events(js, "asset_stale")) >= n


async def _one_leader(a: Daemon, b: Daemon) -> bool:
    return [a.scheduler.is_leader, b.scheduler.is_leader].count(True) == 1


async def _leads(d: Daemon) -> bool:
    return d.scheduler.is_leader
