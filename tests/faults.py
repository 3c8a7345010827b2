"""Fault-test tools: daemon subprocesses to kill, a publisher that counts acknowledged
publishes, and the Jepsen-style ledger that checks what was applied."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats
import orjson

from tests.helpers import stream_messages


class DaemonProcess:
    """``assetd run`` as a child process with its own log file."""

    def __init__(self, venv_bin: Path, env: dict[str, str], log: Path) -> None:
        self.cmd = [str(venv_bin / "assetd"), "run"]
        self.env = {**os.environ, "ASSETD_HTTP_PORT": "0", **env}
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(self.cmd, env=self.env, stdout=out,
                                         stderr=subprocess.STDOUT)
        self.starts += 1

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> int:
        """SIGTERM and wait; returns the exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return -9

    def tail(self, n: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-n:]


@dataclass
class Publisher:
    """Publishes registrations ``seq = 0..n-1`` (ids ``ev-<seq>``) over ``assets``, retrying
    each until JetStream acknowledges it; ``acked`` is the ledger of what must be applied."""

    url: str
    n: int
    assets: tuple[str, ...] = ("racer_a", "racer_b")
    project: str = "fraud"
    acked: set[int] = field(default_factory=set)
    attempts: int = 0

    def event(self, seq: int) -> tuple[str, bytes, str]:
        asset = self.assets[seq % len(self.assets)]
        eid = f"ev-{seq}"
        body = orjson.dumps({"specversion": "1.0", "id": eid, "source": "faults",
                             "type": "asset_registered", "subject": asset,
                             "project": self.project,
                             "data": {"kind": "model", "annotations": {"seq": seq}}})
        return f"assetd.in.{self.project}.main.{asset}.asset_registered", body, eid

    async def run(self, window: int = 200) -> None:
        nc = await nats.connect(self.url.split(","), max_reconnect_attempts=-1,
                                reconnect_time_wait=0.2,
                                error_cb=_quiet, disconnected_cb=_noop, reconnected_cb=_noop)
        js = nc.jetstream(timeout=2)
        pending = list(range(self.n))
        try:
            while pending:
                chunk, pending = pending[:window], pending[window:]
                retry = await asyncio.gather(*(self._one(js, s) for s in chunk))
                pending = [s for s in retry if s is not None] + pending
        finally:
            await nc.close()

    async def _one(self, js: Any, seq: int) -> int | None:
        subject, body, eid = self.event(seq)
        self.attempts += 1
        try:
            await js.publish(subject, body, headers={"Nats-Msg-Id": eid}, timeout=2)
        except Exception:
            await asyncio.sleep(0.1)
            return seq
        self.acked.add(seq)
        return None


async def _quiet(exc: Exception) -> None:
    """Connection errors are the point of these tests."""


async def _noop() -> None:
    """Reconnects are expected."""


def registry_ledger(db: Path) -> dict[str, list[tuple[int, int]]]:
    """(version, seq) per asset, read straight from the SQLite registry."""
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute("SELECT asset, version, json_extract(annotations, '$.seq') "
                            "FROM instance ORDER BY asset, version").fetchall()
    finally:
        conn.close()
    out: dict[str, list[tuple[int, int]]] = {}
    for asset, version, seq in rows:
        out.setdefault(asset, []).append((version, seq))
    return out


def check_exactly_once(ledger: dict[str, list[tuple[int, int]]], acked: set[int],
                       dead: set[int]) -> None:
    """Versions 1..N per asset; every acknowledged publish applied once or dead-lettered."""
    seqs: list[int] = []
    for asset, rows in ledger.items():
        versions = [v for v, _ in rows]
        assert versions == list(range(1, len(versions) + 1)), f"{asset}: versions not 1..N"
        seqs += [s for _, s in rows]
    assert len(seqs) == len(set(seqs)), "an event was applied twice"
    lost = acked - set(seqs) - dead
    assert not lost, f"lost {len(lost)} acknowledged publishes, e.g. {sorted(lost)[:5]}"


async def dead_lettered(js: Any) -> set[int]:
    """Sequence numbers of ``ev-<seq>`` events in the DLQ."""
    out = set()
    for m in await stream_messages(js, "ASSETD_DLQ"):
        eid = m.headers.get("Assetd-Event-Id", "")
        if eid.startswith("ev-"):
            out.add(int(eid[3:]))
    return out


async def until(cond: Any, timeout: float, what: str) -> Any:
    """Poll a sync or async condition until truthy, or fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.1)


async def readyz(port: int) -> tuple[int, dict[str, Any]]:
    """``/readyz`` of a daemon: its status and body (0 and ``{}`` when nothing answers)."""
    import aiohttp

    try:
        async with aiohttp.ClientSession() as http, http.get(
            f"http://127.0.0.1:{port}/readyz", timeout=aiohttp.ClientTimeout(total=20)
        ) as r:
            return r.status, await r.json()
    except (aiohttp.ClientError, TimeoutError):
        return 0, {}


async def publish_seqs(url: str, pub: Publisher, seqs: range) -> None:
    """Publish the registrations ``seqs`` of ``pub`` (retrying each until acknowledged)."""
    nc = await nats.connect(url, max_reconnect_attempts=-1, reconnect_time_wait=0.2,
                            error_cb=_quiet, disconnected_cb=_noop, reconnected_cb=_noop)
    try:
        js = nc.jetstream(timeout=2)
        pending = list(seqs)
        while pending:
            retry = await asyncio.gather(*(pub._one(js, s) for s in pending[:200]))
            pending = [s for s in retry if s is not None] + pending[200:]
    finally:
        await nc.close()


def as_nobody(cmd: list[str]) -> list[str]:
    """``cmd`` run as the unprivileged user 65534 (root ignores file permissions)."""
    return ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *cmd]


def applied(db: Path) -> int:
    """Instances in a SQLite registry (0 while it cannot be read)."""
    try:
        conn = sqlite3.connect(db)
        try:
            return int(conn.execute("SELECT count(*) FROM instance").fetchone()[0])
        finally:
            conn.close()
    except sqlite3.Error:
        return 0
