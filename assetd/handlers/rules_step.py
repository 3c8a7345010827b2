"""The rules step: run the pure engine on registry state, then record and publish its result.

Everything here happens inside the event's savepoint: the decision rows, the alias move
(compare-and-set) and the outbound events commit together or not at all.
"""

from __future__ import annotations

from typing import Any

from assetd.errors import QueryError, RejectedError
from assetd.handlers.tx import InstanceRef, Tx
from assetd.registry import aliases, repo
from assetd.rules.engine import Candidate, Decision, drift_exceeded, evaluate, match_rule, numeric
from assetd.schemas.envelope import CloudEvent
from assetd.schemas.outbound import (
    AliasRolledBack,
    AssetPromoted,
    GateResult,
    PromotionRejected,
    QualityGateFailed,
    QualityGateOutcome,
    QualityGatePassed,
    RetrainRequired,
)
from assetd.schemas.rules import Rule

FINAL = ("waiting", "promoted", "rejected")
GATE_EVENT: dict[str, type[QualityGateOutcome]] = {"gates_passed": QualityGatePassed,
                                                   "gates_failed": QualityGateFailed}


def candidate(inst: InstanceRef) -> Candidate:
    """The engine's view of an instance."""
    return Candidate(inst.asset, inst.branch, inst.version, inst.annotations, inst.state,
                     inst.validity)


def matched(tx: Tx, inst: InstanceRef) -> tuple[str, Rule] | None:
    """The first matching rule and its name (``rules[i]``), or None."""
    if tx.rules is None:
        return None
    found = match_rule(tx.rules.rules, inst.asset, inst.branch)
    return None if found is None else (f"rules[{found[0]}]", found[1])


def after_ready(tx: Tx, inst: InstanceRef, *, cause: str) -> list[Decision]:
    """A new ready instance: drift carried as an annotation, then gates and promotion."""
    found = matched(tx, inst)
    if found is None:
        return []
    tx.write_instances()  # what follows reads and refers to the instance
    name, rule = found
    if rule.drift and (score := numeric(inst.annotations.get(rule.drift.metric))) is not None:
        drift_step(tx, inst, name, rule, score, cause=cause)
    if rule.gates or rule.promote:
        return decide(tx, inst, name, rule, cause=cause)
    return []


def waiting(decisions: list[Decision]) -> dict[str, Any]:
    """``{"waiting_for": [check, …]}`` when the candidate now waits for checks, else ``{}``."""
    for d in decisions:
        if d.outcome == "waiting":
            return {"waiting_for": list(d.missing_checks)}
    return {}


def decide(tx: Tx, inst: InstanceRef, name: str | None, rule: Rule | None, *, cause: str,
           include_gates: bool = True, alias: str | None = None,
           manual: dict[str, Any] | None = None) -> list[Decision]:
    """Evaluate one candidate against the current alias holder; apply what was decided."""
    alias = alias or (rule.promote.alias if rule and rule.promote else "champion")
    tx.asset_kind(inst.project, inst.asset)  # row lock (PostgreSQL): one mover per asset
    held = aliases.holder(tx.conn, project=inst.project, branch=inst.branch, asset=inst.asset,
                          alias=alias)
    champion = InstanceRef.of(held) if held is not None else None
    checks = aliases.checks_for(tx.conn, instance_id=inst.id)
    decisions = evaluate(candidate(inst), candidate(champion) if champion else None, checks, rule,
                         alias=alias, include_gates=include_gates, manual=manual is not None,
                         force=bool(manual and manual.get("force")))
    for d in decisions:
        _apply(tx, inst, champion, d, name, cause, manual)
    return decisions


def _apply(tx: Tx, inst: InstanceRef, champion: InstanceRef | None, d: Decision,
           rule: str | None, cause: str, manual: dict[str, Any] | None) -> None:
    decision_id = _log(tx, inst, d.outcome, rule, cause, _inputs(d, champion, manual))
    where = {"project": inst.project, "branch": inst.branch, "asset": inst.asset}
    if d.outcome in ("gates_passed", "gates_failed"):
        tx.emit(**where, cause=cause, data=GATE_EVENT[d.outcome](
            instance=inst.name, results=[_gate(g) for g in d.gates]))
    elif d.outcome == "promoted":
        assert d.alias is not None
        if champion is None or champion.id != inst.id:  # a manual re-promotion moves nothing
            aliases.move(tx.conn, **where, alias=d.alias,
                         expected=champion.id if champion else None, new=inst, now=tx.now,
                         decision_id=decision_id, event_id=cause)
        tx.emit(**where, cause=cause, key=f"{cause}/{d.alias}",
                data=AssetPromoted(
                    instance=inst.name, alias=d.alias, previous=champion and champion.name,
                    metric=d.metric, candidate_value=d.candidate_value,
                    champion_value=d.champion_value, improvement=d.improvement, rule=rule,
                    manual=d.manual,
                    reason=(manual or {}).get("reason") or d.reason))
    elif d.outcome == "rejected":
        tx.emit(**where, cause=cause, key=f"{cause}/{d.alias}", data=PromotionRejected(
            instance=inst.name, alias=d.alias, champion=champion and champion.name,
            reason=d.reason, rule=rule, manual=d.manual, metric=d.metric,
            candidate_value=d.candidate_value, champion_value=d.champion_value,
            improvement=d.improvement, gates=[_gate(g) for g in d.gates], **d.details))


def _gate(g: Any) -> GateResult:
    return GateResult(metric=g.metric, op=g.op, threshold=g.threshold, value=g.value,
                      passed=g.passed, reason=g.reason)


def _inputs(d: Decision, champion: InstanceRef | None,
            manual: dict[str, Any] | None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "alias": d.alias, "reason": d.reason, "champion": champion and champion.name,
        "metric": d.metric, "candidate_value": d.candidate_value,
        "champion_value": d.champion_value, "improvement": d.improvement,
        "gates": [g.__dict__ for g in d.gates], "missing_checks": list(d.missing_checks),
        "manual": d.manual, "forced": d.forced, **d.details,
    }
    if manual:
        out["request"] = manual
    return {k: v for k, v in out.items() if v not in (None, [], {})}


def _log(tx: Tx, inst: InstanceRef, outcome: str, rule: str | None, cause: str,
         inputs: dict[str, Any]) -> int:
    tx.decided.append(outcome)
    if tx.rules is not None:
        inputs = {**inputs, "rules_sha256": tx.rules.sha256, "rules_path": tx.rules.path}
    return aliases.add_decision(tx.conn, values={
        "project": inst.project, "branch": inst.branch, "asset": inst.asset,
        "instance": inst.name, "outcome": outcome, "rule": rule, "inputs": inputs,
        "event_id": cause, "created_at": tx.now})


def drift_step(tx: Tx, inst: InstanceRef, name: str, rule: Rule, score: float, *,
               cause: str) -> None:
    """``score > max`` → one ``retrain_required`` per target, on that target's subject."""
    drift = rule.drift
    assert drift is not None
    exceeded = drift_exceeded(drift, score)
    # Named targets are signalled on the drifting instance's branch; targets found from
    # lineage on each branch where the target has an instance fed by this asset.
    targets = ([(t, inst.branch) for t in drift.retrain] if drift.retrain else
               aliases.models_fed_by(tx.conn, project=inst.project, asset=inst.asset))
    _log(tx, inst, "drift_exceeded" if exceeded else "drift_ok", name, cause,
         {"metric": drift.metric, "score": score, "threshold": drift.max,
          "targets": [t if b == inst.branch else f"{t}@{b}" for t, b in targets]
          if exceeded else []})
    if not exceeded:
        return
    reason = f"{drift.metric} {score} > {drift.max} on {inst.asset} {inst.name}"
    for target, branch in targets:
        tx.emit(project=inst.project, branch=branch, asset=target,
                cause=cause,
                data=RetrainRequired(trigger_asset=inst.asset, trigger_instance=inst.name,
                                     metric=drift.metric, score=score, threshold=drift.max,
                                     reason=reason))


def roll_back_aliases(tx: Tx, inst: InstanceRef, *, reason: str, cause: str) -> None:
    """An invalidated holder: each alias moves to the newest earlier valid holder, or clears."""
    tx.asset_kind(inst.project, inst.asset)  # row lock (PostgreSQL): one mover per asset
    for alias in aliases.aliases_held(tx.conn, instance_id=inst.id):
        back = aliases.previous_valid_holder(tx.conn, project=inst.project, branch=inst.branch,
                                             asset=inst.asset, alias=alias, current_id=inst.id)
        move_back(tx, inst, alias, InstanceRef.of(back) if back is not None else None,
                  reason=reason, cause=cause)


def move_back(tx: Tx, holder: InstanceRef, alias: str, target: InstanceRef | None, *,
              reason: str, cause: str, request: dict[str, Any] | None = None) -> None:
    """Move ``alias`` from ``holder`` back to ``target`` (or clear it): log, CAS, publish."""
    where = {"project": holder.project, "branch": holder.branch, "asset": holder.asset}
    inputs: dict[str, Any] = {"alias": alias, "to": target.name if target else None,
                              "reason": reason}
    if request:
        inputs["request"] = request
    decision_id = _log(tx, holder, "rolled_back", None, cause, inputs)
    aliases.move(tx.conn, **where, alias=alias, expected=holder.id, new=target, now=tx.now,
                 decision_id=decision_id, event_id=cause)
    tx.emit(**where, cause=cause, key=f"{cause}/{alias}",
            data=AliasRolledBack.model_validate(
                {"alias": alias, "from": holder.name, "to": target.name if target else None,
                 "reason": reason}))


def resume_if_waiting(tx: Tx, inst: InstanceRef, *, cause: str) -> list[Decision]:
    """A new check result: a candidate that was waiting for checks is decided now."""
    found = matched(tx, inst)
    if found is None or not found[1].promote:
        return []
    last = aliases.last_outcome(tx.conn, project=inst.project, branch=inst.branch,
                                asset=inst.asset, instance=inst.name, outcomes=FINAL)
    if last == "waiting":
        return decide(tx, inst, found[0], found[1], cause=cause, include_gates=False)
    return []


def refuse(tx: Tx, ev: CloudEvent, instance: str | None, reason: str,
           **inputs: Any) -> dict[str, Any]:
    """A well-formed request that policy refuses: recorded in the decision log as
    ``refused`` and answered by the ``event`` query; nothing changes, nothing is
    dead-lettered (the DLQ is for input that cannot be understood or applied)."""
    tx.decided.append("refused")
    aliases.add_decision(tx.conn, values={
        "project": ev.project, "branch": ev.branch, "asset": ev.subject, "instance": instance,
        "outcome": "refused", "rule": None, "event_id": ev.id, "created_at": tx.now,
        "inputs": {**inputs, "reason": reason, "request": {"type": ev.type,
                                                           "requested_by": ev.source}}})
    return {"instance": instance, "reason": reason, **inputs}


def event_instance(tx: Tx, ev: CloudEvent, selector: str, *,
                   allow_invalid: bool = False) -> InstanceRef:
    """The instance an event names (its project, branch and asset); RejectedError if none."""
    try:
        row = repo.resolve(tx.conn, project=ev.project, branch=ev.branch, asset=ev.subject,
                           selector=selector, allow_invalid=allow_invalid)
    except QueryError as exc:
        raise RejectedError(exc.message) from None
    return InstanceRef.of(row)
