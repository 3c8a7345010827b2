"""``quality_reported`` and ``drift_reported``: record, then let the rules decide."""

from __future__ import annotations

from typing import Any

from assetd.handlers.decode import Inbound
from assetd.handlers.rules_step import (
    drift_step,
    event_instance,
    matched,
    resume_if_waiting,
    waiting,
)
from assetd.handlers.tx import Tx
from assetd.registry import aliases
from assetd.schemas.inbound import DriftReported, QualityReported


def on_quality(tx: Tx, item: Inbound) -> dict[str, Any]:
    """Store the check result; a candidate waiting for checks is decided now."""
    ev, data = item.event, item.data
    assert isinstance(data, QualityReported)
    inst = event_instance(tx, ev, data.instance)
    aliases.add_check(tx.conn, values={
        "project": ev.project, "instance_id": inst.id, "check": data.check,
        "passed": data.passed, "severity": data.severity, "metrics": data.metrics,
        "details": data.details, "event_id": ev.id, "created_at": tx.now})
    result: dict[str, Any] = {"instance": inst.name, "check": data.check,
                              "passed": data.passed}
    if inst.state == "ready" and inst.validity == "valid":
        result.update(waiting(resume_if_waiting(tx, inst, cause=ev.id)))
    return result


def on_drift(tx: Tx, item: Inbound) -> dict[str, Any]:
    """Evaluate a drift report against the asset's rule (``score > max`` → retrain)."""
    ev, data = item.event, item.data
    assert isinstance(data, DriftReported)
    inst = event_instance(tx, ev, data.instance)
    result: dict[str, Any] = {"instance": inst.name, "metric": data.metric,
                              "score": data.score}
    found = matched(tx, inst)
    if found is None or found[1].drift is None or found[1].drift.metric != data.metric:
        return result  # no rule watches this metric: nothing to decide
    drift_step(tx, inst, found[0], found[1], data.score, cause=ev.id)
    return result
