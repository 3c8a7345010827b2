"""What became of each inbound event, for the ``event`` query (CONTRACT §7).

An applied event's outcome is built inside its savepoint from what its handler returned (the
instance, the consumer, the new state …), the rule decisions it logged and the outbound events
it queued; a rejected event's is its reason and errors. The batch writes every outcome in one
statement beside the outbox, so the query reads one row by primary key.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from assetd.handlers.decode import Inbound
from assetd.handlers.tx import Tx
from assetd.schemas import wire

if TYPE_CHECKING:
    from assetd.handlers.batch import Received

FINAL = ("promoted", "rejected", "waiting", "refused")
# Outbound fields left out of an outcome: they repeat the registration (or the gate event).
_BULKY = frozenset({"annotations", "tags", "reference", "inputs", "producer", "gates"})


def applied(tx: Tx, item: Inbound, result: dict[str, Any] | None) -> dict[str, Any]:
    """The outcome of the event being applied (call before ``tx.keep()``): ``result`` of its
    handler, its rule decisions (``decision``: the last promoted/rejected/waiting) and a
    summary of each outbound event it queued."""
    ev = item.event
    out: dict[str, Any] = {"asset": ev.subject, "branch": ev.branch, **(result or {})}
    decisions = list(tx.decided)
    final = [d for d in decisions if d in FINAL]
    if final:
        out["decision"] = final[-1]
    out["decisions"] = decisions
    out["events"] = [_summary(*emitted) for emitted in tx.emitted]
    return out


def _summary(type_: str, asset: str, branch: str, data: dict[str, Any]) -> dict[str, Any]:
    return {**{k: v for k, v in data.items() if k not in _BULKY},
            "type": type_, "asset": asset, "branch": branch}


def rows(batch: list[Received], *, now: datetime) -> list[dict[str, Any]]:
    """One ``event_outcome`` row per applied or rejected id of the batch, sorted by key.

    Per (project, id) the applied event wins (the inbox lets at most one through), else the
    last rejection; a rejection whose project or id could not be read has no row."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for rec in batch:
        if rec.outcome == "applied" and rec.item is not None:
            ev = rec.item.event
            found[(ev.project, ev.id)] = _row(ev.project, ev.id, ev.type, "applied",
                                              rec.result or {}, rec.seq, now)
        elif rec.outcome == "rejected" and (row := _rejected(rec, now)) is not None:
            key = (row["project"], row["event_id"])
            if key not in found or found[key]["status"] == "rejected":
                found[key] = row
    return [found[k] for k in sorted(found)]


def _rejected(rec: Received, now: datetime) -> dict[str, Any] | None:
    tok = rec.tokens
    project, eid, type_ = tok.project, tok.event_id, tok.type
    asset, branch = tok.asset, tok.branch
    if rec.item is not None:
        ev = rec.item.event
        project, eid, type_, asset, branch = ev.project, ev.id, ev.type, ev.subject, ev.branch
    if project == wire.UNKNOWN or eid is None:
        return None
    outcome: dict[str, Any] = {"reason": rec.error or "rejected", "errors": rec.errors}
    if asset != wire.UNKNOWN:
        outcome["asset"] = asset
    if branch:
        outcome["branch"] = branch
    return _row(project, eid, None if type_ == wire.UNKNOWN else type_, "rejected", outcome,
                rec.seq, now)


def _row(project: str, event_id: str, type_: str | None, status: str,
         outcome: dict[str, Any], seq: int, now: datetime) -> dict[str, Any]:
    return {"project": project, "event_id": event_id, "type": type_, "status": status,
            "outcome": outcome, "seq": seq, "recorded_at": now}
