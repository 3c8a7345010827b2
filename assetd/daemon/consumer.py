"""The inbound pull loop: fetch a batch from the durable consumer, hand it over, repeat.

nats-py's ``fetch`` returns as soon as at least one message is available, so a batch is
"whatever arrived, up to ``batch_size``": low latency when idle, big batches under load.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from nats.errors import ConnectionClosedError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.errors import ServiceUnavailableError

from assetd.config import Settings
from assetd.daemon.streams import consumer_config

log = structlog.get_logger("assetd.consumer")


class PullConsumer:
    """Pulls ``<prefix>.in.>`` with the durable consumer ``assetd`` and calls ``handle``."""

    def __init__(self, *, js: Callable[[], Any], settings: Settings,
                 handle: Callable[[list[Any]], Awaitable[None]]) -> None:
        self.js, self.settings, self.handle = js, settings, handle
        self._task: asyncio.Task[None] | None = None
        self._sub: Any = None
        self._stopping = False

    async def start(self) -> None:
        """Bind to (creating if needed) the durable consumer and start pulling."""
        s = self.settings
        if self._task is not None:
            return
        self._sub = await self.js().pull_subscribe(
            f"{s.subject_prefix}.in.>", durable="assetd", stream="ASSETD_IN",
            config=consumer_config(s))
        self._task = asyncio.create_task(self._loop(self._sub), name="inbound-pull")

    async def stop(self) -> None:
        """Stop fetching; the batch in hand is finished, committed and acked first.

        A fetch in progress is not cancelled (messages it already received would stay
        unacknowledged until ``ack_wait``): it returns within ``fetch_timeout``, and what it
        brought is handled before the loop ends. The caller bounds the whole wait
        (``graceful_timeout``) and cancels after it.
        """
        self._stopping = True
        if self._task is None:
            return
        try:
            await asyncio.shield(self._task)
        except asyncio.CancelledError:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            raise
        # Unfetched leftovers stay unacked and are redelivered; without this, closing the
        # connection would drain the subscription for up to 30 s.
        with contextlib.suppress(Exception):
            await self._sub.unsubscribe()

    async def _loop(self, sub: Any) -> None:
        while not self._stopping:
            try:
                msgs = await sub.fetch(batch=self.settings.batch_size,
                                       timeout=self.settings.fetch_timeout)
            except (TimeoutError, NatsTimeoutError):
                continue
            except (ConnectionClosedError, ServiceUnavailableError) as exc:
                log.warning("fetch failed; retrying", error=str(exc) or type(exc).__name__)
                await asyncio.sleep(0.5)
                continue
            await self.handle(msgs)
