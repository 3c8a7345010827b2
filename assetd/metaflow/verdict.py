"""The rules' verdict on a registered instance, read from its outcome (no polling).

A registration's outcome (CONTRACT §7 ``event``) carries the rule decision made in the same
transaction (``decision``), the checks a waiting candidate needs (``waiting_for``) and a
summary of every outbound event (``events``): the ``asset_promoted`` or
``promotion_rejected`` with the values compared, the gate results.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Decision = Literal["promoted", "rejected", "waiting", "none"]
_VALUES = ("metric", "candidate_value", "champion_value", "improvement", "min_improvement",
           "failed_checks", "not_reported", "why", "rule")


@dataclass(frozen=True)
class Verdict:
    """``promoted`` (to ``alias``, from ``previous``), ``rejected`` (``reason`` and the
    ``values`` compared), ``waiting`` (for the checks in ``waiting_for``) or ``none`` (no
    rule decided)."""

    decision: Decision
    asset: str
    instance: str
    alias: str | None = None
    previous: str | None = None
    reason: str | None = None
    values: dict[str, Any] = field(default_factory=dict)
    waiting_for: tuple[str, ...] = ()
    outcome: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def promoted(self) -> bool:
        """The instance now holds the alias."""
        return self.decision == "promoted"

    def __str__(self) -> str:
        name = f"{self.asset} {self.instance}"
        if self.decision == "promoted":
            before = f" (was {self.previous})" if self.previous else ""
            return f"{name} promoted to @{self.alias}{before}{_compared(self.values)}"
        if self.decision == "rejected":
            return f"{name} rejected: {self.reason}{_compared(self.values)}"
        if self.decision == "waiting":
            return f"{name} waiting for {', '.join(self.waiting_for)}"
        return f"{name}: no rule decided"


def verdict(outcome: dict[str, Any]) -> Verdict:
    """The verdict in a registration's (or a quality report's) outcome."""
    instance = str(outcome.get("instance", "?"))
    asset = str(outcome.get("asset", "?"))
    events = outcome.get("events") or []
    decision = outcome.get("decision")
    if decision == "promoted":
        ev = _first(events, "asset_promoted", instance)
        return Verdict("promoted", asset, instance, alias=ev.get("alias"),
                       previous=ev.get("previous"), values=_values(ev), outcome=outcome)
    if decision == "rejected":
        ev = _first(events, "promotion_rejected", instance)
        values = _values(ev)
        gates = _first(events, "quality_gate_failed", instance).get("results")
        if gates:
            values["gates"] = [g for g in gates if not g.get("passed")]
        return Verdict("rejected", asset, instance, alias=ev.get("alias"),
                       previous=ev.get("champion"), reason=ev.get("reason"), values=values,
                       outcome=outcome)
    if decision == "waiting":
        return Verdict("waiting", asset, instance,
                       waiting_for=tuple(outcome.get("waiting_for") or ()), outcome=outcome)
    return Verdict("none", asset, instance, outcome=outcome)


def _first(events: list[dict[str, Any]], type_: str, instance: str) -> dict[str, Any]:
    for ev in events:
        if ev.get("type") == type_ and ev.get("instance") in (instance, None):
            return ev
    return next((ev for ev in events if ev.get("type") == type_), {})


def _values(ev: dict[str, Any]) -> dict[str, Any]:
    return {k: ev[k] for k in _VALUES if ev.get(k) not in (None, [], "")}


def _compared(values: dict[str, Any]) -> str:
    metric = values.get("metric")
    if not metric or values.get("candidate_value") is None:
        return ""
    champion = values.get("champion_value")
    against = f" against {champion:g}" if isinstance(champion, int | float) else ""
    return f" ({metric} {values['candidate_value']:g}{against})"
