"""/healthz, /readyz and /metrics: scraped for real, counters move with traffic."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from assetd.client import AssetClient
from assetd.daemon.app import Daemon
from assetd.daemon.demo import DEMO_RULES
from assetd.daemon.embedded import EmbeddedNats, free_port
from tests.conftest import daemon_settings, running_daemon


@pytest.fixture
async def web_daemon(nc: Any, nats_server: EmbeddedNats, tmp_path: Path) -> AsyncIterator[Daemon]:
    """A daemon with its HTTP endpoints on a free port and the demo's rules."""
    rules = tmp_path / "rules.yaml"
    rules.write_text(DEMO_RULES)
    settings = daemon_settings(nats_server.url, f"sqlite:///{tmp_path / 'r.db'}", tmp_path,
                               rules=rules).model_copy(update={"http_port": free_port()})
    async with running_daemon(settings) as d:
        yield d


def _value(text: str, name: str, **labels: str) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    pattern = rf"^{re.escape(name)}(\{{{re.escape(want)}\}})? (\S+)$" if want else \
        rf"^{re.escape(name)} (\S+)$"
    for line in text.splitlines():
        if m := re.match(pattern, line):
            return float(m.groups()[-1])
    return 0.0


async def test_health_ready_and_metrics_move_with_traffic(web_daemon: Daemon) -> None:
    """Counters for events, decisions, batches and publishing rise after registrations."""
    base = f"http://127.0.0.1:{web_daemon.settings.http_port}"
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/healthz") as r:
            assert r.status == 200 and (await r.json()) == {"alive": True}
        async with http.get(f"{base}/readyz") as r:
            body = await r.json()
            assert r.status == 200 and body == {"ready": True, "checks": {
                "nats": True, "database": True, "streams": True, "consumer": True,
                "loops": True, "rules": True}}
        async with http.get(f"{base}/metrics") as r:
            before = await r.text()
            assert r.headers["Content-Type"].startswith("text/plain")
        async with AssetClient("fraud", settings=web_daemon.settings) as c:
            for f1 in (0.8, 0.9, 0.5):
                await c.register_model("fraud_model", annotations={"f1_score": f1}, wait=True)
            await c.nc.jetstream().publish("assetd.in.fraud.main.x.asset_registered", b"junk")
            await c.register_data("after", wait=True)
        async with http.get(f"{base}/metrics") as r:
            after = await r.text()
    assert _value(after, "assetd_events_total", type="asset_registered", outcome="applied") \
        - _value(before, "assetd_events_total", type="asset_registered",
                 outcome="applied") == 4
    assert _value(after, "assetd_events_total", type="asset_registered",
                  outcome="rejected") == 1
    assert _value(after, "assetd_decisions_total", outcome="promoted") == 2
    assert _value(after, "assetd_decisions_total", outcome="gates_failed") == 1
    assert _value(after, "assetd_batch_size_count") >= 1
    assert _value(after, "assetd_batch_seconds_count") >= 1
    assert _value(after, "assetd_outbound_published_total") >= 5
    assert _value(after, "assetd_dlq_depth") == 1
    assert _value(after, "assetd_consumer_lag") == 0
    assert _value(after, "assetd_rules") == 2
    assert _value(after, "assetd_rules_loaded_timestamp_seconds") > 0


async def test_readyz_fails_when_a_dependency_is_missing(web_daemon: Daemon, js: Any) -> None:
    """A missing stream makes /readyz answer 503 naming the check."""
    await js.delete_stream("ASSETD_DLQ")
    async with aiohttp.ClientSession() as http, \
            http.get(f"http://127.0.0.1:{web_daemon.settings.http_port}/readyz") as r:
        assert r.status == 503 and (await r.json())["checks"]["streams"] is False
