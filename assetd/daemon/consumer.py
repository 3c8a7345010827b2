"""The inbound pull loop: fetch a batch from the durable consumer, hand it over, repeat.

``Pull.fetch`` (``daemon/pull.py``, nats-py's ``fetch`` contract without its per-message
futures) returns as soon as at least one message is available, so a batch is "whatever
arrived, up to ``batch_size``": low latency when idle, big batches under load.

The loop runs under the daemon's :class:`~assetd.daemon.supervisor.Supervisor`: anything
but an idle fetch timeout (the connection gone, the consumer or stream deleted, the
reconnect buffer full, an ack that failed) ends the run; the supervisor logs it, backs off,
calls :meth:`PullConsumer.rebind` and runs the loop again. Messages fetched but not acked
then are redelivered after ``ack_wait``; the inbox makes a second delivery harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

from nats.js.errors import NotFoundError

from assetd.config import Settings
from assetd.daemon.pull import Pull
from assetd.daemon.streams import consumer_config, stream_configs
from assetd.daemon.supervisor import NatsUnavailableError, Supervisor
from assetd.schemas import wire

LOOP = "inbound"
DURABLE, STREAM = wire.DURABLE, wire.IN_STREAM


class MissingStreamError(Exception):
    """A stream the daemon needs was deleted under it."""


class PullConsumer:
    """Pulls every inbound subject with the durable consumer and calls ``handle``."""

    def __init__(self, *, js: Callable[[], Any], nc: Callable[[], Any], settings: Settings,
                 handle: Callable[[list[Any]], Awaitable[None]], supervisor: Supervisor,
                 connected: Callable[[], bool],
                 ensure_streams: Callable[[], Awaitable[None]],
                 recheck_interval: float = 30.0) -> None:
        self.js, self.nc, self.settings, self.handle = js, nc, settings, handle
        self.supervisor, self.connected, self.ensure_streams = supervisor, connected, \
            ensure_streams
        self.recheck_interval = recheck_interval
        self._sub: Any = None
        self._started = False
        self._stopping = False

    async def start(self) -> None:
        """Bind to (creating if needed) the durable consumer and start pulling."""
        if self._started:
            return
        await self._bind()
        self._started = True
        self.supervisor.spawn(LOOP, self._run, recover=self.rebind)

    async def rebind(self) -> None:
        """Before a retry: re-create what is missing (streams, the durable consumer), bind."""
        if not self.connected():
            raise NatsUnavailableError("NATS connection lost; nats-py is reconnecting")
        await self.ensure_streams()
        await self._bind()

    async def _bind(self) -> None:
        s = self.settings
        old, self._sub = self._sub, None
        if old is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(old.unsubscribe(), 2)
        # the durable consumer is created when it does not exist (deleted, or a wiped NATS
        # store), with this configuration
        self._sub = await Pull.bind(self.js(), self.nc(), stream=STREAM, durable=DURABLE,
                                    config=consumer_config(s))

    async def stop(self) -> None:
        """Stop fetching; the batch in hand is finished, committed and acked first.

        A fetch in progress is not cancelled (messages it already received would stay
        unacknowledged until ``ack_wait``): it returns within ``fetch_timeout``, and what it
        brought is handled before the loop ends. The caller bounds the whole wait
        (``graceful_timeout``) and cancels after it.
        """
        self._stopping = True
        if not self._started:
            return
        await self.supervisor.stop(LOOP)
        # Delivered but unfetched messages are nak'd (redelivered at once); without this,
        # closing the connection would drain the subscription for up to 30 s.
        if self._sub is not None and self.connected():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._sub.unsubscribe(), 2)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        checked = loop.time()
        while not self._stopping:
            if not self.connected():
                raise NatsUnavailableError("NATS connection lost; nats-py is reconnecting")
            if loop.time() - checked > self.recheck_interval:
                await self._check_streams()
                checked = loop.time()
            try:
                msgs = await self._sub.fetch(batch=self.settings.batch_size,
                                             timeout=self.settings.fetch_timeout)
            except TimeoutError:  # idle
                continue
            await self.handle(msgs)

    async def _check_streams(self) -> None:
        """A deleted DLQ or OUT stream does not fail a fetch: look for it now and then."""
        js = self.js()
        for cfg in stream_configs(self.settings.subject_prefix):
            try:
                await js.stream_info(cfg.name)
            except NotFoundError:
                raise MissingStreamError(f"stream {cfg.name} is missing") from None
            except Exception:  # slow or unreachable: the next fetch tells
                return
