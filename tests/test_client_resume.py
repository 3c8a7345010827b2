"""Long-lived subscribers: ``events()`` survives a daemon and NATS restart and a lost
consumer, hears only its branch, and has an ordinary-iterator twin in SyncAssetClient."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from assetd.client import AssetClient, SyncAssetClient
from assetd.config import Settings
from assetd.daemon.app import Daemon
from assetd.daemon.embedded import EmbeddedNats, free_port
from tests.conftest import daemon_settings
from tests.helpers import wait_for

RULES = "version: 1\nrules:\n  - asset: m\n    promote: {metric: f1}\n"


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """SQLite is enough here."""
    return f"sqlite:///{tmp_path / 'registry.db'}"


@pytest.fixture
async def own(tmp_path: Path, db_url: str) -> AsyncIterator[tuple[EmbeddedNats, Settings]]:
    """A nats-server of this test alone (its store kept across restarts) and daemon
    settings with a promote rule for ``m``."""
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    server = EmbeddedNats(store_dir=tmp_path / "nats", port=free_port())
    server.start()
    try:
        yield server, daemon_settings(server.url, db_url, tmp_path, rules=rules)
    finally:
        server.stop()


async def _collect(events: AsyncIterator[dict[str, Any]], into: list[dict[str, Any]],
                   n: int) -> None:
    async for event in events:
        into.append(event)
        if len(into) >= n:
            return


def _consumer(c: AssetClient, name: str) -> Any:
    async def exists() -> bool:
        try:
            await c.nc.jetstream().consumer_info("ASSETD_OUT_fraud", name)
        except Exception:
            return False
        return True

    return exists


@pytest.mark.slow
async def test_subscriber_survives_daemon_and_nats_restart(
        own: tuple[EmbeddedNats, Settings]) -> None:
    """A durable subscriber started before the daemon and its NATS stop receives the
    promotion made after both came back, without being restarted itself."""
    server, settings = own
    daemon = Daemon(settings)
    await daemon.start()
    try:
        async with AssetClient("fraud", settings=settings, timeout=20) as c:
            got: list[dict[str, Any]] = []
            reader = asyncio.create_task(
                _collect(c.events(asset="m", type="asset_promoted", durable="svc"), got, 1))
            await wait_for(_consumer(c, "svc"), what="durable consumer")
            await daemon.stop()
            server.stop()
            await asyncio.sleep(2)  # the subscriber's fetches fail meanwhile
            server.start()
            daemon = Daemon(settings)
            await daemon.start()
            await c.register_model("m", annotations={"f1": 0.9})
            await asyncio.wait_for(reader, 30)
    finally:
        await daemon.stop()
    assert [(e["type"], e["data"]["instance"]) for e in got] == [("asset_promoted", "v1")]


async def test_lost_consumer_is_recreated_after_the_last_event(
        own: tuple[EmbeddedNats, Settings]) -> None:
    """When NATS loses a durable consumer, the subscriber creates it again from the event
    after the last one it saw: the next event arrives, none comes twice."""
    _, settings = own
    daemon = Daemon(settings)
    await daemon.start()
    try:
        async with AssetClient("fraud", settings=settings, timeout=15) as c:
            got: list[dict[str, Any]] = []
            reader = asyncio.create_task(
                _collect(c.events(type="instance_created", durable="svc2"), got, 2))
            await wait_for(_consumer(c, "svc2"), what="durable consumer")
            await c.register_data("a")
            await wait_for(lambda: _true(len(got) == 1), what="first event")
            await c.nc.jetstream().delete_consumer("ASSETD_OUT_fraud", "svc2")
            await c.register_data("b")
            await asyncio.wait_for(reader, 45)
    finally:
        await daemon.stop()
    assert [e["subject"] for e in got] == ["a", "b"]


async def test_a_branch_subscriber_hears_only_its_branch(
        own: tuple[EmbeddedNats, Settings]) -> None:
    """events(branch="user.alice") delivers alice's events and none of main's."""
    _, settings = own
    daemon = Daemon(settings)
    await daemon.start()
    try:
        async with AssetClient("fraud", settings=settings, timeout=15) as c:
            got: list[dict[str, Any]] = []
            reader = asyncio.create_task(_collect(
                c.events(type="instance_created", branch="user.alice", deliver="all"), got, 2))
            await c.register_data("d", branch="main")
            await c.register_data("d", branch="user.alice")
            await c.register_data("d", branch="main")
            await c.register_data("e", branch="user.alice")
            await asyncio.wait_for(reader, 15)
    finally:
        await daemon.stop()
    assert [(e["branch"], e["subject"]) for e in got] == [("user.alice", "d"),
                                                          ("user.alice", "e")]


async def test_sync_events_is_an_ordinary_iterator(own: tuple[EmbeddedNats, Settings]) -> None:
    """SyncAssetClient.events() is iterated with a plain for loop (no async)."""
    _, settings = own
    daemon = Daemon(settings)
    await daemon.start()
    try:
        async with AssetClient("fraud", settings=settings, timeout=15) as c:
            await c.register_data("s")

        def first() -> dict[str, Any]:
            with SyncAssetClient("fraud", settings=settings) as sync:
                for event in sync.events(type="instance_created", deliver="all"):
                    return event
            raise AssertionError("the iterator ended")

        event = await asyncio.wait_for(asyncio.to_thread(first), 15)
    finally:
        await daemon.stop()
    assert (event["subject"], event["data"]["instance"]) == ("s", "v1")


async def _true(value: bool) -> bool:
    return value
