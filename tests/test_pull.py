"""The inbound pull (``daemon/pull.py``) on a real nats-server: ``fetch``'s contract — what is
there at once up to a batch, else the first message to arrive, else a timeout — and a
refused or impossible pull raised, never waited on for ever."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from nats.aio.msg import Msg
from nats.errors import NotJSMessageError
from nats.js.api import AckPolicy, ConsumerConfig

from assetd.daemon.pull import Pull, delivery


def _config() -> ConsumerConfig:
    return ConsumerConfig(durable_name="d", ack_policy=AckPolicy.EXPLICIT, ack_wait=30)


async def test_what_is_there_comes_at_once_up_to_the_batch(nc: Any, js: Any,
                                                            scratch_stream: str) -> None:
    for i in range(30):
        await js.publish(f"{scratch_stream.lower()}.x", f"m{i}".encode())
    pull = await Pull.bind(js, nc, stream=scratch_stream, durable="d", config=_config())
    started = time.monotonic()
    first = await pull.fetch(10, timeout=5)
    rest = await pull.fetch(100, timeout=5)
    assert time.monotonic() - started < 1, "nothing waited for the timeout"
    assert [m.data for m in first + rest] == [f"m{i}".encode() for i in range(30)]
    for m in first + rest:
        await m.ack()
    await pull.unsubscribe()


async def test_the_next_batch_travels_while_one_is_handled_and_is_handed_back_on_stop(
        nc: Any, js: Any, scratch_stream: str) -> None:
    for i in range(30):
        await js.publish(f"{scratch_stream.lower()}.x", f"m{i}".encode())
    pull = await Pull.bind(js, nc, stream=scratch_stream, durable="d", config=_config())
    first = await pull.fetch(10, timeout=5)
    # the caller has not asked again, and the next ten are already delivered to it
    for _ in range(50):
        info = await js.consumer_info(scratch_stream, "d")
        if info.num_ack_pending == 20:
            break
        await asyncio.sleep(0.05)
    assert info.num_ack_pending == 20 and info.num_pending == 10
    for m in first:
        await m.ack()
    await pull.unsubscribe()  # the ten delivered but never fetched are nak'd, not kept
    again = await Pull.bind(js, nc, stream=scratch_stream, durable="d", config=_config())
    started = time.monotonic()
    rest: list[Msg] = []
    while len(rest) < 20 and time.monotonic() - started < 5:
        rest += await again.fetch(20, timeout=5)
    assert time.monotonic() - started < 5, "redelivered at once, not after ack_wait (30 s)"
    assert sorted(m.data for m in rest) == sorted(f"m{i}".encode() for i in range(10, 30))
    assert sorted(delivery(m)[1] for m in rest) == [1] * 10 + [2] * 10
    for m in rest:
        await m.ack()
    await again.unsubscribe()


async def test_delivery_reads_the_ack_subject_as_nats_py_does(nc: Any, js: Any,
                                                              scratch_stream: str) -> None:
    for i in range(3):
        await js.publish(f"{scratch_stream.lower()}.x", f"m{i}".encode())
    pull = await Pull.bind(js, nc, stream=scratch_stream, durable="d", config=_config())
    first = await pull.fetch(10, timeout=5)
    await first[1].nak()
    again = await pull.fetch(10, timeout=5)
    assert [delivery(m) for m in first] == [(1, 1), (2, 1), (3, 1)]
    assert [delivery(m) for m in again] == [(2, 2)]
    for m in first + again:
        assert delivery(m) == (m.metadata.sequence.stream, m.metadata.num_delivered)
    for m in [first[0], first[2], *again]:
        await m.ack()
    await pull.unsubscribe()
    # the form with a domain and an account hash goes through nats-py's own reading
    domain = Msg(nc, reply="$JS.ACK.hub.ACCHASH.S.d.4.17.9.1700000000000000000.0.tok")
    assert delivery(domain) == (17, 4)
    with pytest.raises(NotJSMessageError):
        delivery(Msg(nc, reply="_INBOX.abc"))


async def test_an_idle_fetch_returns_with_the_first_message(nc: Any, js: Any,
                                                            scratch_stream: str) -> None:
    pull = await Pull.bind(js, nc, stream=scratch_stream, durable="d", config=_config())

    async def later() -> None:
        await asyncio.sleep(0.3)
        await js.publish(f"{scratch_stream.lower()}.x", b"late")

    task = asyncio.create_task(later())
    started = time.monotonic()
    got = await pull.fetch(100, timeout=5)
    assert [m.data for m in got] == [b"late"]
    assert time.monotonic() - started < 2
    await task
    await got[0].ack()
    with pytest.raises(TimeoutError):  # nothing more: the caller's timeout, not longer
        started = time.monotonic()
        await pull.fetch(100, timeout=0.5)
    assert time.monotonic() - started < 1.5
    # and the long poll left open still delivers into the next fetch
    await js.publish(f"{scratch_stream.lower()}.x", b"next")
    assert [m.data for m in await pull.fetch(100, timeout=5)] == [b"next"]
    await pull.unsubscribe()


async def test_a_users_status_header_is_a_message_not_a_server_reply(
        nc: Any, js: Any, scratch_stream: str) -> None:
    await js.publish(f"{scratch_stream.lower()}.x", b"", headers={"Status": "408"})
    pull = await Pull.bind(js, nc, stream=scratch_stream, durable="d", config=_config())
    got = await pull.fetch(10, timeout=5)
    assert len(got) == 1 and got[0].headers["Status"] == "408"
    await got[0].ack()
    await pull.unsubscribe()


async def test_a_deleted_consumer_fails_the_fetch(nc: Any, js: Any, scratch_stream: str) -> None:
    pull = await Pull.bind(js, nc, stream=scratch_stream, durable="d", config=_config())
    await js.delete_consumer(scratch_stream, "d")
    started = time.monotonic()
    with pytest.raises(Exception) as err:
        await pull.fetch(10, timeout=3)
    assert not isinstance(err.value, TimeoutError), "a refusal, not an idle timeout"
    assert time.monotonic() - started < 3
    await pull.unsubscribe()
    rebound = await Pull.bind(js, nc, stream=scratch_stream, durable="d", config=_config())
    await js.publish(f"{scratch_stream.lower()}.x", b"after")
    assert [m.data for m in await rebound.fetch(10, timeout=5)] == [b"after"]
    await rebound.unsubscribe()
