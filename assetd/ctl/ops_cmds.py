"""Runbook commands: ``rollback``, ``deprecate``/``invalidate``/``restore``, ``events tail``."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Annotated, Any

import orjson
import typer

from assetd.client import AssetClient
from assetd.ctl import outcomes
from assetd.ctl.common import (
    EXIT_NO_OUTCOME,
    EventId,
    app,
    call,
    confirm,
    fail,
    is_json,
    published,
    waits,
)
from assetd.schemas import wire

events_app = typer.Typer(help="Follow outbound events.", no_args_is_help=True)
app.add_typer(events_app, name="events")
Yes = Annotated[bool, typer.Option("--yes", "-y", help="do not ask for confirmation")]
Reason = Annotated[str, typer.Option(help="why (recorded in the decision log)")]


@app.command()
def rollback(
    ctx: typer.Context,
    asset: str,
    reason: Reason,
    alias: Annotated[str, typer.Option(help="the alias to move back")] = "champion",
    to: Annotated[str | None, typer.Option(help="vN; default: the previous valid holder")]
    = None,
    yes: Yes = False,
    event_id: EventId = None,
) -> None:
    """Move an alias back; publishes alias_rolled_back (model servers reload)."""
    confirm(yes, f"move {asset}@{alias} back to {to or 'its previous holder'}")
    result = call(ctx, lambda c: c.rollback(asset, reason=reason, alias=alias, to=to,
                                            event_id=event_id, wait=waits(ctx)))
    published(ctx, result, lambda r: f"{asset} {r['alias']}: {r['from']} -> {r['to']}")


def _validity(ctx: typer.Context, asset: str, instance: str, reason: str,
              validity: str, event_id: str | None) -> None:
    result = call(ctx, lambda c: c.update_instance(asset, instance, reason=reason,
                                                   validity=validity, event_id=event_id,
                                                   wait=waits(ctx)))
    published(ctx, result, lambda r: f"{asset} {r['instance']} is {r['validity']}"
              f"{'; holds ' + ', '.join(r['aliases']) if r.get('aliases') else ''}"
              f"{outcomes.decision(r)}")


@app.command()
def deprecate(ctx: typer.Context, asset: str, instance: str, reason: Reason,
              event_id: EventId = None) -> None:
    """Mark vN deprecated (still resolvable, keeps its aliases)."""
    _validity(ctx, asset, instance, reason, "deprecated", event_id)


@app.command()
def invalidate(ctx: typer.Context, asset: str, instance: str, reason: Reason,
               yes: Yes = False, event_id: EventId = None) -> None:
    """Mark vN invalidated: it leaves latest, and its aliases roll back."""
    confirm(yes, f"invalidate {asset} {instance} (its aliases move back)")
    _validity(ctx, asset, instance, reason, "invalidated", event_id)


@app.command()
def restore(ctx: typer.Context, asset: str, instance: str, reason: Reason,
            event_id: EventId = None) -> None:
    """Mark vN valid again (aliases do not move back by themselves)."""
    _validity(ctx, asset, instance, reason, "valid", event_id)


@events_app.command("tail")
def tail(
    ctx: typer.Context,
    asset: Annotated[str, typer.Option(help="asset id, or * for all")] = "*",
    type_: Annotated[str, typer.Option("--type", help="event type, or * for all")] = "*",
    count: Annotated[int | None, typer.Option(min=1, help="stop after N events")] = None,
    from_start: Annotated[bool, typer.Option(help="replay ASSETD_OUT from the start")]
    = False,
) -> None:
    """Print outbound events as they are published, until --count events or --timeout
    seconds (exit 3 if fewer than --count arrived), or Ctrl-C."""
    timeout = ctx.obj.timeout

    async def go(c: AssetClient) -> int:
        seen = 0
        sub = await c.nc.jetstream().subscribe(
            wire.out_subject(c.prefix, c.project, c.branch, asset, type_), ordered_consumer=True,
            deliver_policy="all" if from_start else "new")
        try:
            async with asyncio.timeout(timeout):
                async for msg in sub.messages:
                    _print_event(ctx, orjson.loads(msg.data))
                    seen += 1
                    if count is not None and seen >= count:
                        break
        except TimeoutError:
            pass
        finally:
            await sub.unsubscribe()
        return seen

    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how a tail ends
        seen = call(ctx, go)
        if count is not None and seen < count:
            fail(f"{seen} of {count} events within {timeout:g}s", EXIT_NO_OUTCOME)


def _print_event(ctx: typer.Context, ev: dict[str, Any]) -> None:
    if is_json(ctx):
        print(orjson.dumps(ev).decode(), flush=True)
        return
    d = ev["data"]
    detail = ", ".join(f"{k}={d[k]}" for k in ("instance", "alias", "previous", "from", "to",
                                               "reason", "champion") if d.get(k) is not None)
    print(f"{ev['time']}  {ev['type']:<20} {ev['subject']}@{ev['branch']}  {detail}",
          flush=True)

