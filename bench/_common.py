"""What the benchmarks share: a real ``assetd run`` subprocess on embedded NATS (SQLite, or
the PostgreSQL database given), waiting for it to answer, and the machine's description."""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import nats
import orjson


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _quiet(exc: Exception) -> None:
    """The daemon is still starting: connection errors are expected, not news."""


async def wait_ready(url: str, timeout: float = 60, **connect: object) -> nats.NATS:
    """A connection to ``url`` once the daemon answers ``status``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            nc = await nats.connect(url, connect_timeout=1, max_reconnect_attempts=0,
                                    error_cb=_quiet, **connect)
            reply = await nc.request("assetd.api.status", b"", timeout=1)
            if orjson.loads(reply.data)["ok"]:
                return nc
            await nc.close()
        except Exception:
            if time.monotonic() > deadline:
                raise
        await asyncio.sleep(0.2)


@contextlib.contextmanager
def running_daemon(*, db_url: str | None = None, keep: bool = False,
                   env: dict[str, str] | None = None) -> Iterator[str]:
    """``assetd run`` on its embedded nats-server in a temp dir (SQLite there unless
    ``db_url``); yields the NATS URL; SIGTERM and clean-up afterwards."""
    tmp = Path(tempfile.mkdtemp(prefix="assetd-bench-"))
    port = free_port()
    full = {**os.environ, "ASSETD_DATA_DIR": str(tmp / ".assetd"), "ASSETD_HTTP_PORT": "0",
            "ASSETD_EMBEDDED_NATS_PORT": str(port), "ASSETD_LOG_LEVEL": "WARNING",
            **(env or {})}
    full.pop("ASSETD_NATS_URL", None)
    full.pop("ASSETD_DB_URL", None)
    if db_url:
        full["ASSETD_DB_URL"] = db_url
    assetd = Path(sys.executable).parent / "assetd"
    log = open(tmp / "assetd.log", "wb")  # noqa: SIM115
    daemon = subprocess.Popen([str(assetd), "run"], env=full, cwd=tmp, stdout=log,
                              stderr=subprocess.STDOUT)
    try:
        yield f"nats://127.0.0.1:{port}"
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(120)
        log.close()
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)


def machine() -> str:
    """One line: architecture, cores, Python, OS, and the load average now."""
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"machine: {platform.machine()} {os.cpu_count()} cpu, {platform.python_version()}, "
            f"{platform.platform()}; load average {load}")
