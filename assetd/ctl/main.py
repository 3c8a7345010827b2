"""``assetctl`` commands (CONTRACT §8): exit 0 done, 1 refused or not found, 2 usage error."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from assetd.client import AssetClient
from assetd.ctl import dlq_cmds, ops_cmds, promotion_cmds, render, rules_cmds
from assetd.ctl.common import app, call, definitions_app, fail, is_json, parse_pairs
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
) -> None:
    """List instances, newest first, a page at a time."""
    result = call(ctx, lambda c: c.list_instances(asset, limit=limit, before=before))
    if is_json(ctx):
        render.emit_json(result)
        return
    render.table(f"{asset} instances", render.INSTANCE_COLUMNS,
                 render.instance_rows(result["items"]))
    if result["next"]:
        typer.echo(f"more: assetctl instances {asset} --before {result['next']}")


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
    wait: Annotated[bool, typer.Option(help="wait for the assigned vN")] = True,
) -> None:
    """Register a new instance; prints the assigned vN."""
    if kind not in ("data", "model"):
        fail("--kind must be data or model", 2)
    ann = parse_pairs(annotation or [], typed=True)
    tags = parse_pairs(tag or [], typed=False)
    result = call(ctx, lambda c: c.register(
        asset, kind, annotations=ann, tags=tags, uri=uri,  # type: ignore[arg-type]
        inputs=list(input or []), state="pending" if pending else "ready", wait=wait))
    if is_json(ctx):
        render.emit_json(result)
    elif wait:
        typer.echo(f"{asset} {result['instance']} registered")
    else:
        typer.echo(f"published event {result}")


@app.command()
def consume(
    ctx: typer.Context,
    asset: str,
    selector: Annotated[str, typer.Argument()] = "latest",
    consumer: Annotated[str | None, typer.Option(help="consumer name")] = None,
) -> None:
    """Resolve an instance and record its consumption."""
    who = {"name": consumer} if consumer else None
    result = call(ctx, lambda c: c.consume(asset, selector, consumer=who))
    if is_json(ctx):
        render.emit_json(result)
    else:
        typer.echo(f"{asset} {result['instance']} consumed")


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
        for d in defs:
            await c.define(d.asset, d.kind, name=d.name, description=d.description,
                           properties=d.properties, event_id=d.event_id(c.project))
        return [d.as_dict() for d in defs]

    result = call(ctx, send)
    if is_json(ctx):
        render.emit_json(result)
        return
    render.table("definitions published", ["asset", "kind", "name", "file"],
                 [[d["asset"], d["kind"], d["name"], d["file"]] for d in result])


__all__ = ["app", "dlq_cmds", "main", "ops_cmds", "promotion_cmds", "rules_cmds"]


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
