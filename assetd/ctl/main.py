"""``assetctl`` commands (CONTRACT §8): exit 0 done, 1 refused or not found, 2 usage error."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from assetd import logs
from assetd.client import AssetClient
from assetd.client.outcome import settle
from assetd.ctl import diff_cmd, dlq_cmds, ops_cmds, outcomes, promotion_cmds, render, rules_cmds
from assetd.ctl.common import (
    EXIT_NO_OUTCOME,
    EventId,
    app,
    call,
    definitions_app,
    fail,
    hoist_globals,
    is_json,
    parse_pairs,
    published,
    waits,
)
from assetd.ctl.definitions import read_definitions


@app.command()
def status(ctx: typer.Context) -> None:
    """The daemon's version, uptime, database, counters and DLQ depth."""
    result = call(ctx, lambda c: c.status(), needs_project=False)
    if is_json(ctx):
        render.emit_json(result)
        return
    render.table("assetd status", ["field", "value"],
                 [[k, v] for k, v in result.items()])


@app.command()
def assets(
    ctx: typer.Context,
    kind: Annotated[str | None, typer.Option(help="data or model")] = None,
    tag: Annotated[list[str] | None, typer.Option(help="KEY=VALUE on the latest instance")] = None,
) -> None:
    """List the project's assets with their latest instance and aliases."""
    tags = parse_pairs(tag or [], typed=False)
    result = call(ctx, lambda c: c.list_assets(kind=kind, tags=tags or None))  # type: ignore[arg-type]
    if is_json(ctx):
        render.emit_json(result)
        return
    render.table("assets", ["asset", "kind", "latest", "instances", "aliases", "description"],
                 [[a["asset"], a["kind"], a["latest"], a["instances"], a["aliases"] or None,
                   a["description"]] for a in result])


@app.command()
def show(
    ctx: typer.Context,
    asset: str,
    selector: Annotated[str, typer.Argument(help="latest, latest-N, vN, @alias")] = "latest",
    allow_invalid: Annotated[bool, typer.Option(help="show an invalidated vN")] = False,
    at: Annotated[str | None, typer.Option(help="ISO time: who held the alias then")] = None,
) -> None:
    """Show one instance (default: the latest ready one)."""
    asset, _, sel = asset.partition("@")
    result = call(ctx, lambda c: c.peek(asset, sel or selector, allow_invalid=allow_invalid,
                                        at=at))
    if is_json(ctx):
        render.emit_json(result)
        return
    render.table(f"{asset} {result['instance']}", ["field", "value"],
                 [[k, v] for k, v in result.items()])


@app.command()
def instances(
    ctx: typer.Context,
    asset: str,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 20,
    before: Annotated[int | None, typer.Option(help="page: versions below this")] = None,
    where: Annotated[list[str] | None, typer.Option(
        help="annotation condition, e.g. 'f1_score>=0.9' (repeat: all must hold)")] = None,
) -> None:
    """List instances, newest first, a page at a time; --where filters on annotations."""
    conds = where or []
    result = call(ctx, lambda c: c.request("instances", asset=asset, limit=limit,
                                           before=before, where=conds) if conds
                  else c.list_instances(asset, limit=limit, before=before))
    if is_json(ctx):
        render.emit_json(result)
        return
    render.table(f"{asset} instances", render.INSTANCE_COLUMNS,
                 render.instance_rows(result["items"]))
    if result["next"]:
        more = "".join(f" --where {shlex.quote(w)}" for w in conds)
        typer.echo(f"more: assetctl instances {asset} --before {result['next']}{more}")


@app.command()
def lineage(
    ctx: typer.Context,
    target: Annotated[str, typer.Argument(help="ASSET or ASSET@SELECTOR")],
    direction: Annotated[str, typer.Option(help="upstream or downstream")] = "upstream",
    depth: Annotated[int, typer.Option(min=1, max=50)] = 3,
) -> None:
    """What an instance was derived from (upstream) or what used it (downstream)."""
    asset, _, sel = target.partition("@")
    if direction not in ("upstream", "downstream"):
        fail("--direction must be upstream or downstream", 2)
    result = call(ctx, lambda c: c.lineage(asset, sel or "latest", direction=direction,
                                           depth=depth))
    if is_json(ctx):
        render.emit_json(result)
        return
    render.table(f"lineage of {target} ({direction})", ["from", "relation", "to"],
                 [[e["from"], e["relation"], e["to"]] for e in result["edges"]])


@app.command()
def register(
    ctx: typer.Context,
    asset: str,
    kind: Annotated[str, typer.Option(help="data or model")],
    annotation: Annotated[list[str] | None, typer.Option(help="KEY=VALUE (typed)")] = None,
    tag: Annotated[list[str] | None, typer.Option(help="KEY=VALUE")] = None,
    uri: Annotated[str | None, typer.Option(help="where the bytes are")] = None,
    input: Annotated[list[str] | None, typer.Option(help="ASSET@SELECTOR it came from")] = None,
    pending: Annotated[bool, typer.Option(help="register as pending")] = False,
    event_id: EventId = None,
) -> None:
    """Register a new instance; prints the assigned vN and what the rules decided."""
    if kind not in ("data", "model"):
        fail("--kind must be data or model", 2)
    ann = parse_pairs(annotation or [], typed=True)
    tags = parse_pairs(tag or [], typed=False)
    result = call(ctx, lambda c: c.register(
        asset, kind, annotations=ann, tags=tags, uri=uri,  # type: ignore[arg-type]
        inputs=list(input or []), state="pending" if pending else "ready",
        event_id=event_id, wait=waits(ctx)))
    published(ctx, result, lambda r: f"{asset} {r['instance']} registered"
              f"{' (pending)' if r.get('state') == 'pending' else ''}{outcomes.decision(r)}")


@app.command()
def consume(
    ctx: typer.Context,
    asset: str,
    selector: Annotated[str, typer.Argument()] = "latest",
    consumer: Annotated[str | None, typer.Option(help="consumer name")] = None,
    event_id: EventId = None,
) -> None:
    """Resolve an instance and record its consumption."""
    who = {"name": consumer} if consumer else None
    result = call(ctx, lambda c: c.consume(asset, selector, consumer=who, event_id=event_id,
                                           wait=waits(ctx)))
    if is_json(ctx):
        render.emit_json(result)
    else:
        typer.echo(f"{asset} {result['instance']} consumed")


@app.command()
def event(ctx: typer.Context, event_id: str) -> None:
    """What became of an inbound event id: applied (and what it produced), rejected, or
    unknown (exit 3: not applied yet, or never received)."""
    got = call(ctx, lambda c: c.event(event_id))
    if is_json(ctx):
        render.emit_json(got)
    elif got["status"] == "unknown":
        typer.echo(f"event {event_id}: unknown (not applied yet, or never received)")
    else:
        render.table(f"event {event_id}: {got['status']}", ["field", "value"],
                     [["type", got["type"]], ["at", got["at"]],
                      *([k, v] for k, v in (got["outcome"] or {}).items())])
    if got["status"] == "unknown":
        raise typer.Exit(EXIT_NO_OUTCOME)
    if got["status"] == "rejected":
        raise typer.Exit(1)


@definitions_app.command("sync")
def definitions_sync(
    ctx: typer.Context,
    directory: Annotated[Path, typer.Argument(help="dir with models/*/ and data/*/")],
) -> None:
    """Publish ``asset_defined`` for every models/*/ and data/*/asset_config.toml."""
    try:
        defs = read_definitions(directory)
    except ValueError as exc:
        fail(str(exc))
    if not defs:
        fail(f"no models/*/asset_config.toml or data/*/asset_config.toml under {directory}")

    async def send(c: AssetClient) -> list[dict[str, Any]]:
        sent = [await c.define(d.asset, d.kind, name=d.name, description=d.description,
                               properties=d.properties, event_id=d.event_id(c.project),
                               wait=False) for d in defs]
        if waits(ctx):  # published together, then every outcome: one round trip each
            for eid in sent:
                settle(eid, await c.outcome(eid))
        return [d.as_dict() for d in defs]

    result = call(ctx, send)
    if is_json(ctx):
        render.emit_json(result)
        return
    render.table("definitions published", ["asset", "kind", "name", "file"],
                 [[d["asset"], d["kind"], d["name"], d["file"]] for d in result])


__all__ = ["app", "diff_cmd", "dlq_cmds", "main", "ops_cmds", "promotion_cmds", "rules_cmds"]


def main() -> None:
    """Console-script entry point: global flags anywhere, every error one line."""
    logs.configure("WARNING")  # the client's log lines go to stderr, never into output
    command = typer.main.get_command(app)
    try:
        code = command.main(hoist_globals(sys.argv[1:]), prog_name="assetctl",
                            standalone_mode=False)
    except KeyboardInterrupt:
        code = 130
    except typer.Exit as exc:
        code = exc.exit_code
    except typer.Abort:
        typer.echo("assetctl: aborted; nothing was published", err=True)
        code = 1
    except typer.TyperException as exc:  # usage errors (exit 2) and other click errors
        code = exc.exit_code
        if type(exc).__name__ == "NoArgsIsHelpError":
            typer.echo(exc.format_message())
        else:
            typer.echo(f"assetctl: {_one_line(exc.format_message())}{_see_help(exc)}",
                       err=True)
    except Exception as exc:  # a bug: still one line, and how to get the details
        if os.environ.get("ASSETD_DEBUG"):
            raise
        typer.echo(f"assetctl: internal error ({type(exc).__name__}: "
                   f"{_one_line(str(exc))[:300]}); ASSETD_DEBUG=1 shows the traceback",
                   err=True)
        code = 1
    sys.exit(code if isinstance(code, int) else 0)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _see_help(exc: Exception) -> str:
    ctx = getattr(exc, "ctx", None)
    if getattr(exc, "exit_code", 0) != 2 or ctx is None:
        return ""
    return f" (see `{ctx.command_path} --help`)"
