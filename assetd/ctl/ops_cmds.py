"""Runbook commands: ``rollback``, ``deprecate``/``invalidate``/``restore``, ``events tail``."""

from __future__ import annotations

import contextlib
from typing import Annotated, Any

import orjson
import typer

from assetd.client import AssetClient
from assetd.ctl import render
from assetd.ctl.common import app, call, is_json
from assetd.schemas import wire

events_app = typer.Typer(help="Follow outbound events.", no_args_is_help=True)
app.add_typer(events_app, name="events")
Yes = Annotated[bool, typer.Option("--yes", "-y", help="do not ask for confirmation")]
Reason = Annotated[str, typer.Option(help="why (recorded in the decision log)")]


def _confirm(yes: bool, question: str) -> None:
    if not yes and not typer.confirm(question):
        raise typer.Exit(1)


@app.command()
def rollback(
    ctx: typer.Context,
    asset: str,
    reason: Reason,
    alias: Annotated[str, typer.Option(help="the alias to move back")] = "champion",
    to: Annotated[str | None, typer.Option(help="vN; default: the previous valid holder")]
    = None,
    yes: Yes = False,
) -> None:
    """Move an alias back; publishes alias_rolled_back (model servers reload)."""
    _confirm(yes, f"move {asset}@{alias} back to {to or 'its previous holder'}?")
    result = call(ctx, lambda c: c.rollback(asset, reason=reason, alias=alias, to=to))
    if is_json(ctx):
        render.emit_json(result)
    else:
        typer.echo(f"{asset} {alias}: {result['from']} -> {result['to']}")


def _validity(ctx: typer.Context, asset: str, instance: str, reason: str,
              validity: str) -> None:
    result = call(ctx, lambda c: c.update_instance(asset, instance, reason=reason,
                                                   validity=validity, wait=True))
    if is_json(ctx):
        render.emit_json(result)
    else:
        held = f"; holds {', '.join(result['aliases'])}" if result["aliases"] else ""
        typer.echo(f"{asset} {result['instance']} is {result['validity']}{held}")


@app.command()
def deprecate(ctx: typer.Context, asset: str, instance: str, reason: Reason) -> None:
    """Mark vN deprecated (still resolvable, keeps its aliases)."""
    _validity(ctx, asset, instance, reason, "deprecated")


@app.command()
def invalidate(ctx: typer.Context, asset: str, instance: str, reason: Reason,
               yes: Yes = False) -> None:
    """Mark vN invalidated: it leaves latest, and its aliases roll back."""
    _confirm(yes, f"invalidate {asset} {instance}? its aliases move back")
    _validity(ctx, asset, instance, reason, "invalidated")


@app.command()
def restore(ctx: typer.Context, asset: str, instance: str, reason: Reason) -> None:
    """Mark vN valid again (aliases do not move back by themselves)."""
    _validity(ctx, asset, instance, reason, "valid")


@events_app.command("tail")
def tail(
    ctx: typer.Context,
    asset: Annotated[str, typer.Option(help="asset id, or * for all")] = "*",
    type_: Annotated[str, typer.Option("--type", help="event type, or * for all")] = "*",
    count: Annotated[int | None, typer.Option(help="stop after N events")] = None,
    from_start: Annotated[bool, typer.Option(help="replay ASSETD_OUT from the start")]
    = False,
) -> None:
    """Print outbound events as they are published (Ctrl-C to stop)."""

    async def go(c: AssetClient) -> int:
        seen = 0
        sub = await c.nc.jetstream().subscribe(
            wire.out_subject(c.prefix, c.project, c.branch, asset, type_), ordered_consumer=True,
            deliver_policy="all" if from_start else "new")
        try:
            async for msg in sub.messages:
                _print_event(ctx, orjson.loads(msg.data))
                seen += 1
                if count is not None and seen >= count:
                    break
        finally:
            await sub.unsubscribe()
        return seen

    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how a tail ends
        call(ctx, go)


def _print_event(ctx: typer.Context, ev: dict[str, Any]) -> None:
    if is_json(ctx):
        print(orjson.dumps(ev).decode(), flush=True)
        return
    d = ev["data"]
    detail = ", ".join(f"{k}={d[k]}" for k in ("instance", "alias", "previous", "from", "to",
                                               "reason", "champion") if d.get(k) is not None)
    print(f"{ev['time']}  {ev['type']:<20} {ev['subject']}@{ev['branch']}  {detail}",
          flush=True)

