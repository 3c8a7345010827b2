"""A batch that fails because of the database is never blamed on its events.

The batch's own error decides first: once the failed connection is dropped, a write probe
on a fresh connection can succeed (a read-only file made writable again, a lock released),
and events already past ``max_deliver`` would then be dead-lettered for the database's
fault. Unit level (a real SQLite registry, fake JetStream messages); the whole story with a
real daemon and a read-only file is tests/test_supervision.py (g).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from sqlalchemy.exc import OperationalError

import assetd.handlers.inbound as inbound
from assetd.config import Settings
from assetd.registry.engine import database_fault, make_engine
from assetd.registry.migrate import upgrade
from assetd.schemas import wire
from tests.helpers import envelope


@dataclass
class FakeMsg:
    subject: str
    data: bytes
    delivered: int
    seq: int
    headers: dict[str, str] = field(default_factory=dict)
    acked: bool = False
    naks: list[float] = field(default_factory=list)

    @property
    def metadata(self) -> Any:
        return SimpleNamespace(num_delivered=self.delivered, timestamp=datetime.now(UTC),
                               sequence=SimpleNamespace(stream=self.seq))

    @property
    def reply(self) -> str:  # what the daemon reads both numbers from (pull.delivery)
        return f"$JS.ACK.ASSETD_IN.assetd.{self.delivered}.{self.seq}.{self.seq}.0.0"

    async def ack(self) -> None:
        self.acked = True

    async def nak(self, delay: float = 0) -> None:
        self.naks.append(delay)


class FakeJs:
    def __init__(self) -> None:
        self.published: list[str] = []

    async def publish(self, subject: str, payload: bytes, **_kw: Any) -> None:
        self.published.append(subject)


def _sqlite_error(text: str) -> OperationalError:
    return OperationalError("INSERT ...", {}, sqlite3.OperationalError(text))


def _msgs(n: int, delivered: int) -> list[FakeMsg]:
    out = []
    for i in range(n):
        ev = envelope("asset_registered", f"m{i}", {"kind": "model", "uri": f"s3://b/{i}"})
        out.append(FakeMsg(wire.in_subject("assetd", "fraud", "main", ev["subject"], ev["type"]),
                           orjson.dumps(ev), delivered, i + 1))
    return out


async def _run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: OperationalError,
               ) -> tuple[list[FakeMsg], FakeJs]:
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    upgrade(url)
    engine = make_engine(url)
    settings = Settings(db_url=url, data_dir=tmp_path, max_deliver=3, nak_delay=0.1)
    js = FakeJs()
    ingest = inbound.Ingest(engine=engine, settings=settings, js=lambda: js,
                            on_committed=lambda: None)

    def failing(*_a: Any, **_kw: Any) -> Any:
        raise error

    monkeypatch.setattr(inbound, "apply_batch", failing)
    msgs = _msgs(5, delivered=4)  # past max_deliver (3)
    try:
        await ingest.handle(msgs)
    finally:
        engine.dispose()
    return msgs, js


@pytest.mark.parametrize("text", ["attempt to write a readonly database", "database is locked",
                                  "disk I/O error", "database or disk is full"])
async def test_database_faults_are_nakd_never_dead_lettered(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    """The probe afterwards finds the database writable; the batch is still not blamed."""
    msgs, js = await _run(tmp_path, monkeypatch, _sqlite_error(text))
    assert js.published == [], "nothing dead-lettered, no event_rejected"
    assert [m.acked for m in msgs] == [False] * 5
    assert all(len(m.naks) == 1 and m.naks[0] > 0 for m in msgs)


async def test_other_batch_failures_still_end_in_the_dlq(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An error that is not the database's (here a statement SQLite cannot run) on events
    out of attempts dead-letters them with the error: nothing loops for ever."""
    msgs, js = await _run(tmp_path, monkeypatch, _sqlite_error("no such column: bogus"))
    assert all(m.acked for m in msgs)
    assert sorted(js.published) == sorted(
        [f"assetd.dlq.fraud.main.m{i}.asset_registered" for i in range(5)]
        + [f"assetd.out.fraud.main.m{i}.event_rejected" for i in range(5)])


def test_database_fault_reads_the_error() -> None:
    assert database_fault(_sqlite_error("attempt to write a readonly database"))
    assert database_fault(_sqlite_error("no such table: instance")) is None
    assert database_fault(ValueError("x")) is None
