"""Shared pieces of ``assetctl``: the Typer app, global options, error handling."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

import orjson
import typer

from assetd.client import AssetClient, EventRejectedError, PromotionRejectedError
from assetd.config import load_settings
from assetd.errors import AssetdError, QueryError

app = typer.Typer(help="assetctl: run and inspect assetd.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
definitions_app = typer.Typer(help="Asset definitions from asset_config.toml files.",
                              no_args_is_help=True)
app.add_typer(definitions_app, name="definitions")


@dataclass
class Opts:
    """Global options shared by every command."""

    nats_url: str | None
    project: str | None
    branch: str | None
    json: bool


@app.callback()
def _global(
    ctx: typer.Context,
    nats_url: Annotated[str | None, typer.Option("--nats-url", help="NATS URL")] = None,
    project: Annotated[str | None, typer.Option("--project", "-p", help="project")] = None,
    branch: Annotated[str | None, typer.Option("--branch", "-b", help="branch")] = None,
    json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    ctx.obj = Opts(nats_url, project, branch, json)


def fail(message: str, code: int = 1) -> None:
    """One line on stderr, then exit."""
    typer.echo(f"assetctl: {message}", err=True)
    raise typer.Exit(code)


def call(ctx: typer.Context, fn: Callable[[AssetClient], Awaitable[Any]],
         *, needs_project: bool = True) -> Any:
    """Run ``fn`` with a connected client; map every failure to a one-line error."""
    o: Opts = ctx.obj

    async def go() -> Any:
        settings = load_settings(nats_url=o.nats_url, project=o.project, branch=o.branch)
        project = settings.project or ("_" if not needs_project else None)
        if project is None:
            fail("no project: pass --project or set ASSETD_PROJECT", 2)
        client = AssetClient(project, settings.branch, settings=settings)
        try:
            await client.connect()
        except Exception as exc:
            fail(f"cannot reach NATS at {settings.effective_nats_url} ({exc or type(exc).__name__})"
                 "; is assetd running? set --nats-url or ASSETD_NATS_URL")
        try:
            return await fn(client)
        finally:
            await client.close()

    try:
        return asyncio.run(go())
    except QueryError as exc:
        fail(f"{exc.code}: {exc.message}")
    except EventRejectedError as exc:
        fail(f"rejected: {exc.reason}")
    except PromotionRejectedError as exc:
        fail(f"promotion rejected: {exc.reason}")
    except (AssetdError, ValueError) as exc:
        fail(str(exc))


def is_json(ctx: typer.Context) -> bool:
    """Whether ``--json`` was given."""
    return bool(ctx.obj.json)


def parse_pairs(pairs: list[str], *, typed: bool) -> dict[str, Any]:
    """``k=v`` options to a dict; ``typed`` reads numbers, booleans and null as JSON."""
    result: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            fail(f"expected KEY=VALUE, got {pair!r}", 2)
        result[key] = _typed(value) if typed else value
    return result


def _typed(value: str) -> Any:
    try:
        parsed = orjson.loads(value)
    except orjson.JSONDecodeError:
        return value
    return parsed if isinstance(parsed, int | float | bool) or parsed is None else value
