"""What the benchmarks share: a real ``assetd run`` subprocess on embedded NATS (SQLite, or
the PostgreSQL database given), waiting for it to answer, and the machine's description."""

from __future__ import annotations

import asyncio
import atexit
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
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
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
    with running_daemons(db_url=db_url, keep=keep, env=env) as group:
        yield group.url


@dataclass
class Daemons:
    """The ``assetd run`` processes of a benchmark and the NATS URL they share."""

    url: str
    procs: list[subprocess.Popen[bytes]]
    tmp: Path


@contextlib.contextmanager
def running_daemons(*, replicas: int = 1, db_url: str | None = None, keep: bool = False,
                    env: dict[str, str] | None = None) -> Iterator[Daemons]:
    """``replicas`` ``assetd run`` processes in a temp dir. One replica runs its embedded
    nats-server; several share one nats-server started here (the embedded one, same
    settings) and one registry: ``db_url``, or a SQLite file in the temp dir."""
    from assetd.daemon.embedded import EmbeddedNats

    tmp = Path(tempfile.mkdtemp(prefix="assetd-bench-"))
    base = {**os.environ, "ASSETD_HTTP_PORT": "0", "ASSETD_LOG_LEVEL": "WARNING",
            **(env or {})}
    base.pop("ASSETD_NATS_URL", None)
    base.pop("ASSETD_DB_URL", None)
    if db_url:
        base["ASSETD_DB_URL"] = db_url
    server: EmbeddedNats | None = None
    if replicas > 1:
        server = EmbeddedNats(store_dir=tmp / "nats", port=free_port())
        server.start()
        base["ASSETD_NATS_URL"] = url = server.url
        base.setdefault("ASSETD_DB_URL", f"sqlite:///{tmp / 'registry.db'}")
    else:
        port = free_port()
        base["ASSETD_EMBEDDED_NATS_PORT"] = str(port)
        url = f"nats://127.0.0.1:{port}"
    assetd = Path(sys.executable).parent / "assetd"
    procs: list[subprocess.Popen[bytes]] = []
    logs = []
    try:
        for i in range(replicas):
            home = tmp / f"replica-{i}"
            home.mkdir()
            log = open(home / "assetd.log", "wb")  # noqa: SIM115
            logs.append(log)
            procs.append(subprocess.Popen(
                [str(assetd), "run"], env={**base, "ASSETD_DATA_DIR": str(home / ".assetd")},
                cwd=home, stdout=log, stderr=subprocess.STDOUT))
        yield Daemons(url=url, procs=procs, tmp=tmp)
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(120)
        for log in logs:
            log.close()
        if server is not None:
            server.stop()
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def scratch_database(kind: str, admin: str) -> Iterator[str | None]:
    """None (the daemon's SQLite) or a fresh PostgreSQL database on the server of ``admin``,
    dropped afterwards."""
    if kind == "sqlite":
        yield None
        return
    from sqlalchemy import create_engine, text

    name = f"assetd_bench_{uuid.uuid4().hex[:10]}"
    engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield f"{admin.rpartition('/')[0]}/{name}"
    finally:
        with engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()


def rss_mb(pid: int) -> tuple[float, float]:
    """``(VmRSS, VmHWM)`` of a process in MiB: resident now, and its peak."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024  # kB
    return fields["VmRSS"], fields["VmHWM"]


def pss_mb(pid: int) -> float:
    """Proportional set size in MiB (``/proc/<pid>/smaps_rollup``): resident memory with
    each page shared with other processes (libraries, the interpreter) counted by share,
    so that the PSS of a daemon and its child add up to what they hold together."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) / 1024
    return 0.0


def children(pid: int) -> list[int]:
    """The pids of a process's direct children."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError):
            if int(stat.read_text().rpartition(")")[2].split()[1]) == pid:
                found.append(int(stat.parent.name))
    return found


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far (``/proc/<pid>/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def processes(procs: list[subprocess.Popen[bytes]]) -> dict[str, int]:
    """``{name: pid}`` of the benchmark's processes: the daemons, their children (the
    embedded nats-server, the relay's child), this process and its children."""
    parents = {f"daemon {i}": proc.pid for i, proc in enumerate(procs)}
    parents["this benchmark"] = os.getpid()
    found = dict(parents)
    for name, parent in parents.items():
        for pid in children(parent):
            with contextlib.suppress(OSError):
                comm = Path(f"/proc/{pid}/comm").read_text().strip()
                if pid not in parents.values():
                    found[f"{comm} of {name}"] = pid
    return found


def limit_cpus(cpus: float) -> str:
    """Put this process, and so every process it starts (the daemons, nats-server, the
    relay's child), in a cgroup of its own that may use ``cpus`` cores in all: the same
    benchmark on a slower machine, reproducibly (root, and Linux's cpu controller, needed;
    a PostgreSQL server is not started here, so not limited).
    A 10 ms period: the group's share comes in slices of a few milliseconds, not stalls of
    a tenth of a second. Returns what was set, for the report."""
    period = 10_000  # µs
    quota = max(1_000, int(cpus * period))
    name = f"assetd-bench-{os.getpid()}"
    v2 = Path("/sys/fs/cgroup/cgroup.controllers")
    try:
        if v2.exists() and "cpu" in v2.read_text().split():  # cgroup v2
            group = Path("/sys/fs/cgroup") / name
            group.mkdir(exist_ok=True)
            (group / "cpu.max").write_text(f"{quota} {period}")
        else:  # cgroup v1
            group = Path("/sys/fs/cgroup/cpu") / name
            group.mkdir(exist_ok=True)
            (group / "cpu.cfs_period_us").write_text(str(period))
            (group / "cpu.cfs_quota_us").write_text(str(quota))
        (group / "cgroup.procs").write_text(str(os.getpid()))
        atexit.register(_leave, group)
    except OSError as exc:
        raise SystemExit(f"--cpus needs root and Linux's cpu cgroup controller ({exc}); "
                         "run without --cpus") from None
    return f"{quota / period:.2f} cpus (cgroup {group}: {quota} µs every {period} µs)"


def _leave(group: Path) -> None:
    """Back to the parent cgroup, and the benchmark's removed (once its processes ended)."""
    with contextlib.suppress(OSError):
        (group.parent / "cgroup.procs").write_text(str(os.getpid()))
        group.rmdir()


def machine() -> str:
    """One line: architecture, cores, Python, OS, and the load average now."""
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"machine: {platform.machine()} {os.cpu_count()} cpu, {platform.python_version()}, "
            f"{platform.platform()}; load average {load}")
