"""Pieces of the ingest hot path made cheaper (issue 13) still say exactly what they said."""

from __future__ import annotations

import random
import string
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import Engine, event, func, insert, select

from assetd.daemon.relay import Marks, OutboxRelay
from assetd.daemon.supervisor import Supervisor
from assetd.errors import RejectedError
from assetd.handlers.batch import Received, apply_batch
from assetd.handlers.decode import decode
from assetd.handlers.tx import _NS, outbound_id
from assetd.registry.engine import make_engine
from assetd.registry.migrate import upgrade
from assetd.registry.tables import EDGE, INBOX, INSTANCE, OUTBOX
from assetd.schemas import wire
from assetd.schemas.inbound import AssetDefined, AssetRegistered
from assetd.schemas.limits import Limits
from assetd.schemas.outbound import InstanceCreated


def test_outbound_id_is_uuid5_of_its_name() -> None:
    rng = random.Random(13)
    alphabet = string.printable + "éü漢\x1f"
    for _ in range(2000):
        parts = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
                 for _ in range(5)]
        assert outbound_id(*parts) == str(uuid.uuid5(_NS, "\x1f".join(parts)))


def test_limits_still_see_every_map_and_the_inputs() -> None:
    limits = Limits(max_map_keys=1, max_value_chars=3, max_inputs=0)
    reg = AssetRegistered.model_validate({
        "kind": "model", "annotations": {"a": 1, "b": 2}, "tags": {"t": "long"},
        "inputs": [{"asset": "x", "instance": "latest"}]})
    over = limits.violations(reg)
    assert any(m.startswith("annotations has 2 keys") for m in over)
    assert any(m.startswith("tags.t is 4 characters") for m in over)
    assert any(m.startswith("inputs has 1 entries") for m in over)
    defined = AssetDefined.model_validate({"kind": "model", "properties": {"p": "long"}})
    assert limits.violations(defined) == ["properties.p is 4 characters; the limit is 3"]
    assert limits.violations({"annotations": {}}) == []  # not a model: nothing to check


def test_a_payload_within_safe_size_cannot_exceed_a_limit() -> None:
    """The smallest data that exceeds each limit makes a payload over ``safe_size`` (so
    decode, which skips the check at or under it, still refuses it), at the defaults and at
    tight limits; the shortest keys and values the schema takes are the cheapest there are."""
    subject = wire.in_subject("assetd", "p", "main", "m", "asset_registered")
    for limits in (Limits(), Limits(max_map_keys=2, max_value_chars=40, max_inputs=1),
                   Limits(max_map_keys=50, max_value_chars=1, max_inputs=3)):
        over: list[dict[str, Any]] = [
            {"annotations": {f"{i:x}": 0 for i in range(limits.max_map_keys + 1)}},
            {"tags": {"t": "a" * (limits.max_value_chars + 1)}},
            {"inputs": [{"asset": "a"}] * (limits.max_inputs + 1)},
        ]
        for data in over:
            payload = orjson.dumps({"specversion": "1.0", "id": "e1", "source": "s",
                                    "type": "asset_registered", "subject": "m",
                                    "project": "p", "data": {"kind": "model", **data}})
            assert len(orjson.dumps(data)) > limits.safe_size, (limits, data)
            with pytest.raises(RejectedError, match="limit exceeded"):
                decode(subject, payload, prefix="assetd", max_bytes=10**7, limits=limits)


def test_marks_skip_published_rows_until_written_and_requeue_on_failure() -> None:
    marks = Marks()
    marks.published([1, 2])
    taken = marks.take()
    assert taken == [1, 2] and marks.queued == [] and marks.unmarked == {1, 2}
    marks.failed(taken)  # the batch that carried them rolled back
    assert marks.queued == [1, 2] and marks.unmarked == {1, 2}
    marks.written(marks.take())
    assert marks.unmarked == set() and marks.queued == []


def _registry(tmp_path: Path) -> Engine:
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    upgrade(url)
    return make_engine(url)


def _registration(asset: str, *, kind: str = "model",
                  inputs: list[dict[str, str]] | None = None, eid: str | None = None,
                  **data: Any) -> Received:
    subject = wire.in_subject("assetd", "p", "main", asset, "asset_registered")
    payload = orjson.dumps({
        "specversion": "1.0", "id": eid or str(uuid.uuid4()), "source": "t",
        "type": "asset_registered", "subject": asset, "project": "p",
        "data": {"kind": kind, "inputs": inputs or [], **data}})
    rec = Received(tokens=wire.parse_in(subject, "assetd"), seq=1, delivered=1)
    rec.item = decode(subject, payload, prefix="assetd", max_bytes=1 << 20)
    return rec


def _instances(engine: Engine) -> list[tuple[int, str, int]]:
    with engine.connect() as conn:
        return [(r.id, r.asset, r.version) for r in conn.execute(
            select(INSTANCE).order_by(INSTANCE.c.id))]


def _engine(url: str) -> Engine:
    upgrade(url)
    return make_engine(url)


def test_an_optimistic_batch_gives_the_ids_and_edges_one_by_one_would(db_url: str) -> None:
    """Without savepoints, new instances go in together with the ids one by one would have
    given them (SQLite: the highest + 1; PostgreSQL: the id sequence's next ones, taken in
    one round trip); an input registered earlier in the same batch resolves to its row."""
    engine = _engine(db_url)
    apply_batch(engine, [_registration("a")], prefix="assetd", max_deliver=5)
    batch = [_registration("a"), _registration("b"),
             _registration("c", inputs=[{"asset": "a", "instance": "v2"}]),
             _registration("a")]
    written: list[tuple[int, str, str, bytes]] = []
    inserts: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO INSTANCE"):
            inserts.append(statement)

    event.listen(engine, "before_cursor_execute", seen)
    apply_batch(engine, batch, prefix="assetd", max_deliver=5, written=written)
    event.remove(engine, "before_cursor_execute", seen)
    assert [r.outcome for r in batch] == ["applied"] * 4
    # a and b together (c's input may be one of them, so they go in first), then c and a
    assert len(inserts) == 2, inserts
    assert _instances(engine) == [(1, "a", 1), (2, "a", 2), (3, "b", 1), (4, "c", 1),
                                  (5, "a", 3)]
    with engine.connect() as conn:
        edges = [(e.upstream_id, e.downstream_id) for e in conn.execute(select(EDGE))]
        outbox = [(r.seq, r.id) for r in conn.execute(select(OUTBOX).order_by(OUTBOX.c.seq))]
    assert edges == [(2, 4)]
    assert [(seq, oid) for seq, oid, _, _ in written] == outbox[1:], "the rows it committed"
    engine.dispose()


def test_instance_created_is_byte_for_byte_what_its_model_dumps(db_url: str) -> None:
    """The registration's ``instance_created`` is built as a plain dict (no second
    validation): the same JSON, key order included, as ``InstanceCreated`` dumps, both for a
    registration and for a promotion's copy to another branch."""
    engine = _engine(db_url)
    batch = [_registration("a", annotations={"f1": 0.5, "n": 3, "ok": True, "none": None,
                                             "s": "é漢"},
                           tags={"run": "1"}, reference={"uri": "s3://b/k", "blobs": ["x"]}),
             _registration("b", inputs=[{"asset": "a", "instance": "latest"}],
                           state="pending")]
    copy = f"""{{"specversion": "1.0", "id": "{uuid.uuid4()}", "source": "t",
        "type": "promotion_requested", "subject": "a", "project": "p",
        "data": {{"instance": "v1", "to_branch": "staging", "reason": "r"}}}}""".encode()
    subject = wire.in_subject("assetd", "p", "main", "a", "promotion_requested")
    promote = Received(tokens=wire.parse_in(subject, "assetd"), seq=2, delivered=1)
    promote.item = decode(subject, copy, prefix="assetd", max_bytes=1 << 20)
    written: list[tuple[int, str, str, bytes]] = []
    apply_batch(engine, batch, prefix="assetd", max_deliver=5, written=written)
    apply_batch(engine, [promote], prefix="assetd", max_deliver=5, written=written)
    assert [r.outcome for r in [*batch, promote]] == ["applied"] * 3
    created = [orjson.loads(payload)["data"] for _, _, subject, payload in written
               if subject.endswith(".instance_created")]
    assert [(d["instance"], d["state"]) for d in created] == [
        ("v1", "ready"), ("v1", "pending"), ("v1", "ready")]
    assert created[1]["inputs"] == [{"asset": "a", "branch": "main", "instance": "v1"}]
    assert created[2]["annotations"]["promoted_from_branch"] == "main"
    for data in created:
        dumped = InstanceCreated.model_validate(data).model_dump(mode="json", by_alias=True)
        assert orjson.dumps(data) == orjson.dumps(dumped)
    engine.dispose()


def test_a_batch_records_its_ids_in_one_statement(db_url: str) -> None:
    """The inbox of a batch is one statement on either database (SQLite: the applied ids at
    the end; PostgreSQL: every id claimed at the start); an id applied before, or earlier in
    the same batch, is a duplicate."""
    engine = _engine(db_url)
    apply_batch(engine, [_registration("a", eid="x")], prefix="assetd", max_deliver=5)
    batch = [_registration("a", eid="y"), _registration("a", eid="x"),
             _registration("a", eid="y"), _registration("b", eid="z")]
    inserts: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO INBOX"):
            inserts.append(statement)

    event.listen(engine, "before_cursor_execute", seen)
    apply_batch(engine, batch, prefix="assetd", max_deliver=5)
    event.remove(engine, "before_cursor_execute", seen)
    assert [r.outcome for r in batch] == ["applied", "duplicate", "duplicate", "applied"]
    assert len(inserts) == 1, inserts
    assert [(a, v) for _, a, v in _instances(engine)] == [("a", 1), ("a", 2), ("b", 1)]
    with engine.connect() as conn:
        assert sorted(conn.execute(select(INBOX.c.event_id)).scalars()) == ["x", "y", "z"]
    engine.dispose()


def test_a_batch_with_a_refused_event_is_applied_again_event_by_event(db_url: str) -> None:
    """One refused event undoes nothing of its neighbours: the batch is applied again with a
    savepoint per event, and only the refused event's change is missing."""
    engine = _engine(db_url)
    batch = [_registration("a"), _registration("a", kind="data"), _registration("a"),
             _registration("b", inputs=[{"asset": "a", "instance": "v9"}]),
             _registration("b")]
    apply_batch(engine, batch, prefix="assetd", max_deliver=5)
    assert [r.outcome for r in batch] == ["applied", "rejected", "applied", "rejected",
                                          "applied"]
    assert [(a, v) for _, a, v in _instances(engine)] == [("a", 1), ("a", 2), ("b", 1)]
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(INBOX)).scalar() == 3
        types = [orjson.loads(p)["type"] for p in conn.execute(select(OUTBOX.c.payload)).scalars()]
    assert sorted(types) == ["event_rejected"] * 2 + ["instance_created"] * 3
    engine.dispose()


class _Publisher:
    """A JetStream stand-in that acknowledges every publish at once."""

    def __init__(self) -> None:
        self.ids: list[str] = []

    async def publish(self, messages: list[tuple[str, bytes, dict[str, str]]],
                      timeout: float) -> None:
        self.ids += [headers["Nats-Msg-Id"] for _, _, headers in messages]


async def test_the_relay_publishes_handed_rows_without_reading_them_back(
        tmp_path: Path) -> None:
    """After a read that found every pending row, the rows a batch hands over are published
    as they are; any other wake (the scheduler's) reads the outbox again."""
    engine = _registry(tmp_path)
    js = _Publisher()
    relay = OutboxRelay(writer=engine, reader=engine, publisher=lambda: js,
                        supervisor=Supervisor())
    reads = 0
    pending = relay._pending

    def counted(skip: set[int]) -> Any:
        nonlocal reads
        reads += 1
        return pending(skip)

    relay._pending = counted  # type: ignore[method-assign]
    first: list[tuple[int, str, str, bytes]] = []
    apply_batch(engine, [_registration("a")], prefix="assetd", max_deliver=5, written=first)
    await relay.flush()  # not caught up yet (a start): it reads
    assert reads == 1 and js.ids == [first[0][1]]
    second: list[tuple[int, str, str, bytes]] = []
    apply_batch(engine, [_registration("a"), _registration("b")], prefix="assetd",
                max_deliver=5, written=second)
    relay.marks.hand(second)
    relay.wake()
    await relay.flush()
    assert reads == 1 and js.ids == [r[1] for r in first + second]
    with engine.begin() as conn:  # a row of the scheduler's: it wakes the relay alone
        conn.execute(insert(OUTBOX), [{"id": "x", "subject": "s", "payload": b"{}",
                                       "created_at": datetime.now(UTC)}])
    relay.wake()
    await relay.flush()
    assert reads == 2 and js.ids[-1] == "x" and len(js.ids) == 4
    relay._stopping = True
    await relay.flush()  # at stop the marks are written
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(OUTBOX)
                            .where(OUTBOX.c.published_at.is_(None))).scalar() == 0


def test_json_columns_read_back_what_was_written(db_url: str) -> None:
    """The JSON columns' text is orjson's (``json_text``), not the standard library's: the
    values read back are the same, non-ASCII text is stored as UTF-8, and the instance
    search still finds them by annotation and tag."""
    from assetd.registry.engine import json_text
    from assetd.registry.search import search

    assert json_text({"é": [1.5, None], 3: "x"}) == '{"é":[1.5,null],"3":"x"}'
    upgrade(db_url)
    engine = make_engine(db_url)
    annotations = {"naïve": "漢字", "big": 2**62, "f1_score": 0.93, "nested": {"a": [1, None]}}
    try:
        with engine.begin() as conn:
            conn.execute(insert(INSTANCE).values(
                project="json", branch="main", asset="m", version=1, kind="model",
                state="ready", validity="valid", annotations=annotations,
                tags={"seed": "1", "ключ": "значение"}, reference={}, producer="t",
                event_id="json-1", created_at=datetime.now(UTC),
                updated_at=datetime.now(UTC)))
        with engine.connect() as conn:
            row = conn.execute(select(INSTANCE.c.annotations, INSTANCE.c.tags)
                               .where(INSTANCE.c.project == "json")).one()
            assert row.annotations == annotations
            assert row.tags == {"seed": "1", "ключ": "значение"}
            page = search(conn, project="json", branch="main", asset="m", limit=10,
                          before=None, where=["f1_score>=0.9"], tags={"ключ": "значение"})
            assert [i["instance"] for i in page["items"]] == ["v1"]
            assert page["items"][0]["annotations"] == annotations
    finally:
        engine.dispose()


def test_a_batch_reads_its_assets_kinds_and_versions_in_a_few_statements(db_url: str) -> None:
    """The kinds and highest versions of the assets a batch registers are read together
    (two statements for up to 16 assets, not two per asset), and the versions are still
    each asset's next: over 40 assets, with one instance or two, one of another kind
    (refused, alone)."""
    engine = _engine(db_url)
    first = [_registration(f"a{i}") for i in range(40) if i != 1]
    apply_batch(engine, [*first, _registration("a1", kind="data")], prefix="assetd",
                max_deliver=5)
    apply_batch(engine, [_registration(f"a{i}") for i in range(0, 40, 4)], prefix="assetd",
                max_deliver=5)
    reads: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        text = " ".join(statement.split()).upper()
        if text.startswith("SELECT") and ("FROM ASSET " in text
                                          or "SELECT VERSION FROM INSTANCE" in text):
            reads.append(text)

    batch = [_registration(f"a{i}") for i in range(40)]
    event.listen(engine, "before_cursor_execute", seen)
    apply_batch(engine, batch, prefix="assetd", max_deliver=5)
    event.remove(engine, "before_cursor_execute", seen)
    # a1 is a data asset: refused; the batch is applied again event by event (its own reads)
    assert [r.outcome for r in batch] == ["rejected" if i == 1 else "applied" for i in range(40)]
    with engine.connect() as conn:
        latest = dict(conn.execute(select(INSTANCE.c.asset, func.max(INSTANCE.c.version))
                                   .group_by(INSTANCE.c.asset)).all())
    assert latest == {f"a{i}": 1 if i == 1 else 2 + (i % 4 == 0) for i in range(40)}
    # per attempt (the optimistic one, then event by event): the kinds in one query, the
    # versions in three (16 + 16 + 8 assets); one statement per asset and read would be 160
    assert len(reads) == 8, reads
    engine.dispose()


def test_sqlite_batches_reuse_the_connection_that_wrote_last(tmp_path: Path) -> None:
    """SQLite drops a connection's page cache when another connection wrote since: once the
    pool holds two writer connections (another task wrote while a batch ran), batches one
    after the other still get the one used last, not each in turn."""
    engine = _engine(f"sqlite:///{tmp_path / 'r.db'}")
    used: list[int] = []
    event.listen(engine, "checkout", lambda dbapi, _rec, _proxy: used.append(id(dbapi)))
    with engine.connect(), engine.connect():  # two connections in the pool
        pass
    for _ in range(4):
        apply_batch(engine, [_registration("a")], prefix="assetd", max_deliver=5)
    engine.dispose()
    assert len(set(used[:2])) == 2 and len(set(used[2:])) == 1, used
