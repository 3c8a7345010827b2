"""Pulling batches from a durable JetStream consumer, without a future per message.

nats-py's ``fetch`` spends ~25 µs of the event loop per message (``Subscription.next_msg``
creates a task, a ``wait_for`` and a uuid4 for every one): a fifth of the daemon's work per
registration, on the ingest's GIL. Here the consumer's messages arrive on one inbox
subscription whose callback collects them, ~5.5 µs a message (docs/benchmarks.md), and
:meth:`Pull.fetch` keeps ``fetch``'s contract: it returns as soon as anything is there, up
to ``batch`` messages, and raises ``TimeoutError`` when nothing came within ``timeout``.

Each pull request gets a reply subject of its own (``<inbox>.<n>``), so the server's status
replies (404 nothing there, 408 the request expired, 409 the request refused, 503 no
consumer or stream to answer) are matched to their request. A long poll stays open after
its first message, as nats-py's does: what it delivers later is kept for the next call.
Messages are nats-py ``Msg`` objects, acked and nak'd as before.

A fetch that returns a batch leaves a long poll open for the next one (unless one is open),
so the server's delivery of the next batch, and nats-py's reading of it, overlap the
caller's work on this one instead of following it (docs/benchmarks.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from typing import Any

import orjson
from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig
from nats.js.errors import APIError, NoStreamResponseError, NotFoundError

_ENDED = {"404", "408"}  # the request is over: nothing (more) there, or it expired


class Pull:
    """A pull subscription on one connection (rebind after a failure: a new one)."""

    def __init__(self, nc: Any, api_prefix: str, stream: str, durable: str) -> None:
        self.nc = nc
        self._next_subject = f"{api_prefix}.CONSUMER.MSG.NEXT.{stream}.{durable}"
        self._inbox = nc.new_inbox()
        self._numbers = itertools.count(1)
        self._sub: Any = None
        self._buffer: list[Msg] = []
        self._arrived = asyncio.Event()
        self._ended: dict[str, Msg | None] = {}  # request -> its status reply (None: 404/408)
        self._probe: str | None = None  # this fetch's no-wait request
        # the open long poll: its reply subject, when it expires, what arrived since it was
        # sent (once that is its batch, the server has closed it without a word)
        self._poll: str | None = None
        self._poll_until = 0.0
        self._poll_batch = 0
        self._since_poll = 0

    @classmethod
    async def bind(cls, js: Any, nc: Any, *, stream: str, durable: str,
                   config: ConsumerConfig) -> Pull:
        """The durable consumer (created with ``config`` when it does not exist), pulled."""
        try:
            await js.consumer_info(stream, durable)
        except NotFoundError:
            await js.add_consumer(stream, config=config)
        pull = cls(nc, getattr(js, "_prefix", "$JS.API"), stream, durable)
        pull._sub = await nc.subscribe(f"{pull._inbox}.*", cb=pull._on_msg)
        return pull

    async def _on_msg(self, msg: Msg) -> None:
        if msg.reply:  # a stream's message (its ack subject); its own headers are the user's
            self._buffer.append(msg)
            self._since_poll += 1
        else:  # the server's status reply to a request
            status = msg.headers.get("Status", "") if msg.headers else ""
            if status == "100" or msg.subject not in (self._probe, self._poll):
                return  # an idle heartbeat (never asked for), or a request given up on
            self._ended[msg.subject] = None if status in _ENDED else msg
            if msg.subject == self._poll:
                self._poll = None
        self._arrived.set()

    async def fetch(self, batch: int, timeout: float) -> list[Msg]:
        """Up to ``batch`` messages: what is there at once, else the first to arrive."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        self._ended.clear()  # (an open poll that ended before now is no longer self._poll)
        if not self._buffer:  # (a reply is known before its request goes out)
            probe = self._probe = self._reply()
            await self._ask({"batch": batch, "no_wait": True}, probe)
            await self._wait(probe, deadline, full=batch)  # whatever is there now
            self._probe = None
        if not self._buffer:
            await self._long_poll(batch, timeout)
            await self._wait(self._poll, deadline, full=1)
        if not self._buffer:
            raise TimeoutError(f"no message within {timeout} s")
        taken, self._buffer = self._buffer[:batch], self._buffer[batch:]
        # the next batch travels while the caller handles this one (the server's delivery
        # and nats-py's reading of it overlap the caller's work instead of following it)
        await self._long_poll(batch, timeout)
        return taken

    async def _long_poll(self, batch: int, timeout: float) -> None:
        """Open a long poll for ``batch``, unless one is open (at most one is)."""
        loop = asyncio.get_running_loop()
        if self._polling(loop.time()):
            return
        expires = max(0.001, timeout - 0.1)  # it ends a little before the caller
        self._poll = poll = self._reply()
        self._poll_until, self._poll_batch = loop.time() + expires, batch
        self._since_poll = 0
        await self._ask({"batch": batch, "expires": int(expires * 1e9)}, poll)

    def _polling(self, now: float) -> bool:
        return (self._poll is not None and now < self._poll_until
                and self._since_poll < self._poll_batch)

    def _reply(self) -> str:
        return f"{self._inbox}.{next(self._numbers)}"

    async def _ask(self, ask: dict[str, Any], reply: str) -> None:
        await self.nc.publish(self._next_subject, orjson.dumps(ask), reply=reply)

    async def _wait(self, reply: str | None, deadline: float, *, full: int) -> None:
        """Until ``full`` messages are buffered, ``reply``'s request ended, or ``deadline``;
        a request refused (409, 503) with nothing buffered raises."""
        loop = asyncio.get_running_loop()
        try:
            while len(self._buffer) < full:
                if reply is None or reply in self._ended:
                    refused = self._ended.get(reply) if reply is not None else None
                    if refused is not None and not self._buffer:
                        raise _refusal(refused)
                    return
                left = deadline - loop.time()
                if left <= 0:
                    return
                self._arrived.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._arrived.wait(), left)
        finally:
            if reply is not None:
                self._ended.pop(reply, None)

    async def unsubscribe(self) -> None:
        """Stop receiving; messages delivered but not yet fetched are nak'd, so that they
        are redelivered at once (to another replica, or after a restart), not after
        ``ack_wait``. (The connection gone, they are redelivered after ``ack_wait``.)"""
        if self._sub is not None:
            sub, self._sub = self._sub, None
            await sub.unsubscribe()
        left, self._buffer = self._buffer, []
        for msg in left:
            with contextlib.suppress(Exception):
                await msg.nak()


def delivery(msg: Msg) -> tuple[int, int]:
    """``(stream sequence, times delivered)`` of a JetStream message, read from its ack
    subject (``$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.…``, or the form with a
    domain and an account hash) without ``Msg.metadata``, which also builds a timestamp and
    two dataclasses: ~3 % of the daemon's time under load (docs/benchmarks.md)."""
    tokens = (msg.reply or "").split(".")
    if len(tokens) == 9 and tokens[0] == "$JS" and tokens[1] == "ACK":
        return int(tokens[5]), int(tokens[4])
    meta = msg.metadata  # the other forms, and nats-py's error for a reply that is none
    return meta.sequence.stream, meta.num_delivered


def _refusal(msg: Msg) -> Exception:
    """The error of a status reply that refused a pull request."""
    status = msg.headers.get("Status", "") if msg.headers else ""
    description = msg.headers.get("Description", "") if msg.headers else ""
    if status == "503":
        return NoStreamResponseError()
    return APIError(code=int(status) if status.isdigit() else None,
                    description=description or f"pull request refused ({status})")
