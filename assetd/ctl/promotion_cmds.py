"""``assetctl history``, ``promote``, ``report-quality``, ``report-drift``."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from assetd.client.outcome import emitted
from assetd.ctl import outcomes, render
from assetd.ctl.common import (
    EventId,
    app,
    call,
    fail,
    is_json,
    parse_pairs,
    published,
    waits,
)


@app.command()
def history(
    ctx: typer.Context,
    asset: str,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 50,
) -> None:
    """The asset's decision log, newest first: every evaluation with its inputs."""
    rows: list[dict[str, Any]] = call(ctx, lambda c: c.request(
        "decisions", asset=asset, branch=c.branch, limit=limit))
    if is_json(ctx):
        render.emit_json(rows)
        return
    render.table(f"{asset} decisions", ["time", "instance", "outcome", "reason", "rule",
                                        "details"],
                 [[r["created_at"], r["instance"], r["outcome"], r["inputs"].get("reason"),
                   r["rule"], _details(r["inputs"])] for r in rows])


def _details(inputs: dict[str, Any]) -> str:
    keys = ("alias", "champion", "candidate_value", "champion_value", "improvement", "score",
            "threshold", "to", "forced")
    return ", ".join(f"{k}={inputs[k]}" for k in keys if inputs.get(k) not in (None, False))


@app.command()
def promote(
    ctx: typer.Context,
    asset: str,
    selector: Annotated[str, typer.Argument(help="vN, latest, latest-N, @alias")],
    reason: Annotated[str, typer.Option(help="why (recorded in the decision log)")],
    alias: Annotated[str, typer.Option(help="the alias to move")] = "champion",
    force: Annotated[bool, typer.Option(help="skip gates and required checks (recorded)")]
    = False,
    to_branch: Annotated[str | None, typer.Option(help="copy into this branch instead")]
    = None,
    event_id: EventId = None,
) -> None:
    """Request a promotion: exit 0 promoted (or copied), 1 rejected or refused, with why."""
    result = call(ctx, lambda c: c.request_promotion(
        asset, selector, reason=reason, alias=alias, force=force, to_branch=to_branch,
        event_id=event_id, wait=waits(ctx)))
    published(ctx, result, lambda r: _promoted(asset, selector, to_branch, r))


def _promoted(asset: str, selector: str, to_branch: str | None, r: dict[str, Any]) -> str:
    if to_branch:
        copy = r["copied_to"]
        return (f"{asset} {r['instance']} copied to {copy['branch']} as {copy['instance']}"
                f"{outcomes.decision(r)}")
    for ev in emitted(r, "asset_promoted"):
        return f"{asset} {r['instance']} is now {ev['alias']} ({outcomes.promoted_over(ev)})"
    return f"{asset} {r.get('instance', selector)}: {r.get('decision')}{outcomes.decision(r)}"


@app.command("report-quality")
def report_quality(
    ctx: typer.Context,
    asset: str,
    selector: Annotated[str, typer.Argument()] = "latest",
    check: Annotated[str, typer.Option(help="check name")] = "",
    passed: Annotated[bool, typer.Option("--passed/--failed", help="the result")] = True,
    severity: Annotated[str, typer.Option(help="error or warn")] = "error",
    metric: Annotated[list[str] | None, typer.Option(help="KEY=NUMBER")] = None,
    details: Annotated[str | None, typer.Option()] = None,
    event_id: EventId = None,
) -> None:
    """Report a quality check's result for an instance; prints what it decided."""
    if not check:
        fail("--check NAME is required", 2)
    if severity not in ("error", "warn"):
        fail("--severity must be error or warn", 2)
    metrics = parse_pairs(metric or [], typed=True)
    result = call(ctx, lambda c: c.report_quality(
        asset, check, passed, instance=selector, severity=severity, metrics=metrics,
        details=details, event_id=event_id, wait=waits(ctx)))
    published(ctx, result, lambda r: f"{asset} {r['instance']}: {check} "
              f"{'passed' if passed else 'failed'} recorded{outcomes.decision(r)}")


@app.command("report-drift")
def report_drift(
    ctx: typer.Context,
    asset: str,
    selector: Annotated[str, typer.Argument()] = "latest",
    metric: Annotated[str, typer.Option(help="drift metric name")] = "",
    score: Annotated[float | None, typer.Option(help="the measured score")] = None,
    feature: Annotated[list[str] | None, typer.Option(help="KEY=NUMBER per feature")] = None,
    event_id: EventId = None,
) -> None:
    """Report a drift measurement; over the rule's max it triggers retrain_required."""
    if not metric or score is None:
        fail("--metric NAME and --score NUMBER are required", 2)
    features = parse_pairs(feature or [], typed=True)
    result = call(ctx, lambda c: c.report_drift(
        asset, metric, score, instance=selector, features=features, event_id=event_id,
        wait=waits(ctx)))
    published(ctx, result, lambda r: f"{asset} {r['instance']}: {metric}={score} recorded"
              f"{outcomes.decision(r) or '; no retrain (under the threshold, or no rule)'}")
