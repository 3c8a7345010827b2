"""Queries are answered concurrently and boundedly: a slow query never holds up the others."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from assetd.client import AssetClient
from assetd.daemon.app import Daemon
from assetd.daemon.embedded import EmbeddedNats
from tests.conftest import daemon_settings, running_daemon


class Gate:
    """A test-only hook around ``Queries._run``: ``lineage`` reads block until released."""

    def __init__(self, daemon: Daemon) -> None:
        self.release = threading.Event()
        self.lock = threading.Lock()
        self.inside = self.peak = 0
        self.entered = threading.Condition(self.lock)
        self._run: Callable[..., Any] = daemon.queries._run

    def __call__(self, project: str, method: str, args: dict[str, Any]) -> Any:
        if method == "lineage":
            with self.lock:
                self.inside += 1
                self.peak = max(self.peak, self.inside)
                self.entered.notify_all()
            try:
                assert self.release.wait(60), "the test never released the gate"
            finally:
                with self.lock:
                    self.inside -= 1
        return self._run(project, method, args)

    def wait_inside(self, n: int) -> None:
        """Block until ``n`` lineage reads are held at the gate."""
        with self.entered:
            assert self.entered.wait_for(lambda: self.inside >= n, 60)


@contextmanager
def gated(daemon: Daemon) -> Iterator[Gate]:
    gate = Gate(daemon)
    daemon.queries._run = gate  # type: ignore[method-assign]
    try:
        yield gate
    finally:
        gate.release.set()


async def _chain(client: AssetClient) -> None:
    await client.register_data("raw", wait=True)
    await client.register_data("features", inputs=["raw"], wait=True)
    await client.register_model("fraud_model", inputs=["features@v1"], wait=True)


async def test_resolve_answers_while_a_slow_lineage_runs(client: AssetClient,
                                                         daemon: Daemon) -> None:
    """A ``resolve`` sent while a ``lineage`` query is held answers first; the held one then
    completes with its graph."""
    await _chain(client)
    with gated(daemon) as gate:
        slow = asyncio.create_task(client.lineage("fraud_model", depth=5))
        await asyncio.to_thread(gate.wait_inside, 1)
        got = await client.peek("fraud_model")
        assert got["instance"] == "v1"
        assert not slow.done()
        gate.release.set()
        graph = await slow
    assert {n["id"] for n in graph["nodes"]} == {
        "fraud_model@main:v1", "features@main:v1", "raw@main:v1"}


async def test_concurrency_is_bounded_by_the_setting(nc: Any, nats_server: EmbeddedNats,
                                                     tmp_path: Path) -> None:
    """With ``query_concurrency`` 2, five held ``lineage`` queries never run more than two at
    once, and all five are answered once released."""
    settings = daemon_settings(nats_server.url, f"sqlite:///{tmp_path / 'r.db'}", tmp_path,
                               query_concurrency=2)
    async with running_daemon(settings) as daemon, \
            AssetClient("fraud", settings=settings, timeout=30) as client:
        await _chain(client)
        with gated(daemon) as gate:
            held = [asyncio.create_task(client.lineage("fraud_model")) for _ in range(5)]
            await asyncio.to_thread(gate.wait_inside, 2)
            assert daemon.query_pool.in_flight == 2
            gate.release.set()
            graphs = await asyncio.gather(*held)
        assert gate.peak == 2
        assert all(len(g["nodes"]) == 3 for g in graphs)
