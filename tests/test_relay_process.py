"""The relay's publishing in a child process, on a real nats-server: what ``BatchPublisher``
promises still holds across the process boundary (every message stored and acknowledged,
nats-py's own errors on a refusal), and a child that dies, is interrupted or cannot reach
NATS fails one publish clearly and is replaced, never hangs."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
from nats.js.errors import APIError, NoStreamResponseError

from assetd.client import AssetClient
from assetd.config import Settings
from assetd.daemon.app import Daemon
from assetd.daemon.embedded import EmbeddedNats, free_port
from assetd.daemon.relay_process import ProcessPublisher, RelayProcessError
from assetd.schemas import wire
from tests.conftest import daemon_settings, running_daemon


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_a_batch_is_stored_and_acknowledged_by_the_child(
        nats_server: EmbeddedNats, js: Any, scratch_stream: str) -> None:
    pub = ProcessPublisher(Settings(nats_url=nats_server.url))
    await pub.start()
    pid = pub.pid
    assert pid is not None and pid != os.getpid() and _alive(pid)
    subject = f"{scratch_stream.lower()}.x"
    try:
        await pub.publish([(subject, f"m{i}".encode(), {"Nats-Msg-Id": f"id-{i}"})
                           for i in range(300)], timeout=10)
        assert (await js.stream_info(scratch_stream)).state.messages == 300
        first = await js.get_msg(scratch_stream, 1)
        assert first.data == b"m0" and first.headers["Nats-Msg-Id"] == "id-0"
        # the same ids again: JetStream drops the copies
        await pub.publish([(subject, b"again", {"Nats-Msg-Id": f"id-{i}"})
                           for i in range(300)], timeout=10)
        assert (await js.stream_info(scratch_stream)).state.messages == 300
        assert pub.pid == pid, "one child for every batch"
    finally:
        await pub.close()
    assert pub.pid is None and not _alive(pid), "the child ends with close()"


async def test_refusals_are_nats_pys_own_errors(nats_server: EmbeddedNats, nc: Any, js: Any,
                                                scratch_stream: str) -> None:
    pub = ProcessPublisher(Settings(nats_url=nats_server.url))
    subject = f"{scratch_stream.lower()}.x"
    try:
        with pytest.raises(NoStreamResponseError):
            await pub.publish([(f"nostream{uuid.uuid4().hex[:6]}.x", b"m",
                                {"Nats-Msg-Id": "a"})], timeout=10)
        with pytest.raises(APIError) as err:
            await pub.publish([(subject, b"no", {"Nats-Msg-Id": "no-1",
                                                 "Nats-Expected-Stream": "ANOTHER"})],
                              timeout=10)
        assert err.value.code == 400 and "stream" in str(err.value).lower()
        quiet = f"quiet.{uuid.uuid4().hex[:6]}"
        sub = await nc.subscribe(quiet)  # a responder that never acknowledges
        await nc.flush()  # (known to the server before the child's connection publishes)
        with pytest.raises(TimeoutError):
            await pub.publish([(quiet, b"m", {"Nats-Msg-Id": "q"})], timeout=0.5)
        await sub.unsubscribe()
        # and the same child goes on publishing
        pid = pub.pid
        await pub.publish([(subject, b"ok", {"Nats-Msg-Id": "ok-1"})], timeout=10)
        assert pub.pid == pid
        assert (await js.stream_info(scratch_stream)).state.messages == 1
    finally:
        await pub.close()


async def test_a_killed_child_fails_one_publish_and_is_replaced(
        nats_server: EmbeddedNats, js: Any, scratch_stream: str) -> None:
    pub = ProcessPublisher(Settings(nats_url=nats_server.url))
    subject = f"{scratch_stream.lower()}.x"
    try:
        await pub.start()
        first = pub.pid
        assert first is not None
        os.kill(first, signal.SIGINT)  # a terminal's Ctrl-C: the daemon decides, not it
        await pub.publish([(subject, b"a", {"Nats-Msg-Id": "a"})], timeout=10)
        assert pub.pid == first
        os.kill(first, signal.SIGKILL)
        with pytest.raises(RelayProcessError, match="ended"):
            await pub.publish([(subject, b"b", {"Nats-Msg-Id": "b"})], timeout=10)
        await pub.publish([(subject, b"b", {"Nats-Msg-Id": "b"})], timeout=10)
        assert pub.pid not in (None, first)
        assert (await js.stream_info(scratch_stream)).state.messages == 2
    finally:
        await pub.close()


async def test_no_nats_is_a_clear_error_not_a_hang() -> None:
    pub = ProcessPublisher(Settings(nats_url=f"nats://127.0.0.1:{free_port()}",
                                    startup_timeout=2))
    with pytest.raises(RelayProcessError, match="could not connect to NATS: none within 2 s"):
        await pub.start()
    assert pub.pid is None


async def test_the_daemon_publishes_through_its_child_and_outlives_its_death(
        nc: Any, daemon: Daemon, client: AssetClient) -> None:
    """A running daemon's outbound events come from its child; kill the child and the next
    events still arrive, each once (the relay's retry starts a new child)."""
    got: list[dict[str, Any]] = []

    async def seen(msg: Any) -> None:
        got.append(orjson.loads(msg.data))

    sub = await nc.subscribe(wire.out_subject("assetd", "fraud", "main", "features",
                                              "instance_created"), cb=seen)
    publisher = daemon._process_publisher
    assert publisher is not None and publisher.pid is not None, "started with the daemon"
    first = publisher.pid
    await client.register_data("features", annotations={"n": 1})
    await _until(lambda: len(got) == 1)
    os.kill(first, signal.SIGKILL)
    for n in (2, 3):
        await client.register_data("features", annotations={"n": n})
    await _until(lambda: len(got) == 3)
    assert [e["data"]["instance"] for e in got] == ["v1", "v2", "v3"]
    assert publisher.pid not in (None, first)
    await asyncio.sleep(0.5)
    assert len(got) == 3, "nothing published twice"
    await sub.unsubscribe()


async def _until(done: Any, timeout: float = 20) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not done():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_a_child_the_system_will_not_start_leaves_the_relay_in_process(
        nc: Any, nats_server: EmbeddedNats, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """An interpreter the service user cannot execute: the daemon still starts, says so,
    and publishes from its own process."""
    monkeypatch.setattr(sys, "executable", str(tmp_path / "no-such-python"))
    got: list[dict[str, Any]] = []

    async def seen(msg: Any) -> None:
        got.append(orjson.loads(msg.data))

    sub = await nc.subscribe(wire.out_subject("assetd", "fraud", "main", "features",
                                              "instance_created"), cb=seen)
    settings = daemon_settings(nats_server.url, f"sqlite:///{tmp_path / 'r.db'}", tmp_path)
    async with running_daemon(settings) as d, \
            AssetClient("fraud", settings=settings, timeout=15) as client:
        assert d._process_publisher is None
        await client.register_data("features", annotations={"n": 1})
        await _until(lambda: len(got) == 1)
    await sub.unsubscribe()
