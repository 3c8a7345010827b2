"""The outbox relay: publish committed outbound events to JetStream, in order, by id."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Protocol

import structlog
from sqlalchemy import Engine

from assetd.daemon.supervisor import NatsUnavailableError, Supervisor
from assetd.metrics import Metrics
from assetd.registry import repo
from assetd.schemas import wire

LOOP = "relay"
log = structlog.get_logger("assetd.relay")
Row = tuple[int, str, str, bytes]  # an outbox row: (seq, id, subject, payload)


class Publisher(Protocol):
    """Publishes a batch and returns once JetStream acknowledged all of it
    (:class:`assetd.daemon.publisher.BatchPublisher`)."""

    async def publish(self, messages: Sequence[tuple[str, bytes, dict[str, str]]],
                      timeout: float) -> None: ...


# SQLite: how long the relay leaves its published marks for the next ingest batch to write
# before it writes them itself (a write of its own queues for the one writer's lock)
MARK_DELAY = 0.25


class Marks:
    """Published outbox rows whose ``published_at`` is not written yet.

    Writing the marks in a transaction of their own made the relay queue for SQLite's one
    writer behind ingest batches (p99 0.8 s, docs/benchmarks.md), holding up the next
    outbound events. So the relay hands them here and goes on publishing; on SQLite, while an
    ingest batch is in hand, the next batch writes them in its own transaction
    (:meth:`take`, then :meth:`written` or :meth:`failed`), otherwise the relay writes them.
    Until then the relay skips them when it reads pending rows. Lost marks (a crash) only
    re-publish the same ids, as a crash between publish and mark always could.
    """

    def __init__(self) -> None:
        self.unmarked: set[int] = set()
        self.queued: list[int] = []
        self.queued_at = 0.0  # when the oldest queued mark was queued (``time.monotonic``)
        self.ingesting = False  # an ingest batch is in hand (it will take the queued marks)
        # The outbox rows a batch committed, handed over by the ingest (the relay publishes
        # them without reading them back) and whether the next wake is that batch's
        self.handed: list[Row] = []
        self.handing = False

    def hand(self, rows: list[Row]) -> None:
        """A batch committed ``rows`` (after its commit, before waking the relay)."""
        self.handed += rows
        self.handing = True

    def published(self, seqs: list[int]) -> None:
        """JetStream acknowledged these rows."""
        if not self.queued:
            self.queued_at = time.monotonic()
        self.unmarked.update(seqs)
        self.queued += seqs

    def take(self) -> list[int]:
        """The queued marks, for a transaction to write."""
        taken, self.queued = self.queued, []
        return taken

    def written(self, seqs: list[int]) -> None:
        """The transaction that wrote ``seqs`` committed."""
        self.unmarked.difference_update(seqs)

    def failed(self, seqs: list[int]) -> None:
        """The transaction that was to write ``seqs`` did not commit: queue them again."""
        if seqs and not self.queued:
            self.queued_at = time.monotonic()
        self.queued += seqs


class OutboxRelay:
    """Publishes pending outbox rows with ``Nats-Msg-Id`` = id; marks them only after the ack.

    A crash between publish and mark re-publishes the same ids, which JetStream drops
    inside its duplicate window; subscribers dedupe by id beyond it.

    Once a read of the pending rows found them all (and they were published), the rows the
    ingest hands over after each commit (:meth:`Marks.hand`) are all that is new from this
    daemon: the relay publishes them as they are, without reading them back. Any other wake
    (the scheduler's jobs and outbox sweep), a start, a failure or a backlog larger than a
    read goes back to reading the outbox.
    """

    def __init__(self, *, writer: Engine, reader: Engine, publisher: Callable[[], Publisher],
                 supervisor: Supervisor, connected: Callable[[], bool] = lambda: True,
                 recover: Callable[[], Awaitable[None]] | None = None, batch: int = 1000,
                 publish_timeout: float = 10.0, metrics: Metrics | None = None,
                 trace: bool = False) -> None:
        self.metrics = metrics
        self.trace = trace  # ASSETD_TRACE_STAGES=1: a log line per published batch
        self._woken = self._lag = 0.0
        self.writer, self.reader, self.publisher, self.batch = writer, reader, publisher, batch
        self.supervisor, self.connected, self.recover = supervisor, connected, recover
        self.publish_timeout = publish_timeout
        self.marks = Marks()
        # SQLite has one writer: marks go in with the next ingest batch when one is in hand
        self.fold_marks = writer.dialect.name == "sqlite"
        self._wake = asyncio.Event()
        self._started = False
        self._stopping = False
        self._caught_up = False  # the last read found every pending row, now published
        self._read = True  # a wake from elsewhere than the ingest: read the outbox
        self._high = 0  # the highest seq read or published: a handed row up to it is old
        self.published = 0

    def wake(self) -> None:
        """Tell the relay new rows were committed."""
        if self.marks.handing:
            self.marks.handing = False  # the ingest's wake: its rows are handed over
        else:
            self._read = True
        if not self._wake.is_set():
            self._woken = time.perf_counter()
        self._wake.set()

    def start(self) -> None:
        """Run the relay loop in the background, under the supervisor (which retries a
        failed flush with backoff: NATS or the database down, a stream deleted)."""
        if not self._started:
            self._started = True
            self.supervisor.spawn(LOOP, self._run, recover=self.recover)

    async def stop(self) -> None:
        """Publish what is pending (bounded by the publish timeout), then stop."""
        self._stopping = True
        self._wake.set()
        if self._started:
            await self.supervisor.stop(LOOP)

    async def _run(self) -> None:
        self._caught_up = False  # a start, or a retry after a failure: read the outbox
        while True:
            await self.flush()
            if self._stopping:
                return
            # after each commit, the scheduler's outbox sweep, and when marks are due (not
            # while a batch is in hand: it takes them, or its commit wakes the relay after)
            due = (max(0.01, self.marks.queued_at + MARK_DELAY - time.monotonic())
                   if self.marks.queued and not self.marks.ingesting else None)
            try:
                await asyncio.wait_for(self._wake.wait(), due)
            except TimeoutError:
                continue
            self._wake.clear()
            self._lag = time.perf_counter() - self._woken

    async def flush(self) -> int:
        """Publish every pending row; return how many were published."""
        total = 0
        while True:
            t0 = time.perf_counter()
            rows, complete = await self._next_rows()
            if not rows:
                await self._settle()
                return total
            t1 = time.perf_counter()
            if not self.connected():  # publishing now would only fill the reconnect buffer
                raise NatsUnavailableError("NATS connection lost; nats-py is reconnecting")
            await self.publisher().publish(
                [(subject, payload, wire.outbound_headers(oid))
                 for _, oid, subject, payload in rows], self.publish_timeout)
            t2 = time.perf_counter()
            self._high = max(self._high, rows[-1][0])
            if complete is not None:
                self._caught_up = complete
            self.marks.published([seq for seq, *_ in rows])
            await self._settle()
            if self.trace:
                t3 = time.perf_counter()
                log.info("relay stages", size=len(rows),
                         woken_ms=round(1000 * self._lag, 2),
                         read_ms=round(1000 * (t1 - t0), 2),
                         publish_ms=round(1000 * (t2 - t1), 2),
                         mark_ms=round(1000 * (t3 - t2), 2))
                self._lag = 0.0  # the next rows of this flush did not wait for a wake
            total += len(rows)
            self.published += len(rows)
            if self.metrics is not None:
                self.metrics.published.inc(len(rows))

    async def _next_rows(self) -> tuple[list[Row], bool | None]:
        """The next rows to publish, and (after a read) whether that read found them all."""
        handed = self.marks.handed
        if self._caught_up and not self._read:
            while handed and handed[0][0] <= self._high:  # already read (and published)
                del handed[0]
            rows = handed[: self.batch]
            del handed[: self.batch]
            return rows, None
        self._read = False
        self._caught_up = False
        high = self._high
        # a copy, made here: the loop changes the set while the thread reads
        rows, complete = await asyncio.to_thread(self._pending, set(self.marks.unmarked))
        if rows:
            high = max(high, rows[-1][0])
        self.marks.handed = [r for r in self.marks.handed if r[0] > high]
        return rows, complete

    async def _settle(self) -> None:
        """Write the queued marks, unless the next ingest batch will take them: one in hand,
        or (SQLite) one expected within ``MARK_DELAY``."""
        if not self.marks.queued:
            return
        if self.fold_marks and not self._stopping and (
                self.marks.ingesting
                or time.monotonic() - self.marks.queued_at < MARK_DELAY):
            return
        seqs = self.marks.take()
        try:
            await asyncio.to_thread(self._mark, seqs)
        except BaseException:
            self.marks.failed(seqs)
            raise
        self.marks.written(seqs)

    def _pending(self, skip: set[int]) -> tuple[list[Row], bool]:
        """The oldest pending rows, less those published whose marks are not written yet;
        and whether they are all of them."""
        limit = self.batch + len(skip)
        with self.reader.connect() as conn:
            rows = repo.outbox_pending(conn, limit=limit)
        fresh = [row for row in rows if row[0] not in skip]
        return fresh[: self.batch], len(rows) < limit and len(fresh) <= self.batch

    def _mark(self, seqs: list[int]) -> None:
        with self.writer.begin() as conn:
            repo.outbox_mark_published(conn, seqs=seqs, now=datetime.now(UTC))
