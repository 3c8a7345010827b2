"""``/metrics`` as prometheus-client serves it: negotiation, process and build metrics, and
cluster-wide gauges exported once (by the scheduler-lease holder) across replicas."""

from __future__ import annotations

import contextlib
import gzip
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client import CollectorRegistry, Gauge, generate_latest

from assetd.daemon.app import Daemon
from assetd.daemon.embedded import EmbeddedNats, free_port
from assetd.metrics import LeaseHolderCollector
from tests.conftest import daemon_settings, running_daemon
from tests.helpers import wait_for

CLUSTER = {"assetd_dlq_depth", "assetd_consumer_lag", "assetd_outbox_pending"}
OPENMETRICS = "application/openmetrics-text; version=1.0.0"


def _settings(nats_url: str, db_url: str, data_dir: Path) -> Any:
    return daemon_settings(nats_url, db_url, data_dir, lease_ttl=1.5).model_copy(
        update={"http_port": free_port()})


@pytest.fixture
async def web_daemon(nc: Any, nats_server: EmbeddedNats, tmp_path: Path) -> AsyncIterator[Daemon]:
    """A daemon with its HTTP endpoints on a free port, holding the scheduler lease."""
    async with running_daemon(_settings(nats_server.url, f"sqlite:///{tmp_path / 'r.db'}",
                                        tmp_path)) as d:
        await wait_for(lambda: _true(d.scheduler.is_leader), what="lease taken")
        yield d


async def _true(value: bool) -> bool:
    return value


async def _get(daemon: Daemon, **headers: str) -> tuple[dict[str, str], bytes]:
    """Scrape ``/metrics`` as Prometheus does: headers and the raw (undecoded) body."""
    url = f"http://127.0.0.1:{daemon.settings.http_port}/metrics"
    async with aiohttp.ClientSession(auto_decompress=False) as http, \
            http.get(url, headers={"Accept-Encoding": "identity", **headers}) as r:
        assert r.status == 200
        return dict(r.headers), await r.read()


def _names(text: str) -> set[str]:
    """The series names of an exposition."""
    return {m[0] for line in text.splitlines() if not line.startswith("#")
            if (m := re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line))}


async def test_gzip_when_the_scraper_accepts_it(web_daemon: Daemon) -> None:
    """``Accept-Encoding: gzip`` gets a gzip body; without it the body is plain text."""
    headers, body = await _get(web_daemon, **{"Accept-Encoding": "gzip"})
    assert headers["Content-Encoding"] == "gzip"
    assert b"assetd_events" in gzip.decompress(body)
    headers, body = await _get(web_daemon)
    assert "Content-Encoding" not in headers and b"assetd_events" in body
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")


async def test_openmetrics_when_the_scraper_asks_for_it(web_daemon: Daemon) -> None:
    """``Accept: application/openmetrics-text`` gets OpenMetrics, ending with ``# EOF``."""
    headers, body = await _get(web_daemon, Accept=OPENMETRICS)
    assert headers["Content-Type"].startswith(OPENMETRICS)
    assert body.decode().endswith("# EOF\n")
    _, plain = await _get(web_daemon)
    assert b"# EOF" not in plain


async def test_process_build_and_no_created_series(web_daemon: Daemon) -> None:
    """Process, platform and GC metrics and ``assetd_build_info`` are exported, in both
    formats, and no ``_created`` series is."""
    for accept in ("text/plain", OPENMETRICS):
        _, body = await _get(web_daemon, Accept=accept)
        text = body.decode()
        assert {"process_resident_memory_bytes", "process_cpu_seconds_total",
                "python_info", "python_gc_objects_collected_total",
                "assetd_build_info", "assetd_lease_holder"} <= _names(text)
        assert re.search(r'^assetd_build_info\{python="3\.\d+\.\d+\S*",version="[^"]+"\} 1\.0$',
                         text, re.M), text
        assert "_created" not in text


async def test_name_parameter_restricts_the_answer(web_daemon: Daemon) -> None:
    """``?name[]=`` answers only the series named, as prometheus-client's handlers do."""
    url = f"http://127.0.0.1:{web_daemon.settings.http_port}/metrics"
    async with aiohttp.ClientSession() as http, \
            http.get(url, params={"name[]": "assetd_lease_holder"}) as r:
        assert _names(await r.text()) == {"assetd_lease_holder"}


def test_collector_yields_only_while_holding() -> None:
    """The cluster-wide collector exports its gauges on the holder and nothing elsewhere."""
    registry = CollectorRegistry()
    dlq = Gauge("assetd_dlq_depth", "x", registry=None)
    collector = LeaseHolderCollector(dlq)
    registry.register(collector)
    dlq.set(3)
    assert _names(generate_latest(registry).decode()) == set()
    collector.holding = True
    assert "assetd_dlq_depth 3.0" in generate_latest(registry).decode()
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        Gauge("assetd_dlq_depth", "clash", registry=registry)


async def _scrape_names(daemon: Daemon) -> set[str]:
    return _names((await _get(daemon))[1].decode())


async def test_only_the_lease_holder_exports_cluster_gauges(
    nc: Any, nats_server: EmbeddedNats, tmp_path: Path, db_url: str
) -> None:
    """Two replicas on one registry and one NATS: the lease holder alone exports the DLQ
    depth, consumer lag and outbox backlog (with assetd_lease_holder 1); when it stops, the
    other replica takes the lease and exports them instead."""
    async with contextlib.AsyncExitStack() as stack:
        a, b = [await stack.enter_async_context(running_daemon(
            _settings(nats_server.url, db_url, tmp_path / name))) for name in ("a", "b")]

        async def one_holder() -> bool:
            return a.scheduler.is_leader != b.scheduler.is_leader
        await wait_for(one_holder, what="one replica holds the lease")
        holder, other = (a, b) if a.scheduler.is_leader else (b, a)
        held, not_held = await _scrape_names(holder), await _scrape_names(other)
        assert held >= CLUSTER and not CLUSTER & not_held
        assert {"assetd_lease_holder", "process_resident_memory_bytes"} <= not_held
        assert "assetd_lease_holder 1.0" in (await _get(holder))[1].decode()
        assert "assetd_lease_holder 0.0" in (await _get(other))[1].decode()
        await holder.stop()

        async def other_took_over() -> bool:
            return await _scrape_names(other) >= CLUSTER
        await wait_for(other_took_over, what="the other replica exports the cluster gauges")
