"""Composition root: the FastStream NATS broker, its subscribers, the relay, the lifecycle."""

from __future__ import annotations

import asyncio
import signal
import time
from typing import Any

import structlog
from faststream import Context
from faststream.middlewares import AckPolicy
from faststream.nats import JStream, NatsBroker, PullSub

import assetd
from assetd.config import Settings
from assetd.daemon.embedded import EmbeddedNats
from assetd.daemon.relay import OutboxRelay
from assetd.daemon.security import nats_security
from assetd.daemon.streams import consumer_config, ensure_streams
from assetd.handlers.inbound import Ingest
from assetd.handlers.queries import Queries
from assetd.registry.engine import is_sqlite, make_engine
from assetd.registry.migrate import upgrade

log = structlog.get_logger("assetd.daemon")


async def _raw(msg: Any) -> Any:
    """Decoder that hands the raw nats-py message(s) over: assetd validates bytes itself."""
    return msg.raw_message


class Daemon:
    """One assetd process: embedded NATS (optional), registry, broker, relay."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.started = time.monotonic()
        self.embedded: EmbeddedNats | None = None
        if settings.nats_url is None:
            self.embedded = EmbeddedNats(store_dir=settings.data_dir / "nats",
                                         port=settings.embedded_nats_port)
        url = settings.effective_db_url
        busy = settings.db_busy_timeout_ms
        self.writer = make_engine(url, writer=True, busy_timeout_ms=busy)
        self.reader = make_engine(url, writer=False, busy_timeout_ms=busy)
        self.broker = build_broker(settings)
        self.relay = OutboxRelay(writer=self.writer, reader=self.reader, js=self._js)
        self.ingest = Ingest(engine=self.writer, settings=settings, js=self._js,
                             on_committed=self.relay.wake)
        self.queries = Queries(engine=self.reader, prefix=settings.subject_prefix,
                               status=self.status)
        self._register()
        self._stop = asyncio.Event()

    def _js(self) -> Any:
        return self.broker.connection.jetstream()

    def _register(self) -> None:
        s = self.settings
        inbound = self.broker.subscriber(
            f"{s.subject_prefix}.in.>",
            stream=JStream("ASSETD_IN", declare=False),
            durable="assetd",
            config=consumer_config(s),
            pull_sub=PullSub(batch_size=s.batch_size, timeout=s.fetch_timeout, batch=True),
            ack_policy=AckPolicy.MANUAL,
            decoder=_raw,
            title="assetd inbound",
            description="Inbound asset events (CONTRACT §4), pulled in batches.",
        )

        @inbound
        async def on_inbound(body: Any = Context("message.raw_message")) -> None:
            await self.ingest.handle(body)

        api = self.broker.subscriber(f"{s.subject_prefix}.api.>", queue="assetd-api",
                                     decoder=_raw, title="assetd query API")

        @api
        async def on_query(body: Any = Context("message.raw_message")) -> bytes:
            return await self.queries.handle(body.subject, body.data)

    async def status(self) -> dict[str, Any]:
        """The ``status`` query's result."""
        dlq_depth: int | None = None
        try:
            dlq_depth = (await self._js().stream_info("ASSETD_DLQ")).state.messages
        except Exception:  # status must answer even when JetStream does not
            dlq_depth = None
        return {
            "version": assetd.__version__,
            "uptime_seconds": round(time.monotonic() - self.started, 3),
            "rules": None,
            "database": "sqlite" if is_sqlite(self.settings.effective_db_url) else "postgresql",
            "nats": "embedded" if self.embedded else "external",
            "counters": {**self.ingest.counters, "published": self.relay.published},
            "dlq_depth": dlq_depth,
        }

    async def start(self) -> None:
        """Start NATS (if embedded), migrate, declare streams, start consuming and relaying."""
        if self.embedded:
            await asyncio.to_thread(self.embedded.start)
        await asyncio.to_thread(upgrade, self.settings.effective_db_url)
        await self.broker.connect()
        await ensure_streams(self._js(), self.settings.subject_prefix)
        await self.broker.start()
        self.relay.start()
        log.info("assetd started", nats=self.settings.effective_nats_url,
                 database="sqlite" if is_sqlite(self.settings.effective_db_url) else "postgresql",
                 version=assetd.__version__)

    async def stop(self) -> None:
        """Stop consuming, finish the batch in hand, flush the outbox, stop NATS (if embedded)."""
        await self.broker.stop()
        await self.relay.stop()
        self.writer.dispose()
        self.reader.dispose()
        if self.embedded:
            await asyncio.to_thread(self.embedded.stop)
        log.info("assetd stopped")

    def request_stop(self) -> None:
        """Ask :meth:`serve` to return (signal handlers call this)."""
        self._stop.set()

    async def serve(self) -> None:
        """Run until SIGINT or SIGTERM."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.request_stop)
        await self.start()
        try:
            await self._stop.wait()
        finally:
            await self.stop()


def build_broker(settings: Settings) -> NatsBroker:
    """The NATS broker, reconnecting for ever, without FastStream's per-message logging."""
    return NatsBroker(
        settings.effective_nats_url,
        security=nats_security(settings),
        graceful_timeout=30.0,
        max_reconnect_attempts=-1,
        reconnect_time_wait=1,
        logger=None,
        name="assetd",
        description="assetd: asset events in, registry, follow-up events out.",
    )
