"""The multi-row inserts on the driver (``registry/bulk.py``: SQLite's ``VALUES`` lists,
PostgreSQL's ``unnest`` of one array per column) store exactly what SQLAlchemy's own
``executemany`` stores, byte for byte, and return what RETURNING returns."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import Engine, event, insert, text
from sqlalchemy.exc import IntegrityError

from assetd.registry import bulk, repo
from assetd.registry.engine import make_engine
from assetd.registry.migrate import upgrade
from assetd.registry.tables import EDGE, EVENT_OUTCOME, INBOX, INSTANCE, OUTBOX


def _registry(url: str) -> Engine:
    upgrade(url)
    return make_engine(url)


def _instances(n: int) -> list[dict[str, Any]]:
    now = datetime.now(UTC)
    elsewhere = datetime(2026, 3, 1, 23, 30, 0, 5, tzinfo=timezone(timedelta(hours=-5)))
    return [{
        "id": i + 1, "project": "p", "branch": "main", "asset": f"a{i % 3}", "version": i + 1,
        "kind": "model", "state": "ready", "validity": "valid",
        "annotations": {"f1": 0.5 + i, "big": 2 ** 62, "nested": {"l": [1, None, "ü"]}},
        "tags": {"run": str(i), "emoji": "\N{ROCKET}"}, "reference": {},
        "producer": "flow/1", "event_id": f"e{i}",
        "created_at": now, "updated_at": elsewhere if i % 2 else now,
    } for i in range(n)]


def _raw(engine: Engine, table: str) -> list[Any]:
    """Every row as the database stores it: SQLite's values, PostgreSQL's text of the row."""
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            sql = f"SELECT {table}::text FROM {table} ORDER BY id"
        else:
            sql = f"SELECT * FROM {table} ORDER BY 1"
        return [tuple(r) for r in conn.exec_driver_sql(sql)]


def _empty(engine: Engine, *tables: str) -> None:
    """Delete every row; the next ids start at 1 again."""
    with engine.begin() as conn:
        for table in tables:
            if engine.dialect.name == "postgresql":
                conn.exec_driver_sql(f"TRUNCATE {table} RESTART IDENTITY CASCADE")
            else:
                conn.exec_driver_sql(f"DELETE FROM {table}")


def test_rows_are_stored_as_sqlalchemy_stores_them(db_url: str) -> None:
    engine = _registry(db_url)
    rows = _instances(2_000)  # 15 columns: several statements under SQLite's variable limit
    edges = [{"project": "p", "relation": "input", "upstream_id": 1, "downstream_id": i,
              "consumer": None, "consumer_info": None if i % 2 else {"k": "v"},
              "event_id": f"e{i}", "created_at": rows[0]["created_at"]} for i in range(2, 40)]
    with engine.begin() as conn:
        bulk.insert(conn, INSTANCE, rows)
        bulk.insert(conn, EDGE, edges)
    ours = _raw(engine, "instance"), _raw(engine, "lineage_edge")
    with engine.connect() as conn:  # and they read back as the same values
        back = conn.execute(INSTANCE.select().where(INSTANCE.c.id == 2)).one()
    assert back.updated_at == rows[1]["updated_at"] and back.tags == rows[1]["tags"]
    assert back.annotations == rows[1]["annotations"]
    _empty(engine, "lineage_edge", "instance")
    with engine.begin() as conn:
        conn.execute(insert(INSTANCE), rows)
        conn.execute(insert(EDGE), edges)
    theirs = _raw(engine, "instance"), _raw(engine, "lineage_edge")
    assert len(ours[0]) == 2_000 and len(ours[1]) == 38
    assert ours == theirs


def test_returning_and_on_conflict_through_the_outbox(db_url: str) -> None:
    engine = _registry(db_url)
    now = datetime.now(UTC)
    rows = [{"id": f"o{i}", "subject": f"s.{i}", "payload": b"\x00{}" + bytes([i % 256]),
             "created_at": now} for i in range(5_000)]
    with engine.begin() as conn:
        first = repo.outbox_add(conn, rows=rows[:3_000])
        again = repo.outbox_add(conn, rows=rows[2_000:])  # 1,000 queued before: left out
    assert [r[1] for r in first] == [f"o{i}" for i in range(3_000)]
    assert [r[1] for r in again] == [f"o{i}" for i in range(3_000, 5_000)]
    seqs = [r[0] for r in first + again]  # in order (PostgreSQL's sequence skips a conflict's)
    assert seqs == sorted(set(seqs)) and len(seqs) == 5_000
    with engine.connect() as conn:
        stored = conn.execute(OUTBOX.select().order_by(OUTBOX.c.seq)).all()
    assert [(r.id, r.payload) for r in stored] == [(r["id"], r["payload"]) for r in rows]


def test_the_inbox_claim_returns_only_the_ids_that_went_in(db_url: str) -> None:
    engine = _registry(db_url)
    now = datetime.now(UTC)

    def rows(*ids: str) -> list[dict[str, Any]]:
        return [{"project": "p", "event_id": i, "type": "asset_registered", "applied_at": now}
                for i in ids]

    with engine.begin() as conn:
        assert repo.inbox_claim(conn, rows=rows("a", "b")) == {("p", "a"), ("p", "b")}
        assert repo.inbox_claim(conn, rows=rows("b", "c")) == {("p", "c")}
    with engine.connect() as conn:
        stored = {(r.event_id, r.applied_at) for r in conn.execute(INBOX.select())}
    assert stored == {("a", now), ("b", now), ("c", now)}


def test_an_applied_outcome_is_kept_and_a_rejected_one_replaced(db_url: str) -> None:
    engine = _registry(db_url)
    now = datetime.now(UTC)

    def row(eid: str, status: str, n: int) -> dict[str, Any]:
        return {"project": "p", "event_id": eid, "type": "asset_registered", "status": status,
                "outcome": {"n": n}, "seq": n, "recorded_at": now}

    with engine.begin() as conn:
        repo.outcomes_add(conn, rows=[row("a", "applied", 1), row("r", "rejected", 2)])
        repo.outcomes_add(conn, rows=[row("a", "rejected", 3), row("r", "applied", 4)])
    with engine.connect() as conn:
        got = {r.event_id: (r.status, r.outcome, r.seq)
               for r in conn.execute(EVENT_OUTCOME.select())}
    assert got == {"a": ("applied", {"n": 1}, 1), "r": ("applied", {"n": 4}, 4)}


def test_a_missing_column_is_an_error_not_a_default(db_url: str) -> None:
    engine = _registry(db_url)
    rows = _instances(2)
    del rows[1]["tags"]
    with engine.begin() as conn:
        try:
            bulk.insert(conn, INSTANCE, rows)
        except KeyError as exc:
            assert "tags" in str(exc)
        else:
            raise AssertionError("a row without a column went in")
        conn.execute(text("SELECT 1"))


def test_a_statement_on_the_driver_fails_as_sqlalchemys_would(db_url: str) -> None:
    """``driver.execute``: the error raised is SQLAlchemy's wrapper (what ``database_fault``
    and every ``except SQLAlchemyError`` read), the ``handle_error`` hooks run, and cursor
    listeners (statement counts, instrumentation) see the statement."""
    engine = _registry(db_url)
    now = datetime.now(UTC)
    row = {"project": "p", "event_id": "a", "type": "asset_registered", "applied_at": now}
    handled: list[Any] = []
    executed: list[str] = []
    event.listen(engine, "handle_error", lambda ctx: handled.append(ctx.original_exception))
    event.listen(engine, "before_cursor_execute",
                 lambda _c, _cur, sql, *_: executed.append(sql.split()[0]))
    with engine.begin() as conn:
        bulk.insert(conn, INBOX, [row])
    with pytest.raises(IntegrityError) as caught, engine.begin() as conn:
        bulk.insert(conn, INBOX, [row])  # the same key again
    assert handled == [caught.value.orig]
    assert executed.count("INSERT") == 2
    with engine.connect() as conn:  # the pool's connection still works
        assert conn.execute(text("SELECT count(*) FROM inbox")).scalar() == 1


def test_marks_store_the_time_as_sqlalchemy_stores_it(db_url: str) -> None:
    engine = _registry(db_url)
    now = datetime.now(UTC)
    rows = [{"id": f"o{i}", "subject": "s", "payload": b"x", "created_at": now}
            for i in range(3)]
    with engine.begin() as conn:
        seqs = [r[0] for r in repo.outbox_add(conn, rows=rows)]
        repo.outbox_mark_published(conn, seqs=seqs[:2], now=now)
    with engine.connect() as conn:
        marked = [r.published_at for r in conn.execute(OUTBOX.select().order_by(OUTBOX.c.seq))]
        assert repo.outbox_pending(conn, limit=10)[0][1] == "o2"
    assert marked == [now, now, None]
