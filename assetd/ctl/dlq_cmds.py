"""``assetctl dlq list|show|replay|purge``: the dead-letter stream."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

import typer

from assetd.client import AssetClient
from assetd.client.dlq import DeadLetters
from assetd.ctl import render
from assetd.ctl.common import app, call, fail, is_json
from assetd.schemas import wire
from assetd.schemas.rules import parse_duration

dlq_app = typer.Typer(help="Inspect, replay and purge dead-lettered events.",
                      no_args_is_help=True)
app.add_typer(dlq_app, name="dlq")
_EXAMPLE = wire.dlq_subject("assetd", "fraud", "main", "fraud_model", ">")
Subject = Annotated[str | None, typer.Option(
    help=f"DLQ subject filter, e.g. {_EXAMPLE} (a branch user.alice is written user~alice)")]


def _dlq(ctx: typer.Context, c: AssetClient, subject: str | None) -> DeadLetters:
    return DeadLetters(c.nc, prefix=c.prefix, project=ctx.obj.project or c.settings.project,
                       subject=subject)


@dlq_app.command("list")
def dlq_list(ctx: typer.Context, subject: Subject = None,
             limit: Annotated[int, typer.Option(min=1)] = 100) -> None:
    """Dead letters, oldest first: sequence, time, subject, event id, reason."""
    rows = call(ctx, lambda c: _dlq(ctx, c, subject).list(limit=limit), needs_project=False)
    if is_json(ctx):
        render.emit_json([r.summary() for r in rows])
        return
    render.table(f"dead letters ({len(rows)})", ["seq", "time", "inbound subject", "event id",
                                                 "reason"],
                 [[r.seq, r.time and r.time.isoformat(timespec="seconds"), r.inbound_subject,
                   r.event_id, r.reason] for r in rows])


@dlq_app.command("show")
def dlq_show(ctx: typer.Context, seq: int) -> None:
    """One dead letter: headers, reason, validation errors and the original payload."""
    letter = call(ctx, lambda c: _dlq(ctx, c, None).get(seq), needs_project=False)
    render.emit_json(letter.as_dict())


@dlq_app.command("replay")
def dlq_replay(
    ctx: typer.Context,
    seq: Annotated[int | None, typer.Argument(help="the DLQ sequence number")] = None,
    all_: Annotated[bool, typer.Option("--all", help="every dead letter (of --subject)")]
    = False,
    subject: Subject = None,
    keep: Annotated[bool, typer.Option(help="keep the letters in the DLQ")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask")] = False,
) -> None:
    """Re-publish to the original subject; replaying an event twice is harmless."""
    if (seq is None) == (not all_):
        fail("give a SEQ or --all", 2)

    async def go(c: AssetClient) -> list[dict[str, Any]]:
        dlq = _dlq(ctx, c, subject)
        letters = [await dlq.get(seq)] if seq is not None else await dlq.list(limit=1_000_000)
        if all_ and letters and not yes and not typer.confirm(
                f"replay {len(letters)} dead letters?"):
            raise typer.Exit(1)
        return [{"seq": lt.seq, "to": await dlq.replay(lt, keep=keep)} for lt in letters]

    done = call(ctx, go, needs_project=False)
    if is_json(ctx):
        render.emit_json(done)
    else:
        typer.echo(f"replayed {len(done)} dead letters")


@dlq_app.command("purge")
def dlq_purge(
    ctx: typer.Context,
    older_than: Annotated[str, typer.Option(help="age: 90s, 15m, 26h, 7d")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask")] = False,
) -> None:
    """Delete dead letters older than the given age."""
    try:
        age = timedelta(seconds=parse_duration(older_than))
    except ValueError as exc:
        fail(str(exc), 2)
    if not yes and not typer.confirm(f"delete dead letters older than {older_than}?"):
        raise typer.Exit(1)
    gone = call(ctx, lambda c: _dlq(ctx, c, None).purge(older_than=age), needs_project=False)
    if is_json(ctx):
        render.emit_json({"deleted": gone})
    else:
        typer.echo(f"deleted {gone} dead letters")
