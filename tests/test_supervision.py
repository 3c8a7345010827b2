"""Supervision and recovery: every background loop survives what ends it, the daemon
re-creates what NATS lost, a read-only database is waited out, and the process ends the
right way (0 on a signal, 1 when the NATS connection is gone for good).

Real nats-server processes throughout; daemons in-process where their inner state is
checked, as subprocesses where the exit status or a real outage is the point. Counted like
Jepsen: lost = acknowledged publishes neither applied nor dead-lettered.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.aio.msg import Msg

from assetd.client import AssetClient
from assetd.config import Settings
from assetd.daemon import supervisor as supervisor_module
from assetd.daemon.app import Daemon
from assetd.daemon.embedded import EmbeddedNats, free_port
from tests.conftest import daemon_settings, running_daemon, running_nats
from tests.faults import (
    DaemonProcess,
    Publisher,
    applied,
    as_nobody,
    check_exactly_once,
    dead_lettered,
    publish_seqs,
    readyz,
    registry_ledger,
    until,
)
from tests.helpers import stream_messages


class LogRecorder:
    """Stands in for a structlog logger: keeps (level, event, fields)."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict[str, Any]]] = []

    def __getattr__(self, level: str) -> Any:
        def record(event: str, **fields: Any) -> None:
            self.lines.append((level, event, fields))

        return record


def counts(name: str, pub: Publisher, db: Path, dead: set[int]) -> str:
    """The Jepsen-style tally of a run, for the test log."""
    ledger = registry_ledger(db)
    seqs = [s for rows in ledger.values() for _, s in rows]
    lost = pub.acked - set(seqs) - dead
    return (f"\n{name}: published {pub.attempts} attempts, acked {len(pub.acked)}, "
            f"applied {len(set(seqs))}, dead-lettered {len(dead)}, lost {len(lost)}, "
            f"doubled {len(seqs) - len(set(seqs))}")


def subprocess_daemon(venv_bin: Path, url: str, db: Path, tmp: Path, port: int,
                      **env: str) -> DaemonProcess:
    """``assetd run`` against ``url`` and a SQLite registry, with its HTTP endpoints."""
    return DaemonProcess(venv_bin, {"ASSETD_NATS_URL": url, "ASSETD_DB_URL": f"sqlite:///{db}",
                                    "ASSETD_DATA_DIR": str(tmp / "state"),
                                    "ASSETD_HTTP_PORT": str(port), "ASSETD_LOG_LEVEL": "INFO",
                                    "ASSETD_FETCH_TIMEOUT": "0.5", **env}, tmp / "daemon.log")


async def ready_200(port: int) -> bool:
    return (await readyz(port))[0] == 200


@pytest.fixture
def own_nats() -> Iterator[EmbeddedNats]:
    """A nats-server of this test alone, to stop, wipe and restart on the same port."""
    with running_nats("assetd-supervision-nats-") as server:
        yield server


# --- (a) a long NATS outage under load ---------------------------------------------------


@pytest.mark.slow
async def test_nats_outage_of_120s_under_load_leaves_nothing_unapplied(
    own_nats: EmbeddedNats, venv_bin: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """nats-server gone for 120 s while registrations stream in and the daemon's reconnect
    buffer fills: afterwards every acknowledged event is applied once, /readyz is 200 again
    and the inbound loop runs, without a restart of the daemon."""
    db, port = tmp_path / "registry.db", free_port()
    daemon = subprocess_daemon(venv_bin, own_nats.url, db, tmp_path, port,
                               ASSETD_BATCH_SIZE="500", ASSETD_LOG_LEVEL="WARNING")
    daemon.start()
    pub = Publisher(own_nats.url, 20_000, assets=("a", "b", "c", "d"))
    try:
        await until(lambda: ready_200(port), 60, "daemon ready")
        await publish_seqs(own_nats.url, pub, range(15_000))
        await until(lambda: applied(db) >= 3000, 120, "daemon applying under load")
        # the rest is still being published (and retried) when the server goes away
        publishing = asyncio.create_task(publish_seqs(own_nats.url, pub, range(15_000, 20_000)))
        await asyncio.sleep(0.2)
        own_nats.stop()
        await asyncio.sleep(5)
        assert (await readyz(port))[0] == 503, "not ready while NATS is gone"
        await asyncio.sleep(115)  # the rest of the outage: the relay and fetch keep trying
        own_nats.start()
        await asyncio.wait_for(publishing, 300)
        await until(lambda: applied(db) >= len(pub.acked), 300, "every acked event applied")
        await until(lambda: ready_200(port), 60, "/readyz 200 again")
        client_settings = Settings(nats_url=own_nats.url)
        async with AssetClient("fraud", settings=client_settings, timeout=15) as c:
            loops = (await c.status())["loops"]
        assert loops["inbound"]["state"] == "running", loops
        nc = await nats.connect(own_nats.url)
        try:
            dead = await dead_lettered(nc.jetstream())
        finally:
            await nc.close()
        check_exactly_once(registry_ledger(db), pub.acked, dead)
        assert daemon.proc is not None and daemon.proc.poll() is None, "no restart needed"
    finally:
        rc = daemon.stop()
    with capsys.disabled():
        print(counts("120 s NATS outage", pub, db, dead) + f"; loops {loops}")
    assert rc == 0, daemon.tail()


# --- (b) an exception from the handler or an ack ------------------------------------------


async def test_exception_from_handle_or_ack_is_logged_and_the_loop_retried(
    nc: Any, js: Any, nats_server: EmbeddedNats, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    """An exception from the batch handler, then one from an ack after the commit, ends the
    inbound run; the supervisor logs each, re-binds, pulls again, and every event is
    applied exactly once."""
    logs = LogRecorder()
    monkeypatch.setattr(supervisor_module, "log", logs)
    db = tmp_path / "r.db"
    settings = daemon_settings(nats_server.url, f"sqlite:///{db}", tmp_path, ack_wait=2.0)
    real_ack, acks_failed = Msg.ack, []

    async def failing_ack(self: Msg) -> None:
        if not acks_failed:
            acks_failed.append(self)
            raise nats.errors.ConnectionClosedError
        await real_ack(self)

    async with running_daemon(settings) as d:
        handle, calls = d.consumer.handle, []

        async def flaky(msgs: list[Any]) -> None:
            calls.append(len(msgs))
            if len(calls) == 1:
                raise RuntimeError("a bug in the batch handler")
            if len(calls) == 2:
                monkeypatch.setattr(Msg, "ack", failing_ack)
            await handle(msgs)

        d.consumer.handle = flaky
        pub = Publisher(nats_server.url, 200)
        await pub.run()
        await until(lambda: applied(db) >= 200, 60, "all applied")
        await until(lambda: _settled(js), 30, "nothing left unacknowledged")
        state = d.supervisor.loops["inbound"]
        assert state.state == "running" and state.restarts == 2
    check_exactly_once(registry_ledger(db), pub.acked, set())
    events = [(level, event, f.get("error", "")) for level, event, f in logs.lines]
    assert ("error", "loop failed unexpectedly; retrying",
            "RuntimeError: a bug in the batch handler") in events
    assert any(event.startswith("loop failed") and "ConnectionClosedError" in error
               for _, event, error in events), events
    assert acks_failed, "the failing ack was exercised"
    with capsys.disabled():
        print(counts("handler and ack exceptions", pub, db, set()) + f"; batches {calls}")


async def _settled(js: Any) -> bool:
    info = await js.consumer_info("ASSETD_IN", "assetd")
    return bool(info.num_ack_pending == 0 and info.num_pending == 0)


# --- (c) the durable consumer deleted ----------------------------------------------------


async def test_deleted_durable_consumer_fails_readyz_and_is_recreated(
    nc: Any, js: Any, nats_server: EmbeddedNats, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Deleting the durable consumer under a running daemon makes /readyz answer 503; the
    inbound loop re-creates it and events published afterwards are applied."""
    db, port = tmp_path / "r.db", free_port()
    settings = daemon_settings(nats_server.url, f"sqlite:///{db}", tmp_path).model_copy(
        update={"http_port": port})
    async with running_daemon(settings) as d:
        pub = Publisher(nats_server.url, 100)
        await publish_seqs(nats_server.url, pub, range(50))
        await until(lambda: applied(db) >= 50, 60, "first half applied")
        await js.delete_consumer("ASSETD_IN", "assetd")
        status, body = await readyz(port)
        assert status == 503 and body["checks"]["consumer"] is False, body
        await until(lambda: ready_200(port), 30, "consumer re-created, /readyz 200")
        await publish_seqs(nats_server.url, pub, range(50, 100))
        await until(lambda: applied(db) >= 100, 60, "events after the deletion applied")
        restarts = d.supervisor.loops["inbound"].restarts
        assert restarts >= 1
        metrics = await _metrics(port)
        assert 'assetd_loop_up{loop="inbound"} 1.0' in metrics
        assert f'assetd_loop_restarts_total{{loop="inbound"}} {restarts:.1f}' in metrics
    check_exactly_once(registry_ledger(db), pub.acked, set())
    with capsys.disabled():
        print(counts("durable consumer deleted", pub, db, set()))


async def _metrics(port: int) -> str:
    import aiohttp

    async with aiohttp.ClientSession() as http, \
            http.get(f"http://127.0.0.1:{port}/metrics") as r:
        return await r.text()


# --- (d) the NATS store wiped --------------------------------------------------------------


async def test_wiped_nats_store_gets_its_streams_and_consumer_back(
    own_nats: EmbeddedNats, venv_bin: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """nats-server restarted on the same port with an empty store (streams and consumer
    gone): the running daemon re-creates them and applies the events published after."""
    db, port = tmp_path / "registry.db", free_port()
    daemon = subprocess_daemon(venv_bin, own_nats.url, db, tmp_path, port)
    daemon.start()
    pub = Publisher(own_nats.url, 200)
    try:
        await until(lambda: ready_200(port), 60, "daemon ready")
        await publish_seqs(own_nats.url, pub, range(100))
        await until(lambda: applied(db) >= 100, 60, "first 100 applied")
        own_nats.stop()
        shutil.rmtree(own_nats.store_dir / "jetstream")
        own_nats.start()
        await until(lambda: ready_200(port), 60, "streams and consumer re-created")
        await publish_seqs(own_nats.url, pub, range(100, 200))
        await until(lambda: applied(db) >= 200, 60, "events after the wipe applied")
        check_exactly_once(registry_ledger(db), pub.acked, set())
        assert daemon.proc is not None and daemon.proc.poll() is None, "no restart needed"
    finally:
        rc = daemon.stop()
    with capsys.disabled():
        print(counts("NATS store wiped", pub, db, set()))
    assert rc == 0, daemon.tail()


# --- (e) the connection closed for good -----------------------------------------------------


class AuthNats(EmbeddedNats):
    """A nats-server with users; ``revoke`` takes one away by a config reload (SIGHUP)."""

    users = {"assetd": "daemon-secret", "admin": "admin-secret"}

    def config_text(self) -> str:
        users = ", ".join(f'{{user: "{u}", password: "{p}"}}' for u, p in self.users.items())
        return super().config_text() + f"authorization {{ users = [ {users} ] }}\n"

    def revoke(self, user: str) -> None:
        self.users = {u: p for u, p in self.users.items() if u != user}
        (self.store_dir / "nats-server.conf").write_text(self.config_text())
        assert self.proc is not None
        self.proc.send_signal(signal.SIGHUP)


async def test_daemon_exits_1_when_its_nats_user_is_revoked(
    venv_bin: Path, tmp_path: Path
) -> None:
    """The daemon's NATS user is revoked (config reload): the connection cannot come back,
    so `assetd run` exits with status 1 and one log line, no traceback."""
    server = AuthNats(store_dir=tmp_path / "nats", port=free_port())
    server.start()
    db, port = tmp_path / "registry.db", free_port()
    daemon = subprocess_daemon(venv_bin, server.url, db, tmp_path, port,
                               ASSETD_NATS_USER="assetd", ASSETD_NATS_PASSWORD="daemon-secret")
    try:
        daemon.start()
        await until(lambda: ready_200(port), 60, "daemon ready")
        server.revoke("assetd")
        assert daemon.proc is not None
        rc = await asyncio.to_thread(daemon.proc.wait, 60)
        log = daemon.tail(20_000)
        assert rc == 1, log
        assert "lost for good" in log and "Traceback" not in log, log
    finally:
        daemon.stop()
        server.stop()


async def test_connection_closed_for_good_stops_the_daemon_with_exit_code_1(
    nc: Any, nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    """The NATS connection is closed for good while the daemon runs (as nats-py does after a
    server -ERR): the daemon asks to stop, with exit code 1, instead of idling unready."""
    d = Daemon(daemon_settings(nats_server.url, f"sqlite:///{tmp_path / 'r.db'}", tmp_path))
    await d.start()
    try:
        await d.broker.connection.close()
        await until(lambda: d._stop.is_set(), 15, "stop requested")
        assert d.exit_code == 1
    finally:
        await d.stop()


# --- (f) SIGTERM / SIGINT with NATS down ---------------------------------------------------


@pytest.mark.parametrize(("sig", "when"), [(signal.SIGTERM, "running"),
                                           (signal.SIGINT, "running"),
                                           (signal.SIGTERM, "starting")])
async def test_signal_with_nats_down_exits_0_within_graceful_timeout(
    own_nats: EmbeddedNats, venv_bin: Path, tmp_path: Path, sig: signal.Signals, when: str
) -> None:
    """SIGTERM or SIGINT while NATS is down (after the start, or while the daemon still
    waits for its first connection) exits 0, without a traceback, within graceful_timeout."""
    db, port, grace = tmp_path / "registry.db", free_port(), 10
    daemon = subprocess_daemon(venv_bin, own_nats.url, db, tmp_path, port,
                               ASSETD_GRACEFUL_TIMEOUT=str(grace))
    if when == "starting":
        own_nats.stop()
    daemon.start()
    try:
        if when == "running":
            await until(lambda: ready_200(port), 60, "daemon ready")
            pub = Publisher(own_nats.url, 50)
            await pub.run()
            await until(lambda: applied(db) >= 50, 60, "applied")
            own_nats.stop()
            await until(lambda: _answers_503(port), 30, "not ready (NATS down)")
        await asyncio.sleep(3)  # the loops notice and back off; or the start waits for NATS
        assert daemon.proc is not None
        daemon.proc.send_signal(sig)
        rc = await asyncio.to_thread(daemon.proc.wait, grace + 10)  # + process start/exit
        log = daemon.tail(50_000)
        assert rc == 0, log
        assert "Traceback" not in log, log
    finally:
        daemon.stop()


async def _answers_503(port: int) -> bool:
    return (await readyz(port))[0] == 503


# --- (g) a read-only SQLite registry ---------------------------------------------------------


async def test_read_only_sqlite_is_not_ready_and_recovers_without_dead_letters(
    nc: Any, js: Any, nats_server: EmbeddedNats, venv_bin: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The registry file is read-only when the daemon (an unprivileged user) starts:
    /readyz is 503, events are nak'd past max_deliver without being dead-lettered; once
    the file is writable again they are all applied, without a restart."""
    data = Path(tempfile.mkdtemp(prefix="assetd-readonly-"))
    os.chown(data, 65534, 65534)
    db, port = data / "registry.db", free_port()
    env = {"ASSETD_MAX_DELIVER": "3", "ASSETD_NAK_DELAY": "0.1"}
    daemon = subprocess_daemon(venv_bin, nats_server.url, db, data, port, **env)
    daemon.cmd = as_nobody(daemon.cmd)
    pub = Publisher(nats_server.url, 300)
    try:
        daemon.start()  # creates the registry as that user, then stops
        await until(lambda: ready_200(port), 60, "first start ready")
        await publish_seqs(nats_server.url, pub, range(100))
        await until(lambda: applied(db) >= 100, 60, "first 100 applied")
        assert daemon.stop() == 0, daemon.tail()
        db.chmod(0o444)
        daemon.start()
        await until(lambda: _answers_503(port), 60, "daemon up, not ready")
        _, body = await readyz(port)
        assert body["checks"]["database"] is False, body
        await publish_seqs(nats_server.url, pub, range(100, 300))
        await until(_delivered_times(js, 200, 5), 60, "delivered past max_deliver (3)")
        assert await stream_messages(js, "ASSETD_DLQ") == [], "nothing dead-lettered"
        assert applied(db) == 100
        db.chmod(0o644)
        await until(lambda: applied(db) >= 300, 120, "applied once writable")
        await until(lambda: ready_200(port), 30, "/readyz 200 again")
        dead = await dead_lettered(js)
        assert dead == set()
        check_exactly_once(registry_ledger(db), pub.acked, dead)
        assert daemon.proc is not None and daemon.proc.poll() is None, "no restart needed"
        tally = counts("read-only SQLite", pub, db, dead)
    except AssertionError as exc:  # what the daemon saw is the diagnosis
        raise AssertionError(f"{exc}\n--- daemon log ---\n{daemon.tail(8000)}") from None
    finally:
        rc, log = daemon.stop(), daemon.tail()
        shutil.rmtree(data, ignore_errors=True)
    with capsys.disabled():
        print(tally)
    assert rc == 0, log


def _delivered_times(js: Any, n: int, times: int) -> Any:
    """The ``n`` unacknowledged messages were delivered ``times`` times each (on average:
    they travel in one batch) — past ``max_deliver`` when ``times`` exceeds it."""
    async def check() -> bool:
        info = await js.consumer_info("ASSETD_IN", "assetd")
        unacked = info.num_ack_pending + info.num_pending
        deliveries = info.delivered.consumer_seq - info.ack_floor.consumer_seq
        return bool(unacked == n and deliveries >= n * times)

    return check


# --- the scheduler -----------------------------------------------------------------------------


async def test_scheduler_job_that_raises_is_logged_and_a_dead_scheduler_restarted(
    nc: Any, nats_server: EmbeddedNats, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """APScheduler stopping by itself is restarted; a job that raises is logged and keeps
    the scheduler loop failing (/readyz 503) until it runs cleanly again."""
    from assetd.daemon import scheduler as scheduler_module

    logs = LogRecorder()
    monkeypatch.setattr(scheduler_module, "log", logs)
    settings = daemon_settings(nats_server.url, f"sqlite:///{tmp_path / 'r.db'}", tmp_path,
                               rules_poll_interval=0.2)
    async with running_daemon(settings) as d:
        failing = True

        def check_rules() -> None:
            if failing:
                raise OSError("rules file unreadable")

        d.scheduler.check_rules = check_rules
        first = await until(lambda: d.scheduler._aps, 15, "scheduler running")
        first.shutdown(wait=False)  # "dies"; the restarted one runs the patched job
        await until(lambda: d.scheduler._aps is not first, 15, "scheduler restarted")
        await until(lambda: d.supervisor.loops["scheduler"].state == "failing", 15, "failing")
        assert "rules file unreadable" in (d.supervisor.loops["scheduler"].error or "")
        assert (await d.ready())["loops"] is False
        assert [e for level, e, _ in logs.lines if level == "error"] == ["scheduled job raised"]
        failing = False
        await until(lambda: d.supervisor.loops["scheduler"].state == "running", 15, "running")
        assert d.supervisor.loops["scheduler"].restarts == 1
        assert (await d.ready())["loops"] is True


async def test_whole_batch_failure_on_a_writable_database_still_dead_letters(
    nc: Any, js: Any, nats_server: EmbeddedNats, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A batch that fails as a whole while the database takes writes (a bug, not the
    infrastructure) is still dead-lettered after max_deliver attempts, with its error."""
    from assetd.handlers import inbound

    def broken(*_: Any, **__: Any) -> Any:
        raise RuntimeError("a bug outside any savepoint")

    monkeypatch.setattr(inbound, "apply_batch", broken)
    db = tmp_path / "r.db"
    settings = daemon_settings(nats_server.url, f"sqlite:///{db}", tmp_path, max_deliver=3)
    async with running_daemon(settings):
        pub = Publisher(nats_server.url, 5)
        await pub.run()
        dead = await until(lambda: _all_dead(js, 5), 60, "all five dead-lettered")
    assert dead == pub.acked == set(range(5))
    reasons = {m.headers["Assetd-Reason"] for m in await stream_messages(js, "ASSETD_DLQ")}
    assert reasons == {"failed 3 times; last error: RuntimeError: a bug outside any savepoint"}


async def _all_dead(js: Any, n: int) -> set[int] | None:
    dead = await dead_lettered(js)
    return dead if len(dead) >= n else None
