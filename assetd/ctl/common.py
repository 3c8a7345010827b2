"""Shared pieces of ``assetctl``: the Typer app, global options, outcomes and error handling.

Exit status (CONTRACT §8): 0 done, 1 refused, rejected or not found, 2 usage error, 3 no
outcome within ``--timeout``. Every error is one line on stderr, never a traceback.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, NoReturn

import nats
import orjson
import typer

from assetd import __version__
from assetd.client import (
    AssetClient,
    EventRejectedError,
    NoOutcomeError,
    PermissionDeniedError,
    PromotionRejectedError,
    RefusedError,
)
from assetd.config import load_settings
from assetd.errors import AssetdError, QueryError

app = typer.Typer(help="assetctl: run and inspect assetd.", no_args_is_help=True,
                  pretty_exceptions_enable=False, rich_markup_mode=None)
definitions_app = typer.Typer(help="Asset definitions from asset_config.toml files.",
                              no_args_is_help=True)
app.add_typer(definitions_app, name="definitions")

CONNECT_TIMEOUT = 1.0  # with Python's start (0.5 to 0.8 s), unreachable NATS is reported within 2 s
EXIT_NO_OUTCOME = 3
EventId = Annotated[str | None, typer.Option(
    "--event-id", help="the event's id: re-running with the same id is safe (applied once; "
    "answers its first outcome)")]


@dataclass
class Opts:
    """Global options shared by every command (accepted before or after the subcommand)."""

    nats_url: str | None
    nats_creds: Path | None
    nats_nkey: Path | None
    project: str | None
    branch: str | None
    json: bool
    timeout: float | None
    wait: bool


def _version(value: bool) -> None:
    if value:
        typer.echo(f"assetctl {__version__}")
        raise typer.Exit(0)


@app.callback()
def _global(
    ctx: typer.Context,
    nats_url: Annotated[str | None, typer.Option("--nats-url", help="NATS URL")] = None,
    nats_creds: Annotated[Path | None, typer.Option(
        "--nats-creds", help="NATS credentials file (ASSETD_NATS_CREDS)")] = None,
    nats_nkey: Annotated[Path | None, typer.Option(
        "--nats-nkey", help="NATS nkey seed file (ASSETD_NATS_NKEY); user/password, token "
        "and TLS come from ASSETD_NATS_* only")] = None,
    project: Annotated[str | None, typer.Option("--project", "-p", help="project")] = None,
    branch: Annotated[str | None, typer.Option("--branch", "-b", help="branch")] = None,
    json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
    timeout: Annotated[float | None, typer.Option(
        "--timeout", min=0.1, help="seconds to wait for an outcome (default 10; for "
        "`events tail`, stop after it)")] = None,
    no_wait: Annotated[bool, typer.Option(
        "--no-wait", help="publish only; do not wait for the outcome")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="print the version and exit")] = False,
) -> None:
    ctx.obj = Opts(nats_url, nats_creds, nats_nkey, project, branch, json, timeout,
                   not no_wait)


_VALUED = ("--nats-url", "--nats-creds", "--nats-nkey", "--project", "-p", "--branch", "-b",
           "--timeout")
_FLAGS = ("--json", "--no-wait", "--version")


def hoist_globals(argv: list[str]) -> list[str]:
    """Move the global options to the front, so they work after the subcommand too
    (``assetctl show X --json`` = ``assetctl --json show X``); ``--`` ends the search."""
    front: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            rest += argv[i:]
            break
        name = arg.split("=", 1)[0]
        if arg in _FLAGS or (name in _VALUED and "=" in arg):
            front.append(arg)
        elif arg in _VALUED and i + 1 < len(argv):
            front += argv[i:i + 2]
            i += 1
        elif len(arg) > 2 and arg[:2] in ("-p", "-b") and not arg.startswith("--"):
            front.append(arg)  # -pfraud
        else:
            rest.append(arg)
        i += 1
    return front + rest


def fail(message: str, code: int = 1) -> NoReturn:
    """One line on stderr, then exit."""
    line = " ".join(str(message).split())  # one line, whatever the message held
    typer.echo(f"assetctl: {line}", err=True)
    raise typer.Exit(code)


def call(ctx: typer.Context, fn: Callable[[AssetClient], Awaitable[Any]],
         *, needs_project: bool = True) -> Any:
    """Run ``fn`` with a connected client; map every failure to a one-line error."""
    o: Opts = ctx.obj

    async def go() -> Any:
        settings = load_settings(nats_url=o.nats_url, nats_creds=o.nats_creds,
                                 nats_nkey=o.nats_nkey, project=o.project, branch=o.branch)
        project = settings.project or ("_" if not needs_project else None)
        if project is None:
            fail("no project: pass --project or set ASSETD_PROJECT", 2)
        client = AssetClient(project, settings.branch, settings=settings,
                             timeout=o.timeout or 10.0, connect_timeout=CONNECT_TIMEOUT,
                             wait_for_nats=False)
        await client.connect()
        try:  # a NATS denial anywhere in the command ends it at once, named
            return await client.guarded(fn(client))
        finally:
            await client.close()

    try:
        return asyncio.run(go())
    except NoOutcomeError as exc:
        fail(str(exc), EXIT_NO_OUTCOME)
    except QueryError as exc:
        fail(f"{exc.code}: {exc.message}")
    except EventRejectedError as exc:
        fail(f"rejected (dead-lettered, see `assetctl dlq list`): {exc.reason}")
    except RefusedError as exc:
        fail(f"refused: {exc.reason}")
    except PromotionRejectedError as exc:
        fail(f"promotion rejected: {exc.reason}{_compared(exc.details)}")
    except PermissionDeniedError as exc:
        fail(str(exc))
    except (TimeoutError, nats.errors.TimeoutError):
        fail(f"NATS did not answer within {o.timeout or 10.0:g}s; is it overloaded? "
             "(--timeout)", EXIT_NO_OUTCOME)
    except nats.errors.Error as exc:
        fail(f"NATS refused the request ({type(exc).__name__}: {exc}); does this user have "
             "the permission? (docs/runbook.md, who may do what)")
    except (AssetdError, ValueError, OSError) as exc:
        fail(str(exc) or type(exc).__name__)


def _compared(d: dict[str, Any]) -> str:
    keys = ("champion", "metric", "candidate_value", "champion_value", "improvement")
    shown = [f"{k}={d[k]}" for k in keys if d.get(k) is not None]
    return f" ({', '.join(shown)})" if shown else ""


def is_json(ctx: typer.Context) -> bool:
    """Whether ``--json`` was given."""
    return bool(ctx.obj.json)


def waits(ctx: typer.Context) -> bool:
    """Whether a publishing command waits for its outcome (not ``--no-wait``)."""
    return bool(ctx.obj.wait)


def published(ctx: typer.Context, result: Any, text: Callable[[dict[str, Any]], str]) -> None:
    """Print a publishing command's result: its outcome (``text`` of it, or JSON), or with
    ``--no-wait`` the event id it published."""
    if not waits(ctx):
        result = {"event_id": result, "status": "published"}
        if not is_json(ctx):
            typer.echo(f"published event {result['event_id']} (not waiting for its outcome; "
                       f"`assetctl event {result['event_id']}` tells it)")
            return
    if is_json(ctx):
        print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
    else:
        typer.echo(text(result))


def confirm(yes: bool, question: str) -> None:
    """Ask before a destructive command; with no terminal to ask on, say to pass --yes."""
    if yes:
        return
    if not sys.stdin.isatty():
        fail(f"{question} needs confirmation: pass --yes (stdin is not a terminal)", 2)
    if not typer.confirm(f"{question}?"):
        fail("not confirmed; nothing was published")


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
