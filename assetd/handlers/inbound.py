"""The inbound batch: decode, apply in one transaction, dead-letter bad input, then ack."""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import structlog
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from assetd.config import Settings, limits
from assetd.daemon.pull import delivery
from assetd.daemon.relay import Marks, Row
from assetd.errors import RejectedError
from assetd.handlers.batch import Received, apply_batch, give_up, rejection_row
from assetd.handlers.deadletter import dead_letter_copy
from assetd.handlers.decode import decode, read_ids
from assetd.metrics import Metrics
from assetd.registry.engine import database_fault, write_problem
from assetd.rules.loader import LoadedRules
from assetd.schemas import wire

log = structlog.get_logger("assetd.inbound")


class Ingest:
    """Handles each pulled batch; commit first, then dead-letter, then ack."""

    def __init__(self, *, engine: Engine, settings: Settings, js: Callable[[], Any],
                 on_committed: Callable[[], None],
                 rules: Callable[[], LoadedRules | None] = lambda: None,
                 metrics: Metrics | None = None,
                 max_payload: Callable[[], int] = lambda: 1024 * 1024,
                 marks: Marks | None = None) -> None:
        self.engine, self.settings, self.js, self.rules = engine, settings, js, rules
        self.max_payload = max_payload
        self.metrics = metrics
        self.on_committed = on_committed
        self.marks = marks  # the relay's published marks, written with each batch
        self.counters: Counter[str] = Counter()
        self.limits = limits(settings)
        self.trace = settings.trace_stages  # ASSETD_TRACE_STAGES=1: a log line per batch
        # Every batch in one thread of its own, not in whichever of the default executor's
        # threads is free: glibc gives each thread that allocates a heap (arena) of its own,
        # and each kept a batch's peak — 7-16 MiB more resident memory after 100,000
        # registrations than one thread (docs/benchmarks.md)
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="assetd-ingest")

    def close(self) -> None:
        """Let the batch thread go (after the last batch)."""
        self._thread.shutdown(wait=False)

    async def handle(self, msgs: list[Any]) -> None:
        """Process one batch of JetStream messages; every message ends acked or nak'd."""
        if not msgs:
            return
        started = time.perf_counter()
        stages: dict[str, float] | None = {"handed": started} if self.trace else None
        marks = self.marks.take() if self.marks is not None else []
        if self.marks is not None:
            self.marks.ingesting = True
        try:
            context = contextvars.copy_context()  # as asyncio.to_thread does
            batch, decisions, written = await asyncio.get_running_loop().run_in_executor(
                self._thread, context.run, self._decode_and_apply, msgs, stages, marks)
        except BaseException as exc:  # the database (or the code) failed the whole batch
            self._release(marks, committed=False)
            if not isinstance(exc, Exception):  # cancelled: the daemon is stopping
                raise
            if isinstance(exc, SQLAlchemyError):
                log.warning("batch failed; will retry", error=str(exc)[:300], size=len(msgs))
            else:
                log.exception("batch failed unexpectedly; will retry", size=len(msgs))
            await self._batch_failed(msgs, exc)
            return
        self._release(marks, committed=True)
        if self.marks is not None:  # (and the wake that follows is this batch's)
            self.marks.hand(written)  # the relay publishes them without reading them back
        self.on_committed()  # the relay starts on the committed rows while this one acks
        await self._dead_letter(msgs, batch)
        self._observe(batch, decisions, time.perf_counter() - started)
        for msg, rec in zip(msgs, batch, strict=True):
            self.counters[rec.outcome] += 1
            if rec.outcome == "retry":
                log.warning("event failed; will retry", error=rec.error, **_fields(rec))
                await msg.nak(delay=self._delay(msg))
            else:
                await msg.ack()
        if stages is not None:
            self._trace(msgs, stages)

    def _release(self, marks: list[int], *, committed: bool) -> None:
        """The batch is over: the relay's marks it carried are written, or queued again."""
        if self.marks is not None:
            self.marks.ingesting = False
            (self.marks.written if committed else self.marks.failed)(marks)

    def _trace(self, msgs: list[Any], stages: dict[str, float]) -> None:
        """One log line: where this batch's time went, stage by stage, in ms.

        ``queued``: from the oldest message's store time in JetStream to the batch being
        handed over (the wait in the stream, the fetch and any earlier batch still in hand).
        """
        acked = time.perf_counter()
        oldest = min(m.metadata.timestamp for m in msgs).timestamp()
        queued = time.time() - (acked - stages["handed"]) - oldest

        def ms(a: str, b: str) -> float:
            return round(1000 * (stages[b] - stages[a]), 2)

        log.info("batch stages", size=len(msgs), queued_ms=round(1000 * queued, 2),
                 to_thread_ms=ms("handed", "thread"), decode_ms=ms("thread", "begin"),
                 lock_ms=ms("begin", "locked"), apply_ms=ms("locked", "applied"),
                 commit_ms=ms("applied", "committed"),
                 ack_ms=round(1000 * (acked - stages["committed"]), 2))

    async def _batch_failed(self, msgs: list[Any], exc: Exception) -> None:
        """Nak with a growing delay; a message out of attempts goes to the DLQ with the error.

        Unless the database itself cannot take a write (down, read-only, locked past the
        busy timeout, disk failing: the batch's own error or the write probe says so — the
        error first, since the probe runs on a fresh connection): that is no fault of these
        events, so they are nak'd with the same capped backoff for as long as it lasts, and
        never dead-lettered for it. The registry cannot take a dead letter's event_rejected
        either, so that is published directly (same deterministic id as through the outbox).
        """
        s, error = self.settings, f"{type(exc).__name__}: {exc}"[:500]
        problem = database_fault(exc) or await asyncio.to_thread(write_problem, self.engine)
        if problem is not None:
            log.warning("database cannot take writes; batch nak'd until it can",
                        problem=problem, size=len(msgs))
            self.counters["retry"] += len(msgs)
            await asyncio.gather(*(m.nak(delay=self._delay(m)) for m in msgs))
            return
        spent = [m for m in msgs if delivery(m)[1] >= s.max_deliver]
        retry = [m for m in msgs if delivery(m)[1] < s.max_deliver]
        self.counters["retry"] += len(retry)
        await asyncio.gather(*(m.nak(delay=self._delay(m)) for m in retry))
        if not spent:
            return
        recs = []
        for m in spent:
            seq, delivered = delivery(m)
            rec = Received(tokens=wire.parse_in(m.subject, s.subject_prefix), seq=seq,
                           delivered=delivered)
            read_ids(rec.tokens, m.data[: s.max_message_bytes])
            rec.reject(give_up(rec.delivered, error))
            recs.append(rec)
        await self._dead_letter(spent, recs)
        js, now = self.js(), datetime.now(UTC)
        for m, rec in zip(spent, recs, strict=True):
            if rec.outcome != "rejected":
                await m.nak(delay=self._delay(m))
                continue
            row = rejection_row(rec, prefix=s.subject_prefix, now=now)
            try:
                await js.publish(row["subject"], row["payload"],
                                 headers=wire.outbound_headers(row["id"]), timeout=5)
            except Exception as exc:
                log.warning("event_rejected publish failed", error=str(exc))
            self.counters["rejected"] += 1
            await m.ack()

    def _observe(self, batch: list[Received], decisions: Counter[str], seconds: float) -> None:
        if self.metrics is None:
            return
        m = self.metrics
        m.batch_size.observe(len(batch))
        m.batch_seconds.observe(seconds)
        for (type_, result), n in Counter((r.tokens.type, r.outcome) for r in batch).items():
            m.events.labels(type_, result).inc(n)
        for outcome, n in decisions.items():
            m.decisions.labels(outcome).inc(n)

    def _decode_and_apply(self, msgs: list[Any], stages: dict[str, float] | None = None,
                          marks: list[int] | None = None,
                          ) -> tuple[list[Received], Counter[str], list[Row]]:
        s = self.settings
        if stages is not None:
            stages["thread"] = time.perf_counter()
        batch = []
        for m in msgs:
            tok = wire.parse_in(m.subject, s.subject_prefix)
            seq, delivered = delivery(m)
            rec = Received(tokens=tok, seq=seq, delivered=delivered)
            try:
                rec.item = decode(m.subject, m.data, prefix=s.subject_prefix, headers=m.headers,
                                  max_bytes=s.max_message_bytes, limits=self.limits)
                tok.event_id = rec.item.event.id
            except RejectedError as exc:
                rec.rejection = exc
                if len(m.data) <= s.max_message_bytes:
                    read_ids(tok, m.data)
            batch.append(rec)
        written: list[Row] = []
        decisions = apply_batch(self.engine, batch, prefix=s.subject_prefix,
                                max_deliver=s.max_deliver, rules=self.rules(), stages=stages,
                                marks=marks, written=written)
        return batch, decisions, written

    async def _dead_letter(self, msgs: list[Any], batch: list[Received]) -> None:
        """Copy each rejected message to ``ASSETD_DLQ`` with its reason, sized to fit."""
        js = self.js()
        for msg, rec in zip(msgs, batch, strict=True):
            if rec.outcome != "rejected":
                continue
            log.info("event rejected", reason=rec.error, **_fields(rec))
            tok = rec.tokens
            copy = dead_letter_copy(
                subject=tok.dlq_subject(self.settings.subject_prefix),
                data=msg.data, headers=msg.headers, reason=rec.error or "rejected",
                errors=rec.errors, inbound_subject=msg.subject, seq=rec.seq,
                event_id=tok.event_id, max_payload=self.max_payload())
            try:
                await js.publish(copy.subject, copy.payload, headers=copy.headers, timeout=5)
            except Exception as exc:  # NATS trouble: leave the message for redelivery
                log.warning("dead-letter publish failed; will retry", error=str(exc))
                rec.outcome = "retry"

    def _delay(self, msg: Any) -> float:
        """nak_delay * 2**(attempt-1), at most 60 s."""
        attempt = max(1, delivery(msg)[1])
        return float(min(self.settings.nak_delay * 2 ** min(attempt - 1, 16), 60.0))


def _fields(rec: Received) -> dict[str, Any]:
    tok = rec.tokens
    return {"event_id": tok.event_id, "type": tok.type, "project": tok.project,
            "branch": tok.branch, "asset": tok.asset, "subject": tok.subject}
