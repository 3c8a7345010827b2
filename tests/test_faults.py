"""Delivery under faults, with the daemon as a subprocess and a real nats-server.

Counted like Jepsen: lost = acknowledged publishes neither applied nor dead-lettered.
No test asserts a timing; each waits for a condition with a bound.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import orjson
import pytest

from assetd.daemon.embedded import EmbeddedNats
from tests.conftest import running_nats
from tests.faults import (
    DaemonProcess,
    Publisher,
    applied,
    check_exactly_once,
    dead_lettered,
    registry_ledger,
    until,
)
from tests.helpers import envelope, out_events, stream_messages

pytestmark = pytest.mark.slow


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "registry.db"


def make_daemon(venv_bin: Path, url: str, db: Path, tmp: Path, **env: str) -> DaemonProcess:
    return DaemonProcess(venv_bin, {"ASSETD_NATS_URL": url, "ASSETD_DB_URL": f"sqlite:///{db}",
                                    "ASSETD_DATA_DIR": str(tmp / "state"),
                                    "ASSETD_LOG_LEVEL": "WARNING", **env}, tmp / "daemon.log")


async def applied_count(db: Path) -> int:
    return applied(db)


async def test_kill_9_three_times_loses_and_repeats_nothing(
    nc: Any, js: Any, nats_server: EmbeddedNats, venv_bin: Path, db_path: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """3,000 registrations while the daemon is SIGKILLed three times at random moments."""
    daemon = make_daemon(venv_bin, nats_server.url, db_path, tmp_path,
                         ASSETD_BATCH_SIZE="100", ASSETD_ACK_WAIT="3")
    daemon.start()
    pub = Publisher(nats_server.url, 3000)
    publishing = asyncio.create_task(pub.run(window=50))
    rng = random.Random(20261122)
    killed_at = []
    try:
        for threshold in (400, 1300, 2200):  # three random points spread over the stream
            point = threshold + rng.randrange(300)
            await until(lambda p=point: _all_applied(db_path, p), 60, f"{point} applied")
            daemon.kill9()
            killed_at.append(await applied_count(db_path))
            daemon.start()
        await asyncio.wait_for(publishing, 120)
        await until(lambda: _all_applied(db_path, 3000), 120, "all 3000 applied")
        check_exactly_once(registry_ledger(db_path), pub.acked, await dead_lettered(js))
        created = await until(lambda: _n_created(js, 3000), 60, "3000 instance_created")
        assert len({e["id"] for e in created}) == len(created) == 3000, "outbound ids unique"
    finally:
        daemon.stop()
    with capsys.disabled():
        print(f"\nkill -9 x3 at {killed_at} applied: {len(pub.acked)} publishes acked "
              f"({pub.attempts} attempts), daemon started {daemon.starts} times, "
              "all applied once")


async def _all_applied(db: Path, n: int) -> bool:
    return await applied_count(db) >= n


async def _n_created(js: Any, n: int) -> list[dict[str, Any]] | None:
    events = await out_events(js, "instance_created")
    return events if len(events) >= n else None


@pytest.fixture
def own_nats() -> Iterator[EmbeddedNats]:
    """A nats-server of this test alone, to stop and restart on the same port and store."""
    with running_nats("assetd-fault-nats-") as server:
        yield server


async def test_nats_server_restart_mid_stream(own_nats: EmbeddedNats, venv_bin: Path,
                                              db_path: Path, tmp_path: Path) -> None:
    """nats-server stopped for 5 s and restarted (same store): the daemon reconnects by
    itself and every acknowledged registration is applied once."""
    daemon = make_daemon(venv_bin, own_nats.url, db_path, tmp_path)
    daemon.start()
    pub = Publisher(own_nats.url, 2000)
    try:
        await until(_streams_ready(own_nats.url), 60, "daemon declared its streams")
        publishing = asyncio.create_task(pub.run(window=20))
        await until(lambda: applied_count(db_path), 60, "daemon applying")
        own_nats.stop()
        await asyncio.sleep(5)  # the outage itself
        own_nats.start()
        await asyncio.wait_for(publishing, 120)
        await until(lambda: _all_applied(db_path, 2000), 120, "all applied after restart")
        nc = await nats.connect(own_nats.url)
        try:
            js = nc.jetstream()
            check_exactly_once(registry_ledger(db_path), pub.acked, await dead_lettered(js))
            await until(lambda: _n_created(js, 2000), 60, "relay resumed")
        finally:
            await nc.close()
        assert daemon.proc is not None and daemon.proc.poll() is None, "no restart needed"
    finally:
        assert daemon.stop() == 0, daemon.tail()


def _streams_ready(url: str) -> Any:
    async def check() -> bool:
        try:
            nc = await nats.connect(url, max_reconnect_attempts=0)
        except Exception:
            return False
        try:
            await nc.jetstream().consumer_info("ASSETD_IN", "assetd")
            return True
        except Exception:
            return False
        finally:
            await nc.close()

    return check


async def test_database_lock_longer_than_busy_timeout(
    nc: Any, js: Any, nats_server: EmbeddedNats, venv_bin: Path, db_path: Path, tmp_path: Path
) -> None:
    """Another process holds the SQLite write lock past the busy timeout: messages are
    nak'd, then applied once after release; none is dead-lettered."""
    daemon = make_daemon(venv_bin, nats_server.url, db_path, tmp_path,
                         ASSETD_DB_BUSY_TIMEOUT_MS="300", ASSETD_NAK_DELAY="0.2")
    daemon.start()
    try:
        await until(_streams_ready(nats_server.url), 60, "daemon up")
        first = Publisher(nats_server.url, 10)
        await first.run()
        await until(lambda: _all_applied(db_path, 10), 60, "warm-up applied")
        blocker = sqlite3.connect(db_path, timeout=10, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")  # held by this process, not the daemon
        try:
            more = Publisher(nats_server.url, 300)
            more.acked = set()
            for seq in range(10, 310):  # continue the sequence
                subject, body, eid = more.event(seq)
                await js.publish(subject, body, headers={"Nats-Msg-Id": eid})
            await until(_naked(js), 60, "naks while locked")
            assert await applied_count(db_path) == 10
        finally:
            blocker.execute("COMMIT")
            blocker.close()
        await until(lambda: _all_applied(db_path, 310), 120, "applied after release")
        check_exactly_once(registry_ledger(db_path), set(range(310)), set())
        assert await dead_lettered(js) == set() and await stream_messages(js, "ASSETD_DLQ") == []
    finally:
        daemon.stop()


def _naked(js: Any) -> Any:
    async def check() -> bool:
        info = await js.consumer_info("ASSETD_IN", "assetd")
        return bool(info.num_redelivered > 0)

    return check


async def test_poison_message_is_dead_lettered_after_max_deliver(
    nc: Any, js: Any, nats_server: EmbeddedNats, venv_bin: Path, db_path: Path, tmp_path: Path
) -> None:
    """A message whose processing always raises goes to the DLQ after max_deliver attempts
    with the last error; the messages around it are applied."""
    daemon = make_daemon(venv_bin, nats_server.url, db_path, tmp_path,
                         ASSETD_MAX_DELIVER="3", ASSETD_NAK_DELAY="0.1")
    daemon.start()
    try:
        await until(_streams_ready(nats_server.url), 60, "daemon up")
        await until(lambda: _has_table(db_path), 30, "migrated")
        conn = sqlite3.connect(db_path, timeout=10)
        conn.execute("CREATE TRIGGER poison BEFORE INSERT ON instance WHEN NEW.asset = 'poison' "
                     "BEGIN SELECT RAISE(ABORT, 'poison pill'); END")
        conn.commit()
        conn.close()
        events = [envelope("asset_registered", a, {"kind": "data"})
                  for a in ("ok1", "poison", "ok2")]
        for ev in events:
            await js.publish(f"assetd.in.fraud.main.{ev['subject']}.asset_registered",
                             orjson.dumps(ev), headers={"Nats-Msg-Id": ev["id"]})
        dlq = await until(lambda: stream_messages(js, "ASSETD_DLQ"), 60, "poison dead-lettered")
        assert [m.headers["Assetd-Event-Id"] for m in dlq] == [events[1]["id"]]
        reason = dlq[0].headers["Assetd-Reason"]
        assert reason.startswith("failed 3 times; last error: IntegrityError") and \
            "poison pill" in reason
        later = envelope("asset_registered", "ok3", {"kind": "data"})
        await js.publish("assetd.in.fraud.main.ok3.asset_registered", orjson.dumps(later))
        await until(lambda: _all_applied(db_path, 3), 60, "neighbours and later applied")
        rejected = await until(lambda: out_events(js, "event_rejected"), 30, "event_rejected")
        assert rejected[0]["data"]["event_id"] == events[1]["id"]
        info = await js.consumer_info("ASSETD_IN", "assetd")
        assert info.num_ack_pending == 0 and info.num_pending == 0, "nothing loops"
    finally:
        daemon.stop()


async def _has_table(db: Path) -> bool:
    try:
        conn = sqlite3.connect(db)
        try:
            return conn.execute("SELECT 1 FROM sqlite_master WHERE name='instance'").fetchone() \
                is not None
        finally:
            conn.close()
    except sqlite3.Error:
        return False


async def test_republish_after_the_dedup_window_has_no_effect(
    nc: Any, js: Any, nats_server: EmbeddedNats, venv_bin: Path, db_path: Path, tmp_path: Path
) -> None:
    """The same id an hour later (simulated: no Nats-Msg-Id, so JetStream cannot dedupe)
    is acknowledged by the daemon's inbox and changes nothing."""
    daemon = make_daemon(venv_bin, nats_server.url, db_path, tmp_path)
    daemon.start()
    try:
        await until(_streams_ready(nats_server.url), 60, "daemon up")
        ev = envelope("asset_registered", "once", {"kind": "data"}, event_id="flow/1/step/2")
        await js.publish("assetd.in.fraud.main.once.asset_registered", orjson.dumps(ev),
                         headers={"Nats-Msg-Id": ev["id"]})
        await until(lambda: _all_applied(db_path, 1), 60, "first applied")
        daemon.stop()  # "an hour later", with a restarted daemon
        daemon.start()
        await js.publish("assetd.in.fraud.main.once.asset_registered", orjson.dumps(ev))
        marker = envelope("asset_registered", "marker", {"kind": "data"})
        await js.publish("assetd.in.fraud.main.marker.asset_registered", orjson.dumps(marker))
        await until(lambda: _all_applied(db_path, 2), 60, "marker applied")
        assert registry_ledger(db_path).keys() == {"once", "marker"}
        assert [v for v, _ in registry_ledger(db_path)["once"]] == [1]
    finally:
        daemon.stop()


async def test_sigterm_finishes_the_batch_and_exits_0(
    nc: Any, js: Any, nats_server: EmbeddedNats, venv_bin: Path, db_path: Path, tmp_path: Path
) -> None:
    """SIGTERM mid-stream: exit 0; every acked batch committed, the rest redelivered: what
    was fetched ahead and never handed over is nak'd, so the next start gets it at once, not
    after ``ack_wait`` (60 s here)."""
    daemon = make_daemon(venv_bin, nats_server.url, db_path, tmp_path,
                         ASSETD_GRACEFUL_TIMEOUT="20", ASSETD_ACK_WAIT="60")
    daemon.start()
    await until(_streams_ready(nats_server.url), 60, "daemon up")
    pub = Publisher(nats_server.url, 1500)
    await pub.run()
    await until(lambda: applied_count(db_path), 60, "applying")
    assert daemon.stop() == 0, daemon.tail()
    info = await js.consumer_info("ASSETD_IN", "assetd")
    done = await applied_count(db_path)
    # acked = applied: the rest waits in the stream, or was nak'd (a nak'd message stays
    # "ack pending" until a consumer pulls again); a committed batch left unacked would
    # count twice
    assert info.num_pending + info.num_ack_pending == 1500 - done, "unacked = not applied"
    outbox = sqlite3.connect(db_path)
    unpublished = outbox.execute("SELECT count(*) FROM outbox WHERE published_at IS NULL")
    assert unpublished.fetchone()[0] == 0, "outbox flushed before exit"
    outbox.close()
    daemon.start()
    try:
        await until(lambda: _all_applied(db_path, 1500), 30, "rest applied after restart, "
                    "before ack_wait")
        check_exactly_once(registry_ledger(db_path), pub.acked, set())
    finally:
        daemon.stop()
