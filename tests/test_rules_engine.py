"""The pure engine: every branch of CONTRACT §6, float edges, globs, first match wins."""

from __future__ import annotations

import pytest

from assetd.rules.engine import Candidate, check_gates, drift_exceeded, evaluate, match_rule
from assetd.schemas.rules import Drift, Gate, Promote, Rule, RulesFile


def cand(version: int = 2, **ann: object) -> Candidate:
    return Candidate("fraud_model", "main", version, dict(ann))


def rule(**kw: object) -> Rule:
    return Rule.model_validate({"asset": "fraud_model", **kw})


PROMOTE = {"metric": "f1", "min_improvement": 0.02}


def outcomes(decisions: list) -> list[tuple[str, str | None]]:
    return [(d.outcome, d.reason) for d in decisions]


@pytest.mark.parametrize(("champ", "new", "mi", "expected"), [
    (0.83, 0.85, 0.02, "promoted"),    # 0.85 - 0.83 = 0.0199999… in floats
    (0.28, 0.30, 0.02, "promoted"),    # 0.30 - 0.28 = 0.01999999…
    (0.83, 0.8499, 0.02, "rejected"),
    (0.80, 0.80, 0.0, "promoted"),     # equal with no minimum: promote
    (0.80, 0.79, 0.0, "rejected"),
])
def test_float_edges_with_tolerance(champ: float, new: float, mi: float, expected: str) -> None:
    """improvement ≥ min_improvement - 1e-9 promotes; just below does not."""
    r = rule(promote={"metric": "f1", "min_improvement": mi})
    (d,) = evaluate(cand(f1=new), cand(1, f1=champ), {}, r)
    assert d.outcome == expected
    if expected == "rejected":
        assert d.reason == "insufficient_improvement"
        assert (d.candidate_value, d.champion_value) == (new, champ)


def test_minimize_direction() -> None:
    """With ``minimize`` a lower value is the improvement."""
    r = rule(promote={"metric": "loss", "direction": "minimize", "min_improvement": 0.1})
    (better,) = evaluate(cand(loss=0.5), cand(1, loss=0.6), {}, r)
    (worse,) = evaluate(cand(loss=0.55), cand(1, loss=0.6), {}, r)
    assert better.outcome == "promoted" and better.improvement == pytest.approx(0.1)
    assert worse.outcome == "rejected" and worse.improvement == pytest.approx(0.05)


def test_no_champion_promotes() -> None:
    """No current alias holder: the candidate is promoted."""
    (d,) = evaluate(cand(f1=0.1), None, {}, rule(promote=PROMOTE))
    assert (d.outcome, d.reason, d.alias) == ("promoted", "no_champion", "champion")


def test_champion_lacking_metric_loses() -> None:
    """A champion without the metric loses to any candidate that has it."""
    (d,) = evaluate(cand(f1=0.1), cand(1), {}, rule(promote=PROMOTE))
    assert (d.outcome, d.reason) == ("promoted", "champion_missing_metric")


@pytest.mark.parametrize("ann", [{}, {"f1": "high"}, {"f1": True}, {"f1": None}])
def test_candidate_lacking_metric_is_rejected(ann: dict[str, object]) -> None:
    """Missing or non-numeric (bools included) promote metric → missing_metric, champion or not."""
    for champion in (None, cand(1, f1=0.5)):
        (d,) = evaluate(cand(**ann), champion, {}, rule(promote=PROMOTE))
        assert (d.outcome, d.reason) == ("rejected", "missing_metric")


def test_gates_inclusive_and_failures() -> None:
    """min and max are inclusive; missing and non-numeric values fail with a reason."""
    gates = [Gate(metric="f1", min=0.8), Gate(metric="lat", max=50)]
    ok = check_gates(gates, {"f1": 0.8, "lat": 50})
    assert all(g.passed for g in ok)
    bad = check_gates(gates, {"f1": 0.79, "lat": "fast"})
    assert [(g.passed, g.reason) for g in bad] == [(False, "0.79 < 0.8"),
                                                   (False, "not numeric: 'fast'")]
    (missing,) = check_gates([Gate(metric="x", min=1, max=2)][:1], {})[:1]
    assert missing.reason == "missing"


def test_gate_failure_rejects_before_promotion() -> None:
    """Gates fail → quality_gate_failed and promotion_rejected(gates_failed)."""
    r = rule(gates=[{"metric": "f1", "min": 0.9}], promote=PROMOTE)
    assert outcomes(evaluate(cand(f1=0.85), None, {}, r)) == [
        ("gates_failed", None), ("rejected", "gates_failed")]
    assert outcomes(evaluate(cand(f1=0.95), None, {}, r)) == [
        ("gates_passed", None), ("promoted", "no_champion")]


def test_gates_without_promote_publish_only_gate_outcome() -> None:
    """A rule with gates and no promote yields only the gate outcome."""
    r = rule(gates=[{"metric": "rows", "min": 1}])
    assert outcomes(evaluate(cand(rows=0), None, {}, r)) == [("gates_failed", None)]
    assert outcomes(evaluate(cand(rows=5), None, {}, r)) == [("gates_passed", None)]


def test_required_checks_wait_pass_and_fail() -> None:
    """A missing check makes the candidate wait; failed → check_failed; passed → compare."""
    r = rule(require_checks=["holdout", "bias"], promote=PROMOTE)
    (w,) = evaluate(cand(f1=0.9), None, {"holdout": True}, r)
    assert (w.outcome, w.missing_checks) == ("waiting", ("bias",))
    (f,) = evaluate(cand(f1=0.9), None, {"holdout": True, "bias": False}, r)
    assert (f.outcome, f.reason) == ("rejected", "check_failed")
    (p,) = evaluate(cand(f1=0.9), None, {"holdout": True, "bias": True}, r)
    assert p.outcome == "promoted"


def test_resume_skips_gate_events() -> None:
    """Resuming a waiting candidate does not publish its gate outcome again."""
    r = rule(gates=[{"metric": "f1", "min": 0.5}], require_checks=["h"], promote=PROMOTE)
    assert outcomes(evaluate(cand(f1=0.9), None, {}, r)) == [
        ("gates_passed", None), ("waiting", "waiting_for_checks")]
    assert outcomes(evaluate(cand(f1=0.9), None, {"h": True}, r, include_gates=False)) == [
        ("promoted", "no_champion")]


def test_manual_promotion_respects_gates_unless_forced() -> None:
    """Manual: gates and checks apply; ``force`` skips them and is recorded."""
    r = rule(gates=[{"metric": "f1", "min": 0.9}], require_checks=["h"], promote=PROMOTE)
    assert outcomes(evaluate(cand(f1=0.5), None, {}, r, manual=True))[-1] == (
        "rejected", "gates_failed")
    assert outcomes(evaluate(cand(f1=0.95), None, {}, r, manual=True))[-1] == (
        "rejected", "check_failed")
    (forced,) = evaluate(cand(f1=0.5), cand(1, f1=0.99), {}, r, manual=True, force=True)
    assert (forced.outcome, forced.manual, forced.forced) == ("promoted", True, True)
    (plain,) = evaluate(cand(f1=0.1), cand(1, f1=0.99), {}, None, manual=True, alias="prod")
    assert (plain.outcome, plain.alias) == ("promoted", "prod")


@pytest.mark.parametrize(("state", "validity"), [("pending", "valid"), ("ready", "invalidated"),
                                                 ("ready", "deprecated")])
def test_invalid_candidate_is_rejected(state: str, validity: str) -> None:
    """Only ready, valid instances can be promoted."""
    c = Candidate("fraud_model", "main", 3, {"f1": 1.0}, state, validity)
    (d,) = evaluate(c, None, {}, rule(promote=PROMOTE), manual=True, force=True)
    assert (d.outcome, d.reason) == ("rejected", "invalid_instance")


def test_first_matching_rule_wins_with_globs() -> None:
    """Globs on asset and branches; the first rule that matches applies."""
    rules = RulesFile.model_validate({"version": 1, "rules": [
        {"asset": "fraud_*", "branches": ["main", "release/*"], "gates": [{"metric": "a",
                                                                          "min": 1}]},
        {"asset": "fraud_model", "promote": PROMOTE},
        {"asset": "*", "drift": {"metric": "ks", "max": 0.1}},
    ]})
    assert match_rule(rules, "fraud_model", "main")[0] == 0  # type: ignore[index]
    assert match_rule(rules, "fraud_model", "release/2")[0] == 0  # type: ignore[index]
    assert match_rule(rules, "fraud_model", "user.alice")[0] == 1  # type: ignore[index]
    assert match_rule(rules, "churn", "main")[0] == 2  # type: ignore[index]
    assert match_rule(RulesFile(version=1, rules=[]), "x", "main") is None


def test_drift_threshold_is_strict() -> None:
    """``score > max`` signals; equal does not."""
    d = Drift(metric="ks", max=0.1)
    assert drift_exceeded(d, 0.1000001) and not drift_exceeded(d, 0.1)


def test_promote_defaults() -> None:
    """alias defaults to champion, direction to maximize, min_improvement to 0."""
    p = Promote(metric="f1")
    assert (p.alias, p.direction, p.min_improvement) == ("champion", "maximize", 0.0)
