"""Beyond loopback the HTTP API needs a bearer token: the daemon refuses to start without one."""

from __future__ import annotations

from pathlib import Path

import pytest

from assetd.daemon.embedded import free_port
from assetd.daemon.http import HttpServer
from assetd.daemon.http_api import HttpApi, check_bind, is_loopback
from assetd.errors import ConfigError
from assetd.metrics import Metrics
from tests.conftest import run_cli


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("127.0.0.2", True), ("::1", True), ("localhost", True),
    ("0.0.0.0", False), ("::", False), ("", False), ("10.1.2.3", False),
    ("assetd.example.com", False),
])
def test_what_counts_as_loopback(host: str, loopback: bool) -> None:
    """Only loopback addresses and ``localhost`` keep the API on this machine."""
    assert is_loopback(host) is loopback
    if loopback:
        check_bind(host, None)
    else:
        with pytest.raises(ConfigError, match="ASSETD_HTTP_TOKEN"):
            check_bind(host, None)
    check_bind(host, "a-token")


async def _no_answer(project: str | None, method: str, payload: bytes) -> tuple[bytes, None]:
    raise AssertionError("not reached")


async def test_the_server_refuses_to_listen_beyond_loopback_without_a_token() -> None:
    """HttpServer with the API on 0.0.0.0 and no token raises before it binds anything."""
    async def ready() -> dict[str, bool]:
        return {}

    async def refresh() -> None:
        return None

    server = HttpServer(host="0.0.0.0", port=free_port(), metrics=Metrics(), ready=ready,
                        refresh=refresh, api=HttpApi(answer=_no_answer, token=None))
    with pytest.raises(ConfigError, match="beyond loopback"):
        await server.start()
    await server.stop()


def test_assetd_run_says_so_in_one_line(venv_bin: Path, tmp_path: Path) -> None:
    """``assetd run`` with ASSETD_HTTP_HOST=0.0.0.0 and no token exits 1 with one line."""
    env = {"ASSETD_HTTP_HOST": "0.0.0.0", "ASSETD_HTTP_PORT": str(free_port()),
           "ASSETD_DATA_DIR": str(tmp_path / "data"), "ASSETD_HTTP_TOKEN": "",
           "ASSETD_NATS_URL": "nats://127.0.0.1:1"}
    r = run_cli(venv_bin, "assetd", "run", env=env, cwd=tmp_path, timeout=60)
    assert r.returncode == 1, r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "ASSETD_HTTP_TOKEN" in lines[0], r.stderr


async def test_the_api_answers_internal_until_the_daemon_has_started(tmp_path: Path) -> None:
    """Before the start completes (registry not migrated, NATS not connected) an API request
    answers ``internal`` saying so, rather than failing on half-built state."""
    from assetd.config import Settings
    from assetd.daemon.app import Daemon

    daemon = Daemon(Settings(nats_url="nats://127.0.0.1:1", data_dir=tmp_path,
                             http_port=free_port()))
    try:
        reply, code = await daemon._http_answer("fraud", "assets", b"{}")
    finally:
        daemon.writer.dispose()
        daemon.reader.dispose()
        daemon.query_pool.close()
    assert code == "internal" and b"starting" in reply
