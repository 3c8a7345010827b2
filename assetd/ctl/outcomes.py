"""One line that says what became of a published event, from its outcome (CONTRACT §7)."""

from __future__ import annotations

from typing import Any

from assetd.client.outcome import emitted


def decision(outcome: dict[str, Any]) -> str:
    """``; promoted to champion (was v1; f1_score 0.91 vs 0.86)`` and the like, or ``""``."""
    parts: list[str] = []
    for ev in emitted(outcome, "asset_promoted"):
        parts.append(f"promoted to {ev['alias']} ({promoted_over(ev)})")
    for ev in emitted(outcome, "promotion_rejected"):
        parts.append(f"promotion to {ev['alias']} rejected: {ev['reason']}{_why(ev)}")
    if outcome.get("decision") == "waiting":
        parts.append(f"waiting for {', '.join(outcome.get('waiting_for') or ['checks'])}")
    for ev in emitted(outcome, "quality_gate_failed"):
        failed = [r["reason"] for r in ev.get("results", []) if not r.get("passed")]
        if failed:
            parts.append(f"gates failed: {'; '.join(failed)}")
    for ev in emitted(outcome, "alias_rolled_back"):
        parts.append(f"{ev['alias']} moved {ev['from']} -> {ev['to'] or 'nobody'}")
    for ev in emitted(outcome, "retrain_required"):
        parts.append(f"retrain_required for {ev['asset']}@{ev['branch']} ({ev['reason']})")
    return "".join(f"; {p}" for p in parts)


def promoted_over(ev: dict[str, Any]) -> str:
    """``was v1; f1_score 0.91 vs 0.86``: whom an ``asset_promoted`` replaced, and why."""
    was = f"was {ev.get('previous') or 'nobody'}"
    if ev.get("metric") is None or ev.get("candidate_value") is None:
        return was
    champ = ev.get("champion_value")
    vs = f" vs {champ}" if champ is not None else ""
    return f"{was}; {ev['metric']} {ev['candidate_value']}{vs}"


def _why(ev: dict[str, Any]) -> str:
    shown = [f"{k}={ev[k]}" for k in ("champion", "metric", "candidate_value",
                                      "champion_value", "improvement", "min_improvement",
                                      "why")
             if ev.get(k) is not None]
    for key in ("failed_checks", "not_reported"):
        if ev.get(key):
            shown.append(f"{key}={', '.join(ev[key])}")
    return f" ({', '.join(shown)})" if shown else ""
