"""``AssetClient.events()``: outbound events from a pull consumer that outlives restarts.

A daemon or NATS restart must not end a subscriber silently. Every fetch runs inside a loop
that catches connection and consumer errors, logs one line, backs off and re-creates the pull
subscription: a durable consumer is bound again by its name (it resumes where it stopped,
with what was not acknowledged); one that NATS lost, or an ephemeral one, is re-created
from the stream sequence after the last event seen, so nothing is delivered twice or
skipped. After a reconnect, and every 30 s without events, the consumer is checked, because
a fetch against a consumer that no longer exists only ever times out.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import nats
import nats.js.errors
import orjson
import structlog
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from assetd.errors import QueryError
from assetd.schemas import wire

if TYPE_CHECKING:
    from assetd.client.aio import AssetClient

log = structlog.get_logger("assetd.client")

# What a restart of NATS or of the daemon looks like from here (less what _transient rules
# out); anything else is a bug or a refusal (PermissionDeniedError) and is raised.
TRANSIENT = (nats.errors.Error, QueryError, OSError, TimeoutError)
FETCH_TIMEOUT, IDLE_CHECK, MAX_PAUSE = 5.0, 30.0, 5.0


@dataclass
class _Cursor:
    """Where a subscription stands: its filter, and the last stream sequence delivered."""

    subject: str
    durable: str | None
    deliver: str
    stream: str | None = None
    last_seq: int = 0

    def config(self) -> ConsumerConfig:
        """The consumer to create: the asked policy at first, then after ``last_seq``."""
        if self.last_seq:
            return ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, filter_subject=self.subject,
                                  deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                                  opt_start_seq=self.last_seq + 1)
        return ConsumerConfig(
            ack_policy=AckPolicy.EXPLICIT, filter_subject=self.subject,
            deliver_policy=DeliverPolicy.ALL if self.deliver == "all" else DeliverPolicy.NEW)


async def follow(client: AssetClient, *, asset: str, type_: str, durable: str | None,
                 deliver: str, branch: str | None) -> AsyncIterator[dict[str, Any]]:
    """Yield outbound events for ever (until the client is closed); see the module doc."""
    cursor = _Cursor(wire.out_subject(client.prefix, client.project, branch or client.branch,
                                      asset, type_), durable, deliver)
    sub: Any = None
    pause = 0.5
    try:
        while True:
            try:
                if sub is None:
                    sub = await _subscribe(client, cursor)
                async for event in _drain(client, sub, cursor):
                    yield event
                pause = 0.5
            except TRANSIENT as exc:
                if _closed(client):
                    return
                if not _transient(exc):
                    raise
                log.warning("event subscription interrupted; re-creating it",
                            subject=cursor.subject, durable=durable,
                            error=f"{type(exc).__name__}: {exc}", retry_in=pause)
                await _drop(sub)
                sub = None
                await asyncio.sleep(pause)
                pause = min(pause * 2, MAX_PAUSE)
    finally:
        await _drop(sub)


async def _subscribe(client: AssetClient, cursor: _Cursor) -> Any:
    """Bind the durable consumer, or create it (and an ephemeral one) from the cursor."""
    await client.connect()
    if cursor.stream is None:
        # The project's own stream (ASSETD_OUT_<project>), which the daemon keeps: NATS
        # permissions can then give a service this project's consumers and no other's.
        cursor.stream = (await client.request("events_stream"))["stream"]
    js = client.nc.jetstream()
    sub = await client.guarded(js.pull_subscribe(
        cursor.subject, durable=cursor.durable, stream=cursor.stream, config=cursor.config()))
    if cursor.last_seq:
        log.info("event subscription re-created", subject=cursor.subject,
                 durable=cursor.durable, after_sequence=cursor.last_seq)
    return sub


async def _drain(client: AssetClient, sub: Any,
                 cursor: _Cursor) -> AsyncIterator[dict[str, Any]]:
    """Fetch and yield until an error; an event is acknowledged when the next is asked for."""
    reconnects = client.nc.stats["reconnects"]
    idle = 0.0
    while True:
        try:
            msgs = await sub.fetch(batch=100, timeout=FETCH_TIMEOUT)
        except (TimeoutError, nats.errors.TimeoutError):
            idle += FETCH_TIMEOUT
            if client.nc.stats["reconnects"] != reconnects or idle >= IDLE_CHECK:
                await sub.consumer_info()  # NotFoundError if NATS lost it
                reconnects, idle = client.nc.stats["reconnects"], 0.0
            continue
        idle = 0.0
        for msg in msgs:
            event = _event(msg.data)
            if event is not None:  # anything else would come back on every redelivery
                yield event
            await msg.ack()
            with contextlib.suppress(Exception):
                cursor.last_seq = max(cursor.last_seq, msg.metadata.sequence.stream)


def _transient(exc: BaseException) -> bool:
    """Whether trying again can help: not for a request NATS or the daemon found invalid
    (a bad durable name, an unknown project), which would fail the same way for ever."""
    if isinstance(exc, QueryError):
        return exc.code == "internal"
    return not isinstance(exc, nats.js.errors.BadRequestError)


def _closed(client: AssetClient) -> bool:
    nc = client._nc
    return nc is None or nc.is_closed or nc.is_draining


async def _drop(sub: Any) -> None:
    if sub is not None:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()


def _event(data: bytes) -> dict[str, Any] | None:
    """An outbound CloudEvent, or None (logged) for a message that is not one."""
    try:
        event = orjson.loads(data)
    except orjson.JSONDecodeError:
        event = None
    if isinstance(event, dict) and isinstance(event.get("data"), dict) and "type" in event:
        return event
    log.warning("skipped a message that is not an assetd event", size=len(data))
    return None
