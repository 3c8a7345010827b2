"""Composition root: the FastStream NATS broker, its subscribers, the relay, the lifecycle."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import os
import signal
import time
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from faststream.nats import NatsBroker
from nats.aio.client import Callback, ErrorCallback
from sqlalchemy.exc import SQLAlchemyError

import assetd
from assetd.config import Settings
from assetd.daemon.consumer import PullConsumer
from assetd.daemon.embedded import EmbeddedNats
from assetd.daemon.http import HttpServer
from assetd.daemon.http_api import HttpApi
from assetd.daemon.http_live import LiveApi
from assetd.daemon.http_ui import WebUi
from assetd.daemon.publisher import BatchPublisher
from assetd.daemon.query_pool import QueryPool
from assetd.daemon.relay import OutboxRelay
from assetd.daemon.relay_process import ProcessPublisher, RelayProcessSpawnError
from assetd.daemon.rules_watch import RulesHolder, rules_path
from assetd.daemon.scheduler import Scheduler
from assetd.daemon.security import nats_security
from assetd.daemon.streams import ensure_project_stream, ensure_streams, stream_configs
from assetd.daemon.supervisor import NatsUnavailableError, NatsWatch, Supervisor
from assetd.errors import ConfigError
from assetd.handlers.inbound import Ingest
from assetd.handlers.queries import REPLY_SLACK, Queries, error_reply
from assetd.handlers.tx import OUTBOUND_MAX_BYTES
from assetd.logs import redact_url
from assetd.metrics import Metrics
from assetd.registry import repo
from assetd.registry.answers import CountedAnswers, answer_cache
from assetd.registry.engine import is_sqlite, make_engine, write_problem
from assetd.registry.migrate import upgrade
from assetd.schemas import wire

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
        self._loop: asyncio.AbstractEventLoop | None = None
        self._js_ctx: Any = None
        self._js_for: Any = None  # the connection _js_ctx belongs to
        self._publisher_ctx: BatchPublisher | None = None  # the relay's, per connection too
        self._process_publisher = ProcessPublisher(settings) if settings.relay_process \
            else None
        self._changed_pending = False
        self.answers = answer_cache(url, self.writer, max_entries=settings.query_cache,
                                    committed=self._changed_soon)
        self.rules = RulesHolder(rules_path(settings))
        self._stopping, self._stopped, self._serving, self.exit_code = False, False, False, 0
        self.watch = NatsWatch(connection=self._nc,
                               stopping=lambda: self._stopping, fatal=self._fatal)
        self.broker = build_broker(settings, closed_cb=self.watch.closed,
                                   disconnected_cb=self.watch.disconnected,
                                   error_cb=self.watch.error,
                                   reconnected_cb=self._reconnected)
        self.metrics = Metrics()
        self.metrics.track_answers(lambda: (self.answers.hits, self.answers.misses))
        self.supervisor = Supervisor(metrics=self.metrics)
        self.relay = OutboxRelay(writer=self.writer, reader=self.reader, publisher=self._publisher,
                                 supervisor=self.supervisor, connected=self._connected,
                                 recover=self._ensure_streams, metrics=self.metrics,
                                 trace=settings.trace_stages,
                                 # room for two inbound batches' rows in one read, so a read
                                 # after a commit finds them all and the relay goes back to
                                 # publishing the rows each batch hands over (relay.py)
                                 batch=2 * settings.batch_size)
        self.ingest = Ingest(engine=self.writer, settings=settings, js=self._js,
                             on_committed=self.relay.wake, rules=lambda: self.rules.current,
                             metrics=self.metrics, max_payload=self._max_payload,
                             marks=self.relay.marks if self.relay.fold_marks else None)
        self.scheduler = Scheduler(engine=self.writer, settings=settings,
                                   rules=lambda: self.rules.current, wake_relay=self.relay.wake,
                                   check_rules=self.rules.check, supervisor=self.supervisor)
        self.consumer = PullConsumer(js=self._js, nc=lambda: self.broker.connection,
                                     settings=settings, handle=self.ingest.handle,
                                     supervisor=self.supervisor, connected=self._connected,
                                     ensure_streams=self._ensure_streams)
        self.query_pool = QueryPool(limit=settings.query_concurrency)
        self.queries = Queries(engine=self.reader, prefix=settings.subject_prefix,
                               status=self.status,
                               max_lineage_depth=settings.max_lineage_depth,
                               max_lineage_nodes=settings.max_lineage_nodes,
                               max_lineage_edges=settings.max_lineage_edges,
                               max_reply=lambda: self._max_payload() - REPLY_SLACK,
                               events_stream=self._project_stream,
                               executor=self.query_pool.executor, cache=self.answers)
        self.http = self._http_server() if settings.http_port else None
        self._stop = asyncio.Event()
        self._background: set[asyncio.Future[bool]] = set()
        self._ensuring = asyncio.Lock()

    def _http_server(self) -> HttpServer:
        s, token = self.settings, self.settings.http_token
        api = HttpApi(answer=self._http_answer,
                      token=token.get_secret_value() if token else None)
        live = LiveApi(api=api, nc=self._nc, serving=lambda: self._serving, engine=self.reader,
                       executor=self.query_pool.executor, prefix=s.subject_prefix)
        return HttpServer(host=s.http_host, port=s.http_port, metrics=self.metrics,
                          ready=self.ready, refresh=self.refresh, api=api, live=live,
                          ui=WebUi())

    async def _http_answer(self, project: str | None, method: str,
                           payload: bytes) -> tuple[bytes, str | None]:
        """An HTTP API request: the NATS queries' code, within the same concurrency bound
        (the HTTP server listens from the start, before the registry is migrated)."""
        if not self._serving:
            return error_reply("internal", "assetd is starting; ask again shortly"), "internal"
        return await self.query_pool.call(
            functools.partial(self.queries.answer, project, method, payload))

    def _js(self) -> Any:
        """One JetStream context per connection: each context's first ``publish_async``
        subscribes an inbox of its own for the acks and never lets it go, so a context per
        relay batch leaked a subscription (and its task) per batch — 400 a second at
        1,000 events/s, and full garbage collections growing to 250 ms."""
        nc = self.broker.connection
        if self._js_for is not nc:
            self._js_ctx, self._js_for = nc.jetstream(), nc
        return self._js_ctx

    def _publisher(self) -> BatchPublisher | ProcessPublisher:
        """The relay's publisher: its child process (``relay_process``), or one on the
        current connection (its ack inbox lives on it)."""
        if self._process_publisher is not None:
            return self._process_publisher
        nc = self.broker.connection
        if self._publisher_ctx is None or self._publisher_ctx.nc is not nc:
            self._publisher_ctx = BatchPublisher(nc)
        return self._publisher_ctx

    async def _serve_queries(self) -> None:
        """Answer the query subjects with a plain nats-py subscription in the replicas'
        queue group (FastStream's per-message path cost more than a kept answer), and hear
        the other replicas' "changed" notices when the answer cache needs them."""
        nc, prefix = self.broker.connection, self.settings.subject_prefix
        await nc.subscribe(wire.api_pattern(prefix), queue=wire.API_QUEUE, cb=self._on_query)
        if isinstance(self.answers, CountedAnswers):
            await nc.subscribe(wire.changed_subject(prefix), cb=self._on_changed)

    async def _on_query(self, msg: Any) -> None:
        """One request: a kept answer goes back at once; any other is answered in a task of
        its own (QueryPool bounds how many), so that the next request is taken at once and a
        slow query never holds up the others."""
        if not self.queries.reply_allowed(msg.subject, msg.reply):
            log.warning("query refused: reply subject outside the requester's inbox space",
                        subject=msg.subject, reply=(msg.reply or "")[:200])
            return
        kept = self.queries.cached(msg.subject, msg.data)
        if kept is not None:
            await self.broker.connection.publish(msg.reply, kept)
            return
        await self.query_pool.submit(functools.partial(self._reply, msg))

    async def _reply(self, msg: Any) -> None:
        """Answer one request; replied without headers, so that the size check is exact."""
        answer = await self.queries.handle(msg.subject, msg.data)
        await self.broker.connection.publish(msg.reply, answer)

    async def _on_changed(self, msg: Any) -> None:
        if msg.data != self.scheduler.holder.encode():  # another replica committed
            self.answers.changed()  # type: ignore[attr-defined]

    def _changed_soon(self) -> None:
        """After a commit of this replica's writer (in its thread): tell the other replicas,
        one notice for the commits of one turn of the event loop."""
        if self._loop is None or self._changed_pending or self._loop.is_closed():
            return
        self._changed_pending = True
        with contextlib.suppress(RuntimeError):  # the loop is closing
            self._loop.call_soon_threadsafe(self._send_changed)

    def _send_changed(self) -> None:
        self._changed_pending = False
        nc = self._nc()
        if nc is None or not nc.is_connected:
            return  # the others clear their caches when they reconnect
        task = asyncio.ensure_future(nc.publish(wire.changed_subject(
            self.settings.subject_prefix), self.scheduler.holder.encode()))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _reconnected(self) -> None:
        """Notices may have been missed while the connection was down."""
        if isinstance(self.answers, CountedAnswers):
            self.answers.changed()
        await self.watch.reconnected()

    def _nc(self) -> Any:
        """The nats-py connection, or None before the first connect and after the stop."""
        try:
            return self.broker.connection
        except Exception:  # FastStream: "Connection is not available yet"
            return None

    def _connected(self) -> bool:
        nc = self._nc()
        return bool(nc is not None and nc.is_connected)

    async def _ensure_streams(self) -> None:
        """Before a loop's retry: re-create any stream that is missing (deleted, or a wiped
        NATS store). Existing streams are left alone (their update happens at start)."""
        if not self._connected():
            raise NatsUnavailableError("NATS connection lost; nats-py is reconnecting")
        async with self._ensuring:
            js, s = self._js(), self.settings
            for cfg in stream_configs(s.subject_prefix, s.stream_replicas):
                if not await _present(js.stream_info(cfg.name)):
                    log.warning("a stream is missing; re-creating the streams", stream=cfg.name)
                    await ensure_streams(js, s.subject_prefix, s.stream_replicas)
                    return

    def _fatal(self, reason: str) -> None:
        """The NATS connection is lost for good: stop, and exit 1 so that the process
        supervisor (systemd, Kubernetes) starts a fresh process."""
        if self._stopping:
            return
        log.error(f"{reason}; exiting so that the process supervisor restarts assetd")
        self.exit_code = 1
        self.request_stop()

    def _max_payload(self) -> int:
        """The server's ``max_payload`` (headers count against it)."""
        return int(self.broker.connection.max_payload)

    async def _project_stream(self, project: str) -> str:
        s = self.settings
        return await ensure_project_stream(self._js(), s.subject_prefix, project,
                                           replicas=s.stream_replicas,
                                           max_consumers=s.max_consumers_per_project)

    def _check_max_payload(self) -> None:
        """Refuse to run against a server that could refuse what the daemon publishes."""
        need = OUTBOUND_MAX_BYTES + REPLY_SLACK
        if self._max_payload() < need:
            raise ConfigError(f"the NATS server's max_payload is {self._max_payload()} bytes; "
                              f"assetd needs at least {need} (set max_payload: 1MB)")

    async def status(self) -> dict[str, Any]:
        """The ``status`` query's result."""
        dlq_depth: int | None = None
        lag: int | None = None
        try:
            js = self._js()
            dlq_depth = (await js.stream_info(wire.DLQ_STREAM)).state.messages
            info = await js.consumer_info(wire.IN_STREAM, wire.DURABLE)
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
            "loops": self.supervisor.status(),
        }

    def _lease(self) -> dict[str, Any] | None:
        try:
            return self.scheduler.status(self.reader)
        except Exception:
            return None

    async def ready(self) -> dict[str, bool]:
        """``/readyz``: NATS connected, the database takes writes, the streams and the durable
        consumer present, every background loop running, rules loaded."""
        checks = {"nats": self._connected()}
        problem = await asyncio.to_thread(write_problem, self.writer, trust_commit_within=5.0)
        checks["database"] = problem is None
        checks["streams"] = checks["consumer"] = False
        if checks["nats"]:
            js = self._js()
            names = [c.name for c in stream_configs(self.settings.subject_prefix)]
            checks["streams"] = all([await _present(js.stream_info(n)) for n in names])
            checks["consumer"] = await _present(js.consumer_info(wire.IN_STREAM, wire.DURABLE))
        checks["loops"] = self.supervisor.healthy()
        checks["rules"] = self.rules.path is None or self.rules.current is not None
        return checks

    async def refresh(self) -> None:
        """Bring the gauges of ``/metrics`` up to date; the cluster-wide ones are exported
        only while this replica holds the scheduler lease (and the lease row says so)."""
        st = await self.status()
        m = self.metrics
        holder = self.scheduler.is_leader and bool((st["lease"] or {}).get("this_replica"))
        m.update_shared(holder=holder, lag=st["lag"], outbox=st["outbox_pending"],
                        dlq=st["dlq_depth"])
        m.rules_count.set(len(self.rules.current.rules.rules) if self.rules.current else 0)
        m.rules_loaded.set(self.rules.loaded_at.timestamp() if self.rules.loaded_at else 0)

    def _outbox_pending(self) -> int | None:
        try:
            with self.reader.connect() as conn:
                return repo.outbox_count(conn)
        except Exception:
            return None

    async def start(self) -> None:
        """Start NATS (if embedded), migrate, declare streams, start consuming and relaying."""
        # the relay's child interpreter starts (its imports) while the rest does
        spawned = None if self._process_publisher is None else asyncio.ensure_future(
            self._process_publisher.spawn())
        try:
            await self._start(spawned)
        finally:
            if spawned is not None and not spawned.done():
                spawned.cancel()

    async def _start(self, spawned: asyncio.Future[None] | None) -> None:
        self.rules.load_initial()  # an invalid rules file stops the start here
        if self.http is not None:  # /healthz answers, /readyz says what is missing meanwhile
            await self.http.start()
        if self.embedded:
            await asyncio.to_thread(self.embedded.start)
        try:
            await asyncio.to_thread(upgrade, self.settings.effective_db_url)
        except (SQLAlchemyError, OSError) as exc:
            raise ConfigError(f"cannot open or migrate the registry: "
                              f"{str(exc).splitlines()[0][:300]}") from None
        await self._connect()
        self._check_max_payload()
        await self._retrying("declare streams", lambda: ensure_streams(
            self._js(), self.settings.subject_prefix, self.settings.stream_replicas))
        self._loop = asyncio.get_running_loop()
        await self.broker.start()
        if spawned is not None and self._process_publisher is not None:
            # connected before anything is asked of the daemon
            await self._start_relay_process(self._process_publisher, spawned)
        await self._serve_queries()
        await self._retrying("bind the inbound consumer", self.consumer.start)
        self.relay.start()
        self.scheduler.start()
        self._serving = True
        log.info("assetd started", nats=redact_url(self.settings.effective_nats_url),
                 database="sqlite" if is_sqlite(self.settings.effective_db_url) else "postgresql",
                 version=assetd.__version__)

    async def _start_relay_process(self, publisher: ProcessPublisher,
                                   spawned: asyncio.Future[None]) -> None:
        """Connect the relay's child; if the system will not start one at all, publish from
        this process instead (one core, the same guarantees) and say so."""
        try:
            await spawned
            await publisher.start()
        except RelayProcessSpawnError as exc:
            log.warning("the relay publishes in process: its child cannot be started",
                        error=str(exc)[:300])
            self._process_publisher = None
            return
        except Exception:  # NATS not reachable yet, and the like: retried as any start step
            await self._retrying("start the relay's process", publisher.start)

    async def _connect(self) -> None:
        """Connect; nats-py keeps trying while NATS cannot be reached, for ``startup_timeout``
        (a signal ends the wait earlier); an error no retry can fix (credentials refused)
        ends the start at once."""
        where = redact_url(self.settings.effective_nats_url)
        try:
            await asyncio.wait_for(self.broker.connect(), self.settings.startup_timeout)
        except TimeoutError:
            raise ConfigError(f"could not connect to NATS at {where} within "
                              f"{self.settings.startup_timeout:g} s") from None
        except Exception as exc:
            raise ConfigError(f"could not connect to NATS at {where}: {exc}") from None

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
        embedded) — within ``graceful_timeout``, whatever state NATS and the database are
        in; what is left then is redelivered or published at the next start."""
        if self._stopped:
            return
        self._stopped = self._stopping = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.graceful_timeout
        spare = min(3.0, self.settings.graceful_timeout / 4)  # for closing the connection
        for name, step in (("scheduler", self.scheduler.stop), ("http", self._stop_http),
                           ("inbound", self.consumer.stop), ("relay", self.relay.stop),
                           ("queries", self.query_pool.drain)):
            await _bounded(name, step, deadline - spare)
        if self._process_publisher is not None:
            await _bounded("relay process", self._process_publisher.close, deadline - spare)
        await _bounded("nats", self._close_nats, deadline)
        self.query_pool.close()
        self.ingest.close()
        self.answers.close()
        self.watch.release()
        self.writer.dispose()
        self.reader.dispose()
        if self.embedded:
            await asyncio.to_thread(self.embedded.stop)
        if self._serving:  # a start that failed has said why in one line already
            log.info("assetd stopped")

    async def _stop_http(self) -> None:
        if self.http is not None:
            await self.http.stop()

    async def _close_nats(self) -> None:
        """Drain the connection if it is up (replies in flight go out); close it otherwise."""
        nc = self._nc()
        if nc is None or nc.is_closed:
            return
        if nc.is_connected:
            try:
                await self.broker.stop()
            except Exception as exc:
                log.warning("NATS connection not drained", error=str(exc)[:300])
        if not nc.is_closed:
            await nc.close()

    def _reload_in_background(self) -> None:
        task = asyncio.ensure_future(asyncio.to_thread(self.rules.reload))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def request_stop(self) -> None:
        """Ask :meth:`serve` to return (signal handlers call this)."""
        self._stopping = True
        self._stop.set()

    async def serve(self) -> None:
        """Run until SIGINT or SIGTERM (``exit_code`` 0), or until the NATS connection is
        lost for good (``exit_code`` 1); a signal during the start ends it too."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.request_stop)
        # Reloading parses YAML (a second or more for a large file): off the event loop.
        loop.add_signal_handler(signal.SIGHUP, self._reload_in_background)
        try:
            starting = asyncio.ensure_future(self.start())
            stopping = asyncio.ensure_future(self._stop.wait())
            await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            if not starting.done():
                log.info("stop requested while starting")
                starting.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await starting
                return
            starting.result()  # a failed start raises here
            _freeze_startup_objects()
            await self._stop.wait()
        finally:
            await self.stop()


async def _present(info: Awaitable[Any]) -> bool:
    """Whether a JetStream object exists (its info answers within a few seconds)."""
    try:
        await asyncio.wait_for(info, 3)
    except Exception:
        return False
    return True


async def _bounded(name: str, step: Callable[[], Awaitable[None]], deadline: float) -> None:
    """Run one shutdown step until ``deadline``; a step that fails or hangs is logged and
    left behind (its work is redelivered or republished at the next start)."""
    left = max(0.1, deadline - asyncio.get_running_loop().time())
    try:
        await asyncio.wait_for(step(), left)
    except TimeoutError:
        log.warning("graceful shutdown timed out", step=name)
    except Exception as exc:
        log.warning("graceful shutdown step failed", step=name, error=str(exc)[:300])


def build_broker(settings: Settings, *, closed_cb: Callback | None = None,
                 disconnected_cb: Callback | None = None,
                 error_cb: ErrorCallback | None = None,
                 reconnected_cb: Callback | None = None) -> NatsBroker:
    """The NATS broker, reconnecting for ever, without FastStream's per-message logging;
    the callbacks tell the daemon when the connection is lost for good."""
    return NatsBroker(
        settings.nats_servers,
        security=nats_security(settings),
        graceful_timeout=30.0,
        max_reconnect_attempts=-1,
        inbox_prefix=wire.DAEMON_INBOX,
        reconnect_time_wait=1,
        logger=None,
        name="assetd",
        description="assetd: asset events in, registry, follow-up events out.",
        closed_cb=closed_cb,
        disconnected_cb=disconnected_cb,
        error_cb=error_cb,
        reconnected_cb=reconnected_cb,
    )


# The cyclic collector runs a young collection once 50,000 more container objects were
# allocated than freed (CPython's default: 700). A batch of 1,000 registrations keeps some
# 100,000 objects alive until it is committed (events, models, rows), so with the default
# the collector ran ~50 times a batch, walking the batch again and again without finding
# garbage: ~12 % of the daemon's time under load (docs/benchmarks.md). The batch's objects
# are freed by reference counting when it ends; what the collector is for (cycles) is rare.
GC_YOUNG_THRESHOLD = 50_000


def _freeze_startup_objects() -> None:
    """Move what the start created (modules, schemas, compiled statements) out of the
    cyclic collector's reach: each full collection walked all of it, a ~100 ms pause of the
    whole daemon every few seconds under load (measured: 102 and 108 ms; 2 ms once frozen),
    the p99.9 of a paced run. Garbage is collected first, so nothing unreachable is kept.
    Then the collector's young threshold is raised (``GC_YOUNG_THRESHOLD``)."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)
