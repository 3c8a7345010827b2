"""The relay's batch publisher on a real nats-server: every message stored and acknowledged,
and a refusal raised as nats-py's ``publish_async`` raises it."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from nats.js.errors import APIError, NoStreamResponseError

from assetd.daemon.publisher import BatchPublisher


async def test_a_batch_returns_once_every_message_is_stored(nc: Any, js: Any,
                                                            scratch_stream: str) -> None:
    pub = BatchPublisher(nc)
    subject = f"{scratch_stream.lower()}.x"
    await pub.publish([(subject, f"m{i}".encode(), {"Nats-Msg-Id": f"id-{i}"})
                       for i in range(300)], timeout=10)
    info = await js.stream_info(scratch_stream)
    assert info.state.messages == 300
    # the same ids again: JetStream's duplicate window drops them, and says so in its acks
    await pub.publish([(subject, b"again", {"Nats-Msg-Id": f"id-{i}"}) for i in range(300)],
                      timeout=10)
    assert (await js.stream_info(scratch_stream)).state.messages == 300
    first = await js.get_msg(scratch_stream, 1)
    assert first.data == b"m0" and first.headers["Nats-Msg-Id"] == "id-0"
    await pub.publish([(subject, b"more", {"Nats-Msg-Id": "id-300"})], timeout=10)
    assert (await js.stream_info(scratch_stream)).state.messages == 301


async def test_no_stream_for_the_subject_is_the_error_publish_async_raises(
        nc: Any, scratch_stream: str) -> None:
    pub = BatchPublisher(nc)
    with pytest.raises(NoStreamResponseError):
        await pub.publish([(f"nostream{uuid.uuid4().hex[:6]}.x", b"m", {"Nats-Msg-Id": "a"})],
                          timeout=10)
    # the publisher goes on working for the next batch
    await pub.publish([(f"{scratch_stream.lower()}.x", b"m", {"Nats-Msg-Id": "b"})], timeout=10)


async def test_a_message_jetstream_refuses_fails_its_batch_with_the_api_error(
        nc: Any, js: Any, scratch_stream: str) -> None:
    pub = BatchPublisher(nc)
    subject = f"{scratch_stream.lower()}.x"
    good = (subject, b"ok", {"Nats-Msg-Id": "ok-1"})
    refused = (subject, b"no", {"Nats-Msg-Id": "no-1", "Nats-Expected-Stream": "ANOTHER"})
    with pytest.raises(APIError) as err:
        await pub.publish([good, refused], timeout=10)
    assert "stream" in str(err.value).lower()
    await pub.publish([(subject, b"next", {"Nats-Msg-Id": "ok-2"})], timeout=10)
    assert (await js.stream_info(scratch_stream)).state.messages == 2  # ok-1 and ok-2


async def test_missing_acknowledgements_time_out(nc: Any) -> None:
    """A subject nobody answers on with a JetStream ack (a plain subscriber replies
    nothing): the batch fails after its timeout instead of waiting for ever."""
    subject = f"quiet.{uuid.uuid4().hex[:6]}"
    sub = await nc.subscribe(subject)  # so the publish has a responder, which never replies
    pub = BatchPublisher(nc)
    with pytest.raises(TimeoutError):
        await pub.publish([(subject, b"m", {"Nats-Msg-Id": "q"})], timeout=0.5)
    assert pub._batches == {}  # nothing left behind for a late ack to find
    await sub.unsubscribe()
