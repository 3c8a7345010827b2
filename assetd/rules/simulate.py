"""Replay an asset's recorded history through the engine with a rules file. Pure."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from assetd.rules.engine import Candidate, evaluate, match_rule
from assetd.schemas.rules import RulesFile


@dataclass(frozen=True)
class Step:
    """One instance of the replay: what the rules decide and who would hold the alias."""

    instance: str
    value: Any
    decision: str
    simulated: str | None
    actual: str | None

    @property
    def same(self) -> bool:
        """Whether the simulated holder equals the recorded one."""
        return self.simulated == self.actual

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {**asdict(self), "same": self.same}


def simulate(rules: RulesFile, asset: str, branch: str, timeline: dict[str, Any],
             alias: str | None = None) -> tuple[str, list[Step]]:
    """Replay instances in version order; compare with the recorded alias history.

    Each instance is judged as registered (ready and valid, with every check recorded for
    it); the recorded holder "after" an instance is the one at the next instance's
    creation time (the current one for the last instance).
    """
    found = match_rule(rules, asset, branch)
    rule = found[1] if found else None
    alias = alias or (rule.promote.alias if rule and rule.promote else "champion")
    history = [h for h in timeline["aliases"] if h["alias"] == alias]
    instances = timeline["instances"]
    holder: Candidate | None = None
    steps: list[Step] = []
    for i, inst in enumerate(instances):
        cand = Candidate(asset, branch, inst["version"], inst["annotations"])
        metric = rule.promote.metric if rule and rule.promote else None
        value = inst["annotations"].get(metric) if metric else None
        decision = "no rule"
        if inst["state"] != "ready":
            decision = f"skipped ({inst['state']})"
        elif rule is not None and (rule.promote or rule.gates):
            out = evaluate(cand, holder, inst["checks"], rule, alias=alias)
            last = out[-1] if out else None
            decision = "-" if last is None else \
                last.outcome + (f" ({last.reason})" if last.reason else "")
            if last is not None and last.outcome == "promoted":
                holder = cand
        until = instances[i + 1]["created_at"] if i + 1 < len(instances) else None
        steps.append(Step(inst["instance"], value, decision,
                          holder.name if holder else None, _held_at(history, until)))
    return alias, steps


def _held_at(history: list[dict[str, Any]], at: str | None) -> str | None:
    """The holder just before time ``at``, or the current holder if ``at`` is None."""
    when = _ts(at) if at else None
    for h in reversed(history):
        if when is None:
            return str(h["instance"]) if h["held_to"] is None else None
        # strictly before: a promotion commits with its instance, at its created_at
        if _ts(h["held_from"]) < when and (h["held_to"] is None or _ts(h["held_to"]) >= when):
            return str(h["instance"])
    return None


def _ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))
