"""The ``assetd`` command: ``run``, ``migrate``, ``demo``, ``version``, ``export-schemas``."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Annotated

import typer

import assetd
from assetd.config import Settings, load_settings
from assetd.errors import ConfigError
from assetd.logs import configure
from assetd.rules.loader import RulesError

app = typer.Typer(help="assetd: the asset orchestration daemon.", no_args_is_help=True,
                  pretty_exceptions_enable=False)

NatsUrl = Annotated[str | None, typer.Option("--nats-url", help="NATS URL; none: embedded")]
Db = Annotated[str | None, typer.Option("--db", help="registry URL (SQLAlchemy)")]
DataDir = Annotated[Path | None, typer.Option("--data-dir", help="state directory")]
Rules = Annotated[Path | None, typer.Option("--rules", help="rules file")]
HttpPort = Annotated[int | None, typer.Option("--http-port", help="health/metrics port")]


def _fail(message: str) -> None:
    typer.echo(f"assetd: {message}", err=True)
    raise typer.Exit(1)


def _settings(**flags: object) -> Settings:
    try:
        return load_settings(**flags)
    except Exception as exc:
        _fail(f"bad settings: {exc}")
        raise


def run_loop(coro: object) -> None:
    """Run a coroutine on uvloop when available."""
    try:
        import uvloop

        uvloop.run(coro)  # type: ignore[arg-type]
    except ImportError:
        asyncio.run(coro)  # type: ignore[arg-type]


@app.command()
def run(nats_url: NatsUrl = None, db: Db = None, data_dir: DataDir = None,
        rules: Rules = None, http_port: HttpPort = None) -> None:
    """Run the daemon until SIGINT/SIGTERM (embedded NATS and SQLite unless configured)."""
    from assetd.daemon.app import Daemon

    settings = _settings(nats_url=nats_url, db_url=db, data_dir=data_dir, rules=rules,
                         http_port=http_port)
    configure(settings.log_level)
    daemon: Daemon | None = None
    try:
        daemon = Daemon(settings)
        run_loop(daemon.serve())
    except ConfigError as exc:
        _fail(str(exc))
    except RulesError as exc:
        typer.echo("\n".join(exc.errors), err=True)
        _fail("the rules file does not validate; fix it (assetctl rules check FILE)")
    except KeyboardInterrupt:
        pass
    if daemon is not None and daemon.exit_code:  # the NATS connection was lost for good
        raise typer.Exit(daemon.exit_code)


@app.command()
def migrate(db: Db = None, data_dir: DataDir = None) -> None:
    """Create or upgrade the registry schema to this version of assetd."""
    from assetd.registry.migrate import current_revision, head_revision, upgrade

    settings = _settings(db_url=db, data_dir=data_dir)
    url = settings.effective_db_url
    before = current_revision(url)
    upgrade(url)
    typer.echo(f"registry at revision {head_revision()} (was {before or 'empty'})")


@app.command("copy-registry")
def copy_registry_cmd(
    source: Annotated[str, typer.Option("--from", help="registry URL to read")],
    target: Annotated[str, typer.Option("--to", help="empty database URL to fill")],
) -> None:
    """Copy a whole registry (e.g. SQLite to PostgreSQL); stop the daemons first."""
    from assetd.registry.copy import copy_registry

    try:
        counts = copy_registry(source, target,
                               lambda t, n: typer.echo(f"{t}: {n} rows"))
    except ConfigError as exc:
        _fail(str(exc))
    typer.echo(f"copied {sum(counts.values())} rows; point ASSETD_DB_URL at the new database")


@app.command()
def demo(keep: Annotated[bool, typer.Option(help="keep the temp dir")] = False) -> None:
    """Start a daemon in a temp dir and run a scripted pipeline against it."""
    from assetd.daemon.demo import run_demo

    configure("WARNING")
    try:
        run_loop(run_demo(keep=keep))
    except ConfigError as exc:
        _fail(str(exc))


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(assetd.__version__)


@app.command("export-schemas")
def export_schemas(out: Annotated[Path, typer.Option(help="docs dir")] = Path("docs")) -> None:
    """Write JSON Schemas of every event to DOCS/schemas/ and the AsyncAPI doc to DOCS/."""
    from assetd.schemas.export import write_all

    for path in write_all(out):
        typer.echo(str(path))


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
