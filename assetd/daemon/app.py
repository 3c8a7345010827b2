"""Composition root: the FastStream NATS broker, its subscribers, the relay, the lifecycle."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from faststream import Context
from faststream.nats import NatsBroker

import assetd
from assetd.config import Settings
from assetd.daemon.consumer import PullConsumer
from assetd.daemon.embedded import EmbeddedNats
from assetd.daemon.http import HttpServer
from assetd.daemon.relay import OutboxRelay
from assetd.daemon.rules_watch import RulesHolder, rules_path
from assetd.daemon.scheduler import Scheduler
from assetd.daemon.security import nats_security
from assetd.daemon.streams import ensure_streams
from assetd.errors import ConfigError
from assetd.handlers.inbound import Ingest
from assetd.handlers.queries import Queries
from assetd.logs import redact_url
from assetd.metrics import Metrics
from assetd.registry import repo
from assetd.registry.engine import is_sqlite, make_engine
from assetd.registry.migrate import upgrade
from assetd.schemas.envelope import CloudEvent
from assetd.schemas.outbound import OUTBOUND

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
                                         port=settings.embedded_nats_port,
                                         sync_interval=settings.embedded_nats_sync_interval)
        url = settings.effective_db_url
        busy = settings.db_busy_timeout_ms
        self.writer = make_engine(url, writer=True, busy_timeout_ms=busy)
        self.reader = make_engine(url, writer=False, busy_timeout_ms=busy)
        self.rules = RulesHolder(rules_path(settings))
        self.broker = build_broker(settings)
        self.metrics = Metrics()
        self.relay = OutboxRelay(writer=self.writer, reader=self.reader, js=self._js,
                                 metrics=self.metrics)
        self.ingest = Ingest(engine=self.writer, settings=settings, js=self._js,
                             on_committed=self.relay.wake, rules=lambda: self.rules.current,
                             metrics=self.metrics)
        self.scheduler = Scheduler(engine=self.writer, settings=settings,
                                   rules=lambda: self.rules.current, wake_relay=self.relay.wake,
                                   check_rules=self.rules.check)
        self.http = (HttpServer(host=settings.http_host, port=settings.http_port,
                                metrics=self.metrics, ready=self.ready, refresh=self.refresh)
                     if settings.http_port else None)
        self.consumer = PullConsumer(js=self._js, settings=settings, handle=self.ingest.handle)
        self.queries = Queries(engine=self.reader, prefix=settings.subject_prefix,
                               status=self.status,
                               max_lineage_depth=settings.max_lineage_depth,
                               max_lineage_nodes=settings.max_lineage_nodes)
        register_subscribers(self.broker, settings, self)
        self._stop = asyncio.Event()

    def _js(self) -> Any:
        return self.broker.connection.jetstream()

    async def status(self) -> dict[str, Any]:
        """The ``status`` query's result."""
        dlq_depth: int | None = None
        lag: int | None = None
        try:
            js = self._js()
            dlq_depth = (await js.stream_info("ASSETD_DLQ")).state.messages
            info = await js.consumer_info("ASSETD_IN", "assetd")
            lag = int(info.num_pending) + int(info.num_ack_pending)
        except Exception:  # status must answer even when JetStream does not
            pass
        return {
            "version": assetd.__version__,
            "pid": os.getpid(),
            "uptime_seconds": round(time.monotonic() - self.started, 3),
            "rules": self.rules.status(),
            "database": "sqlite" if is_sqlite(self.settings.effective_db_url) else "postgresql",
            "nats": "embedded" if self.embedded else "external",
            "counters": {**self.ingest.counters, "published": self.relay.published},
            "dlq_depth": dlq_depth,
            "lag": lag,
            "outbox_pending": await asyncio.to_thread(self._outbox_pending),
            "lease": await asyncio.to_thread(self._lease),
        }

    def _lease(self) -> dict[str, Any] | None:
        try:
            return self.scheduler.status(self.reader)
        except Exception:
            return None

    async def ready(self) -> dict[str, bool]:
        """``/readyz``: NATS connected, database reachable, streams present, rules loaded."""
        checks = {"nats": bool(self.broker.connection and self.broker.connection.is_connected)}
        checks["database"] = await asyncio.to_thread(self._db_ok)
        try:
            js = self._js()
            for name in ("ASSETD_IN", "ASSETD_OUT", "ASSETD_DLQ"):
                await js.stream_info(name)
            checks["streams"] = True
        except Exception:
            checks["streams"] = False
        checks["rules"] = self.rules.path is None or self.rules.current is not None
        return checks

    async def refresh(self) -> None:
        """Bring the gauges of ``/metrics`` up to date."""
        st = await self.status()
        m = self.metrics
        for gauge, value in ((m.lag, st["lag"]), (m.outbox, st["outbox_pending"]),
                             (m.dlq, st["dlq_depth"])):
            if value is not None:
                gauge.set(value)
        m.rules_count.set(len(self.rules.current.rules.rules) if self.rules.current else 0)
        m.rules_loaded.set(self.rules.loaded_at.timestamp() if self.rules.loaded_at else 0)

    def _db_ok(self) -> bool:
        try:
            with self.reader.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
            return True
        except Exception:
            return False

    def _outbox_pending(self) -> int | None:
        try:
            with self.reader.connect() as conn:
                return repo.outbox_count(conn)
        except Exception:
            return None

    async def start(self) -> None:
        """Start NATS (if embedded), migrate, declare streams, start consuming and relaying."""
        self.rules.load_initial()  # an invalid rules file stops the start here
        if self.embedded:
            await asyncio.to_thread(self.embedded.start)
        await asyncio.to_thread(upgrade, self.settings.effective_db_url)
        await self.broker.connect()
        await self._retrying("declare streams", lambda: ensure_streams(
            self._js(), self.settings.subject_prefix, self.settings.stream_replicas))
        await self.broker.start()
        await self._retrying("bind the inbound consumer", self.consumer.start)
        self.relay.start()
        self.scheduler.start()
        if self.http is not None:
            await self.http.start()
        log.info("assetd started", nats=redact_url(self.settings.effective_nats_url),
                 database="sqlite" if is_sqlite(self.settings.effective_db_url) else "postgresql",
                 version=assetd.__version__)

    async def _retrying(self, what: str, step: Callable[[], Awaitable[None]]) -> None:
        """Run a startup step against JetStream, retrying while the cluster settles (a new
        cluster elects its leaders, a restarted node catches up) for ``startup_timeout``."""
        loop = asyncio.get_running_loop()
        deadline, delay = loop.time() + self.settings.startup_timeout, 0.5
        while True:
            try:
                await step()
                return
            except Exception as exc:
                if loop.time() + delay > deadline:
                    raise ConfigError(f"could not {what} on NATS within "
                                      f"{self.settings.startup_timeout:g} s: {exc!r}") from None
                log.warning(f"could not {what}; retrying", error=repr(exc)[:300])
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def stop(self) -> None:
        """Stop fetching, finish and ack the batch in hand, flush the outbox, stop NATS (if
        embedded) — within ``graceful_timeout``; what is left then is redelivered or
        published at the next start."""
        await self.scheduler.stop()
        if self.http is not None:
            await self.http.stop()
        deadline = asyncio.get_running_loop().time() + self.settings.graceful_timeout
        for step in (self.consumer.stop, self.relay.stop):
            left = max(0.1, deadline - asyncio.get_running_loop().time())
            try:
                await asyncio.wait_for(step(), left)
            except TimeoutError:
                log.warning("graceful shutdown timed out", step=step.__qualname__)
        await self.broker.stop()
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
        loop.add_signal_handler(signal.SIGHUP, self.rules.reload)
        await self.start()
        try:
            await self._stop.wait()
        finally:
            await self.stop()


def build_broker(settings: Settings) -> NatsBroker:
    """The NATS broker, reconnecting for ever, without FastStream's per-message logging."""
    return NatsBroker(
        settings.nats_servers,
        security=nats_security(settings),
        graceful_timeout=30.0,
        max_reconnect_attempts=-1,
        reconnect_time_wait=1,
        logger=None,
        name="assetd",
        description="assetd: asset events in, registry, follow-up events out.",
    )


def register_subscribers(broker: NatsBroker, settings: Settings, daemon: Daemon | None) -> None:
    """Declare the query API and, for the AsyncAPI document, the outbound events.

    The inbound stream is pulled by :class:`PullConsumer` (nats-py), not a FastStream
    subscriber: see docs/architecture.md for the measurement behind that choice.
    """
    s = settings
    api = broker.subscriber(f"{s.subject_prefix}.api.>", queue="assetd-api", decoder=_raw,
                            title="assetd.api.{project}.{method}",
                            description="Queries (CONTRACT §7), core NATS request-reply.")

    @api
    async def on_query(body: Any = Context("message.raw_message")) -> bytes:
        assert daemon is not None
        return await daemon.queries.handle(body.subject, body.data)

    for type_ in OUTBOUND:
        broker.publisher(f"{s.subject_prefix}.out.{{project}}.{{asset}}.{type_}",
                         title=f"assetd.out.{{project}}.{{asset}}.{type_}", schema=CloudEvent,
                         description=f"Outbound {type_} (CONTRACT §5), via the outbox relay.")
