"""``assetctl rules check FILE`` and ``assetctl rules simulate FILE --asset A``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from assetd.ctl import render
from assetd.ctl.common import app, call, fail, is_json
from assetd.rules.loader import LoadedRules, RulesError, load_rules
from assetd.rules.simulate import simulate

rules_app = typer.Typer(help="Check and simulate promotion rules files.", no_args_is_help=True)
app.add_typer(rules_app, name="rules")


def _load(path: Path) -> LoadedRules:
    """Load FILE (within the loader's limits) or print its ``FILE:LINE`` errors and exit 1."""
    try:
        return load_rules(path)
    except RulesError as exc:
        for line in exc.errors:
            typer.echo(line, err=True)
        raise typer.Exit(1) from None
    except (MemoryError, RecursionError) as exc:  # the limits should prevent it; never a trace
        typer.echo(f"{path}:0: cannot load: {type(exc).__name__}", err=True)
        raise typer.Exit(1) from None


@rules_app.command("check")
def check(
    ctx: typer.Context,
    file: Path,
    strict: Annotated[bool, typer.Option(
        "--strict", help="exit 1 on a warning too (a rule that can never match)")] = False,
) -> None:
    """Validate a rules file offline: exit 0, or 1 with ``FILE:LINE: …`` lines.

    A rule that can never match (an earlier rule matches every asset and branch it does) is a
    ``FILE:LINE: warning: …`` line on stderr; it fails the check only with ``--strict``.
    """
    loaded = _load(file)
    for line in loaded.warnings:
        typer.echo(line, err=True)
    if strict and loaded.warnings:
        raise typer.Exit(1)
    summary = {"path": str(file), "sha256": loaded.sha256, "rules": len(loaded.rules.rules)}
    if is_json(ctx):
        render.emit_json(summary)
    else:
        typer.echo(f"{file}: ok, {summary['rules']} rules, sha256 {loaded.sha256[:12]}")


@rules_app.command("simulate")
def simulate_cmd(
    ctx: typer.Context,
    file: Path,
    asset: Annotated[str, typer.Option(help="the asset to replay")],
    branch: Annotated[str | None, typer.Option(help="default: --branch / ASSETD_BRANCH")] = None,
    alias: Annotated[str | None, typer.Option(help="default: the rule's promote alias")] = None,
) -> None:
    """Replay the asset's recorded history with FILE; show simulated vs actual alias holder.

    Nothing is published and nothing is written.
    """
    loaded = _load(file)
    br = branch or ctx.obj.branch or "main"
    timeline: dict[str, Any] = call(
        ctx, lambda c: c.request("timeline", asset=asset, branch=br))
    if not timeline["instances"]:
        fail(f"no instances of {asset} on branch {br}")
    name, steps = simulate(loaded.rules, asset, br, timeline, alias)
    differ = sum(not s.same for s in steps)
    if is_json(ctx):
        render.emit_json({"alias": name, "differences": differ,
                          "steps": [s.as_dict() for s in steps]})
        return
    render.table(f"{asset}@{br}: {name} with {file} (simulated) vs recorded",
                 ["instance", "value", "decision with FILE", "simulated", "actual", ""],
                 [[s.instance, s.value, s.decision, s.simulated, s.actual,
                   "" if s.same else "differs"] for s in steps])
    typer.echo(f"{differ} of {len(steps)} steps differ" if differ else
               f"all {len(steps)} steps match the recorded {name}")
