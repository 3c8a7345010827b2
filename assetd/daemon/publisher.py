"""Publishing a batch to JetStream and waiting for every acknowledgement, on one inbox.

nats-py's ``publish_async`` costs ~18 µs of the event loop per message (a NUID token and a
future per publish, its done-callback, the PubAck parsed by ``json`` into a dataclass):
about an eighth of the daemon's work per registration, on the same GIL as the ingest. Here
a batch is published with replies to ``<inbox>.<batch>.<i>`` on one subscription of the
connection, and its acknowledgements are counted: ~7 µs a message
(docs/benchmarks.md). A batch fails as ``publish_async`` would: with nats-py's
``NoStreamResponseError`` when no stream holds the subject, with its ``APIError`` when
JetStream refuses a message, and with ``TimeoutError`` when acknowledgements are missing
after ``timeout``. A late acknowledgement of a batch that already failed is ignored.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.errors import APIError, NoStreamResponseError

Message = tuple[str, bytes, dict[str, str]]  # (subject, payload, headers)
_NO_RESPONDERS = "503"


@dataclass
class _Batch:
    left: int
    done: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future())


class BatchPublisher:
    """Publishes batches on one connection (make one per connection: its inbox
    subscription lives on it, and nats-py renews it after a reconnect)."""

    def __init__(self, nc: Client) -> None:
        self.nc = nc
        self._prefix = f"{nc.new_inbox()}."
        self._sub: Any = None
        self._numbers = itertools.count(1)
        self._batches: dict[str, _Batch] = {}

    async def publish(self, messages: Sequence[Message], timeout: float) -> None:
        """Publish ``messages`` in order; return once JetStream acknowledged each of them."""
        if not messages:
            return
        if self._sub is None:
            self._sub = await self.nc.subscribe(f"{self._prefix}*.*", cb=self._on_ack)
        number = str(next(self._numbers))
        batch = self._batches[number] = _Batch(len(messages))
        reply = f"{self._prefix}{number}."
        publish = self.nc.publish
        try:
            for i, (subject, payload, headers) in enumerate(messages):
                await publish(subject, payload, reply=f"{reply}{i}", headers=headers)
            await asyncio.wait_for(batch.done, timeout)
        finally:
            del self._batches[number]

    async def _on_ack(self, msg: Msg) -> None:
        number = msg.subject[len(self._prefix):].partition(".")[0]
        batch = self._batches.get(number)
        if batch is None or batch.done.done():
            return  # a batch that failed (or timed out) already
        error = _refusal(msg)
        if error is not None:
            batch.done.set_exception(error)
            return
        batch.left -= 1
        if batch.left == 0:
            batch.done.set_result(None)


def _refusal(msg: Msg) -> Exception | None:
    """The error of a reply that is not a PubAck, as nats-py's ``publish_async`` raises it."""
    if msg.headers and msg.headers.get("Status") == _NO_RESPONDERS:
        return NoStreamResponseError()
    if b'"error"' not in msg.data:  # a PubAck: {"stream": …, "seq": …[, "duplicate": true]}
        return None
    try:
        reply = orjson.loads(msg.data)
    except orjson.JSONDecodeError:
        return APIError(description=f"unreadable JetStream reply: {msg.data[:200]!r}")
    if isinstance(reply, dict) and isinstance(reply.get("error"), dict):
        try:  # it returns an APIError, or raises the subclass of a known code
            error: Exception = APIError.from_error(reply["error"])
        except APIError as known:
            error = known
        return error
    return None
