"""Apply one pulled batch in one transaction: inbox ▸ change ▸ outbox, a savepoint per event."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from assetd.errors import RejectedError
from assetd.handlers.consumption import on_consumed
from assetd.handlers.decode import Inbound
from assetd.handlers.lifecycle import on_updated
from assetd.handlers.outcome import applied, rows
from assetd.handlers.promotion import on_promotion_requested, on_rollback_requested
from assetd.handlers.quality import on_drift, on_quality
from assetd.handlers.registration import on_defined, on_registered
from assetd.handlers.tx import Tx, outbound
from assetd.registry import driver, repo
from assetd.registry.engine import database_fault
from assetd.rules.loader import LoadedRules
from assetd.schemas import wire
from assetd.schemas.outbound import EventRejected

# A handler returns what the ``event`` query reports of it (the instance, …), or None.
Handler = Callable[[Tx, Inbound], dict[str, Any] | None]
HANDLERS: dict[str, Handler] = {
    "asset_defined": on_defined,
    "asset_registered": on_registered,
    "asset_consumed": on_consumed,
    "instance_updated": on_updated,
    "quality_reported": on_quality,
    "drift_reported": on_drift,
    "promotion_requested": on_promotion_requested,
    "alias_rollback_requested": on_rollback_requested,
}
Outcome = Literal["applied", "duplicate", "rejected", "retry"]


@dataclass(slots=True)
class Received:
    """One pulled message: where it came from, and what decoding made of it."""

    tokens: wire.Tokens
    seq: int
    delivered: int
    item: Inbound | None = None
    rejection: RejectedError | None = None
    outcome: Outcome = "retry"
    error: str | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)
    result: dict[str, Any] | None = None  # an applied event's outcome (the event query)

    def reject(self, exc: RejectedError) -> None:
        """Mark this message as bad input."""
        self.outcome, self.error, self.errors = "rejected", exc.reason, exc.errors


def apply_batch(engine: Engine, batch: list[Received], *, prefix: str, max_deliver: int,
                rules: LoadedRules | None = None,
                stages: dict[str, float] | None = None,
                marks: list[int] | None = None,
                written: list[tuple[int, str, str, bytes]] | None = None) -> Counter[str]:
    """Apply ``batch`` and set each message's outcome; raise on a database failure (retry all).

    First optimistically, without a savepoint per event (on SQLite with the new instances in
    one statement): when every event applies, that is the batch's transaction. When one
    fails (bad input found by its handler, a constraint, a bug), that transaction is rolled
    back and the batch applied again with a savepoint per event, so that the failing event
    alone is refused or retried. Either way one transaction commits, before any ack.

    ``marks``: outbox seqs the relay published, marked in this transaction (SQLite has one
    writer; a transaction of their own would queue behind this one). ``written`` (when
    given) gets the outbox rows the committed transaction wrote, in seq order.

    Returns the rule decisions of the committed events, by outcome. ``stages`` (when given)
    gets the ``perf_counter`` at which the transaction was asked for (``begin``), began
    (``locked``), its statements were done (``applied``) and its commit returned
    (``committed``)."""
    try:
        return _attempt(engine, batch, prefix=prefix, max_deliver=max_deliver, rules=rules,
                        stages=stages, marks=marks, written=written, optimistic=True)
    except _RedoError:
        for rec in batch:
            rec.outcome, rec.error, rec.errors, rec.result = "retry", None, [], None
        return _attempt(engine, batch, prefix=prefix, max_deliver=max_deliver, rules=rules,
                        stages=stages, marks=marks, written=written, optimistic=False)


class _RedoError(Exception):
    """An event failed in an optimistic batch: apply the batch again, a savepoint per event."""


def _attempt(engine: Engine, batch: list[Received], *, prefix: str, max_deliver: int,
             rules: LoadedRules | None, stages: dict[str, float] | None,
             marks: list[int] | None, written: list[tuple[int, str, str, bytes]] | None,
             optimistic: bool) -> Counter[str]:
    if stages is not None:
        stages["begin"] = time.perf_counter()
    with engine.begin() as conn:
        if stages is not None:
            stages["locked"] = time.perf_counter()  # SQLite: BEGIN IMMEDIATE has the lock
        tx = Tx(conn=conn, now=datetime.now(UTC), prefix=prefix, rules=rules,
                defer_instances=optimistic,
                expected_instances=sum(1 for r in batch if r.item is not None
                                       and r.item.event.type == "asset_registered"))
        try:
            _statements(tx, batch, max_deliver, marks, optimistic)
        except Exception as exc:  # e.g. the batch's instances refused by a constraint
            if optimistic and database_fault(exc) is None:
                raise _RedoError(f"{type(exc).__name__}: {exc}"[:500]) from exc
            raise  # the database itself: the whole batch is retried (inbound.py)
        if stages is not None:
            stages["applied"] = time.perf_counter()
    if stages is not None:
        stages["committed"] = time.perf_counter()
    if written is not None:
        written += tx.written
    return tx.decisions


def _statements(tx: Tx, batch: list[Received], max_deliver: int, marks: list[int] | None,
                optimistic: bool) -> None:
    conn = tx.conn
    inbox = _BatchInbox.claim(conn, batch, tx.now) if optimistic else None
    tx.prefetch({(r.item.event.project, r.item.event.branch, r.item.event.subject)
                 for r in batch if r.rejection is None and r.item is not None
                 and r.item.event.type == "asset_registered"})
    for rec in batch:
        if rec.rejection is None and rec.item is not None:
            if inbox is not None:
                _apply_optimistic(tx, rec, inbox)
            else:
                _apply_one(tx, rec, max_deliver)
        elif rec.rejection is not None:
            rec.reject(rec.rejection)
        if rec.outcome == "rejected":
            _queue_rejection(tx, rec)
    tx.flush()
    repo.outcomes_add(conn, rows=rows(batch, now=tx.now))
    if marks:
        repo.outbox_mark_published(conn, seqs=marks, now=tx.now)


class _BatchInbox:
    """The inbox of a batch applied without savepoints, in one statement (:meth:`claim`).

    Every id of the batch inserted at the start, in one ``INSERT … ON CONFLICT DO NOTHING
    RETURNING``; an id that does not come back was applied before, or (PostgreSQL) by a
    concurrent replica: the insert waits for that replica's transaction to end, as a
    per-event insert would; SQLite's ``BEGIN IMMEDIATE`` lets no other writer in at all.
    The ids go in sorted, so that two replicas claiming overlapping ids take their locks in
    the same order. Any failure rolls the batch back and applies it again event by event,
    with the per-event insert inside each event's savepoint (a refused event must not keep
    its id).
    """

    def __init__(self, seen: set[tuple[str, str]]) -> None:
        self.seen = seen

    @classmethod
    def claim(cls, conn: Connection, batch: list[Received], now: datetime) -> _BatchInbox:
        first: dict[tuple[str, str], str] = {}
        for rec in batch:
            if rec.rejection is None and rec.item is not None:
                ev = rec.item.event
                first.setdefault((ev.project, ev.id), ev.type)
        rows = [{"project": p, "event_id": i, "type": t, "applied_at": now}
                for (p, i), t in sorted(first.items())]
        new = repo.inbox_claim(conn, rows=rows)
        return cls(set(first) - new)

    def applied(self, ev: Any) -> None:
        """``ev`` applied: a later copy of its id in the batch is a duplicate."""
        self.seen.add((ev.project, ev.id))


def _apply_optimistic(tx: Tx, rec: Received, inbox: _BatchInbox) -> None:
    """One event without a savepoint: any failure ends the attempt (see ``_attempt``)."""
    assert rec.item is not None
    ev = rec.item.event
    if (ev.project, ev.id) in inbox.seen:  # applied before, or earlier in this batch
        rec.outcome = "duplicate"
        return
    if ev.type != "asset_registered":
        tx.write_instances()  # other handlers read instances (and edges) of the batch
    _handle(tx, rec)
    _kept(tx, rec)
    inbox.applied(ev)


def _apply_one(tx: Tx, rec: Received, max_deliver: int) -> None:
    """One event in a savepoint of its own, its id recorded in it: a refused event's
    change and id are undone alone."""
    assert rec.item is not None
    ev = rec.item.event
    snap = tx.snapshot()
    savepoint = _Savepoint(tx.conn)
    try:
        new = repo.inbox_add(tx.conn, project=ev.project, event_id=ev.id, type_=ev.type,
                             now=tx.now)
        if new:
            _handle(tx, rec)
        savepoint.release()
        if new:
            _kept(tx, rec)
        else:
            rec.outcome = "duplicate"
    except RejectedError as exc:
        savepoint.rollback()
        tx.restore(snap)
        rec.reject(exc)
    except Exception as exc:  # a bug, a poison message, a constraint: retry, then dead-letter
        if isinstance(exc, SQLAlchemyError):
            try:
                savepoint.rollback()
            except SQLAlchemyError:
                raise exc from None  # the transaction itself is gone: retry the whole batch
        else:
            savepoint.rollback()
        tx.restore(snap)
        rec.error = f"{type(exc).__name__}: {exc}"[:500]
        if rec.delivered >= max_deliver:
            rec.reject(give_up(rec.delivered, rec.error))


def _handle(tx: Tx, rec: Received) -> None:
    """Run the event's handler and build its outcome."""
    assert rec.item is not None
    handler = HANDLERS[rec.item.event.type]  # decode() refused every type without a handler
    tx.trace = rec.item.event.trace()  # carried to every outbound event this one causes
    rec.result = applied(tx, rec.item, handler(tx, rec.item))


def _kept(tx: Tx, rec: Received) -> None:
    """The event applied: its outbound events and counters go in with the batch."""
    tx.keep()
    rec.outcome = "applied"


def give_up(attempts: int, error: str) -> RejectedError:
    """The rejection of a message that failed ``attempts`` times."""
    return RejectedError(f"failed {attempts} times; last error: {error}")


def rejection_row(rec: Received, *, prefix: str, now: datetime) -> dict[str, Any]:
    """The ``event_rejected`` outbound row for a rejected message (deterministic id)."""
    tok = rec.tokens
    return outbound(prefix=prefix, project=tok.project, branch=tok.branch or wire.UNKNOWN,
                    asset=tok.asset,
                    type_=EventRejected.TYPE, cause=tok.event_id, key=f"rejected:{rec.seq}",
                    now=now, data=EventRejected(event_id=tok.event_id,
                                                inbound_subject=tok.subject,
                                                reason=rec.error or "rejected",
                                                errors=rec.errors))


class _Savepoint:
    """A plain SQL savepoint: one event's changes, undone alone if the event is refused.

    Issued directly on the driver: SQLAlchemy's ``begin_nested`` bookkeeping cost a
    third of the per-event time on the hot path (see docs/benchmarks.md).
    """

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        driver.execute(conn, "SAVEPOINT assetd_event")

    def release(self) -> None:
        driver.execute(self.conn, "RELEASE SAVEPOINT assetd_event")

    def rollback(self) -> None:
        driver.execute(self.conn, "ROLLBACK TO SAVEPOINT assetd_event")
        driver.execute(self.conn, "RELEASE SAVEPOINT assetd_event")


def _queue_rejection(tx: Tx, rec: Received) -> None:
    tx.outbox.append(rejection_row(rec, prefix=tx.prefix, now=tx.now))
    tx.keep()
