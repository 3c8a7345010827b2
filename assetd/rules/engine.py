"""The decision procedure of CONTRACT §6 as pure functions: no I/O, no clock, no database."""

from __future__ import annotations

from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any, Literal

from assetd.schemas.rules import Drift, Gate, Rule, RulesFile

TOLERANCE = 1e-9
MATCH_CACHE_SIZE = 4096
"""Most (asset, branch) pairs whose first matching rule is remembered per rules file."""
_UNKNOWN = object()
Outcome = Literal["gates_passed", "gates_failed", "waiting", "promoted", "rejected"]


@dataclass(frozen=True)
class Candidate:
    """What the engine may know about an instance."""

    asset: str
    branch: str
    version: int
    annotations: dict[str, Any]
    state: str = "ready"
    validity: str = "valid"

    @property
    def name(self) -> str:
        """``vN``."""
        return f"v{self.version}"


@dataclass(frozen=True)
class GateCheck:
    """One gate's comparison (the ``results`` of ``quality_gate_*``)."""

    metric: str
    op: Literal["min", "max"]
    threshold: float
    value: Any
    passed: bool
    reason: str | None = None


@dataclass(frozen=True)
class Decision:
    """One outcome of an evaluation, with the values it compared."""

    outcome: Outcome
    alias: str | None = None
    reason: str | None = None
    champion: Candidate | None = None
    metric: str | None = None
    candidate_value: float | None = None
    champion_value: float | None = None
    improvement: float | None = None
    gates: tuple[GateCheck, ...] = ()
    missing_checks: tuple[str, ...] = ()
    manual: bool = False
    forced: bool = False
    details: dict[str, Any] = field(default_factory=dict)


def match_rule(rules: RulesFile, asset: str, branch: str) -> tuple[int, Rule] | None:
    """The first rule whose ``asset`` and ``branches`` globs match, with its index.

    Remembered per rules file and (asset, branch), so an event does not scan every rule.
    """
    cache = rules._matches
    key = (asset, branch)
    found = cache.get(key, _UNKNOWN)
    if found is not _UNKNOWN:
        return found  # type: ignore[return-value]
    found = _first_match(rules, asset, branch)
    if len(cache) >= MATCH_CACHE_SIZE:
        cache.clear()  # many distinct pairs: start over rather than grow without bound
    cache[key] = found
    return found


def _first_match(rules: RulesFile, asset: str, branch: str) -> tuple[int, Rule] | None:
    for i, rule in enumerate(rules.rules):
        if fnmatchcase(asset, rule.asset) and (
            rule.branches is None or any(fnmatchcase(branch, b) for b in rule.branches)
        ):
            return i, rule
    return None


def numeric(value: Any) -> float | None:
    """The value as a float if it is a number (bools are not numbers here)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def check_gates(gates: list[Gate], annotations: dict[str, Any]) -> tuple[GateCheck, ...]:
    """Each gate bound against the annotation; missing or non-numeric values fail."""
    results: list[GateCheck] = []
    for gate in gates:
        raw = annotations.get(gate.metric)
        value = numeric(raw)
        for op, threshold in (("min", gate.min), ("max", gate.max)):
            if threshold is None:
                continue
            if value is None:
                why = "missing" if gate.metric not in annotations else f"not numeric: {raw!r}"
                results.append(GateCheck(gate.metric, op, threshold, raw, False, why))  # type: ignore[arg-type]
                continue
            ok = value >= threshold if op == "min" else value <= threshold
            reason = None if ok else f"{value} {'<' if op == 'min' else '>'} {threshold}"
            results.append(GateCheck(gate.metric, op, threshold, raw, ok, reason))  # type: ignore[arg-type]
    return tuple(results)


def evaluate(candidate: Candidate, champion: Candidate | None, checks: dict[str, bool],
             rule: Rule | None, *, alias: str | None = None, include_gates: bool = True,
             manual: bool = False, force: bool = False) -> list[Decision]:
    """Decide about one candidate (CONTRACT §6).

    ``checks`` maps check names to the latest ``passed`` for this candidate. ``manual``
    is a ``promotion_requested``: gates and required checks apply unless ``force``, and
    the metric comparison is skipped (the request is the decision).
    """
    promote = rule.promote if rule else None
    alias = alias or (promote.alias if promote else "champion")
    if candidate.state != "ready" or candidate.validity != "valid":
        why = f"{candidate.name} is {candidate.state}/{candidate.validity}"
        return [Decision("rejected", alias, "invalid_instance", champion, manual=manual,
                         details={"why": why})]
    out: list[Decision] = []
    if rule and rule.gates and not force:
        results = check_gates(rule.gates, candidate.annotations)
        passed = all(r.passed for r in results)
        if include_gates:
            out.append(Decision("gates_passed" if passed else "gates_failed", gates=results))
        if not passed:
            if promote or manual:
                out.append(Decision("rejected", alias, "gates_failed", champion, gates=results,
                                    manual=manual))
            return out
    if not promote and not manual:
        return out
    if rule and rule.require_checks and not force:
        failed = [c for c in rule.require_checks if checks.get(c) is False]
        missing = tuple(c for c in rule.require_checks if c not in checks)
        if failed:
            return [*out, Decision("rejected", alias, "check_failed", champion, manual=manual,
                                   details={"failed_checks": failed})]
        if missing and manual:
            return [*out, Decision("rejected", alias, "check_failed", champion, manual=True,
                                   missing_checks=missing,
                                   details={"not_reported": list(missing)})]
        if missing:
            return [*out, Decision("waiting", alias, "waiting_for_checks", champion,
                                   missing_checks=missing)]
    if manual:
        return [*out, Decision("promoted", alias, "manual", champion, manual=True,
                               forced=force)]
    assert promote is not None
    return [*out, _compare(candidate, champion, promote.metric, promote.direction,
                           promote.min_improvement, alias)]


def _compare(candidate: Candidate, champion: Candidate | None, metric: str, direction: str,
             min_improvement: float, alias: str) -> Decision:
    value = numeric(candidate.annotations.get(metric))
    if value is None:
        return Decision("rejected", alias, "missing_metric", champion, metric=metric)
    if champion is None:
        return Decision("promoted", alias, "no_champion", None, metric=metric,
                        candidate_value=value)
    held = numeric(champion.annotations.get(metric))
    if held is None:
        return Decision("promoted", alias, "champion_missing_metric", champion, metric=metric,
                        candidate_value=value)
    improvement = value - held if direction == "maximize" else held - value
    common = {"metric": metric, "candidate_value": value, "champion_value": held,
              "improvement": improvement}
    if improvement >= min_improvement - TOLERANCE:
        return Decision("promoted", alias, "improved", champion, **common)  # type: ignore[arg-type]
    return Decision("rejected", alias, "insufficient_improvement", champion,
                    details={"min_improvement": min_improvement}, **common)  # type: ignore[arg-type]


def drift_exceeded(drift: Drift, score: float) -> bool:
    """``score > max`` (strictly) signals drift."""
    return score > drift.max


def is_stale(age_seconds: float, max_age_seconds: float) -> bool:
    """No new ready instance for longer than ``max_age``."""
    return age_seconds > max_age_seconds
