"""Repository functions on the write path: keyword-only, one connection; SQLAlchemy Core,
and the statements every batch runs as SQL on the driver (``driver.py``, ``bulk.py``).

Every function runs inside the caller's transaction; none commits.
"""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Connection,
    Insert,
    Select,
    bindparam,
    exists,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from assetd.errors import InvalidError, NotFoundError
from assetd.registry import bulk, driver
from assetd.registry.tables import ALIAS, ASSET, EDGE, EVENT_OUTCOME, INBOX, INSTANCE, OUTBOX
from assetd.schemas.ids import parse_selector

# Hot-path statements are built once and executed with parameter dicts: building
# ``insert(...).values(**kw)`` per event cost more than the database work itself.
_IGNORE: dict[tuple[str, str, tuple[str, ...]], Insert] = {}


def _insert_ignore(conn: Connection, table: Any, index: list[str], *returning: Any) -> Insert:
    """``INSERT … ON CONFLICT DO NOTHING [RETURNING …]`` for SQLite and PostgreSQL, cached.

    Whether a row went in is read with ``RETURNING``: psycopg reports no rowcount here.
    """
    key = (conn.dialect.name, table.name, tuple(c.name for c in returning))
    if key not in _IGNORE:
        dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
        stmt = dialect.insert(table).on_conflict_do_nothing(index_elements=index)
        if returning:
            stmt = stmt.returning(*returning)
        _IGNORE[key] = stmt
    return _IGNORE[key]


def inbox_add(conn: Connection, *, project: str, event_id: str, type_: str, now: datetime) -> bool:
    """Record an inbound id as applied; False when it was applied before (a duplicate)."""
    stmt = _insert_ignore(conn, INBOX, ["project", "event_id"], INBOX.c.event_id)
    params = {"project": project, "event_id": event_id, "type": type_, "applied_at": now}
    return conn.execute(stmt, params).first() is not None


def inbox_claim(conn: Connection, *, rows: list[dict[str, Any]]) -> set[tuple[str, str]]:
    """Insert inbox rows, skipping ids already there (PostgreSQL: or being inserted by
    another transaction, once it commits); return the ``(project, event_id)`` that went in.
    Pass the rows sorted by key: concurrent claims then lock in the same order."""
    return {(r[0], r[1]) for r in bulk.insert(conn, INBOX, rows, suffix=_CLAIM_SUFFIX)}


_CLAIM_SUFFIX = "ON CONFLICT (project, event_id) DO NOTHING RETURNING project, event_id"


def outbox_add(conn: Connection, *, rows: list[dict[str, Any]]
               ) -> list[tuple[int, str, str, bytes]]:
    """Queue outbound events (``id``, ``subject``, ``payload``, ``created_at``); ids are
    unique. Returns the rows that went in (an id queued before is left out) as
    ``(seq, id, subject, payload)``, in seq order."""
    result = bulk.insert(conn, OUTBOX, rows, suffix=_OUTBOX_SUFFIX)
    by_id = {r["id"]: r for r in rows}
    added = sorted((r[0], r[1]) for r in result)
    return [(seq, oid, by_id[oid]["subject"], by_id[oid]["payload"]) for seq, oid in added]


_OUTBOX_SUFFIX = "ON CONFLICT (id) DO NOTHING RETURNING seq, id"
_OUTCOME_COLUMNS = ("type", "status", "outcome", "seq", "recorded_at")
_OUTCOME_SUFFIX = ("ON CONFLICT (project, event_id) DO UPDATE SET "
                   + ", ".join(f"{c} = excluded.{c}" for c in _OUTCOME_COLUMNS)
                   + " WHERE event_outcome.status = 'rejected'")


def outcomes_add(conn: Connection, *, rows: list[dict[str, Any]]) -> None:
    """Record what became of inbound ids (``project``, ``event_id``, ``type``, ``status``,
    ``outcome``, ``seq``, ``recorded_at``), one statement for the batch.

    A row replaces only a ``rejected`` one: an applied id keeps its first outcome for ever,
    while a rejected id stays open to a corrected re-publish (or a DLQ replay).
    """
    bulk.insert(conn, EVENT_OUTCOME, rows, suffix=_OUTCOME_SUFFIX)


# Built once with bound parameters: building a ``select`` (and its cache key) per call cost
# more than its database work (~0.4 ms each, per batch).
_PENDING = (select(OUTBOX.c.seq, OUTBOX.c.id, OUTBOX.c.subject, OUTBOX.c.payload)
            .where(OUTBOX.c.published_at.is_(None)).order_by(OUTBOX.c.seq)
            .limit(bindparam("k_limit")))
_GET_ASSET = select(ASSET).where(ASSET.c.project == bindparam("k_project"),
                                 ASSET.c.asset == bindparam("k_asset"))
_GET_ASSET_LOCKED = _GET_ASSET.with_for_update()
def outbox_pending(conn: Connection, *, limit: int) -> list[tuple[int, str, str, bytes]]:
    """The oldest unpublished outbound events: ``(seq, id, subject, payload)``."""
    return [(r[0], r[1], r[2], r[3]) for r in conn.execute(_PENDING, {"k_limit": limit})]


def outbox_mark_published(conn: Connection, *, seqs: list[int], now: datetime) -> None:
    """Mark outbound events as acknowledged by JetStream."""
    if seqs:
        among, params = driver.one_of(conn, "seq", seqs)
        stamp = bulk.bound(conn, OUTBOX, "published_at", now)
        p = driver.placeholder(conn.dialect.name)
        driver.execute(conn, f"UPDATE outbox SET published_at = {p} WHERE {among}",
                       [stamp, *params])


def get_asset(conn: Connection, *, project: str, asset: str, lock: bool = False) -> Any:
    """The asset row or None; ``lock`` takes a row lock on PostgreSQL (no-op on SQLite)."""
    return conn.execute(_GET_ASSET_LOCKED if lock else _GET_ASSET,
                        {"k_project": project, "k_asset": asset}).first()


def upsert_asset(conn: Connection, *, project: str, asset: str, values: dict[str, Any],
                 now: datetime) -> None:
    """Create the asset or update the given columns of its definition."""
    row = {"name": None, "description": None, "properties": {}, **values, "project": project,
           "asset": asset, "created_at": now, "updated_at": now}
    stmt = _insert_ignore(conn, ASSET, ["project", "asset"], ASSET.c.asset)
    if conn.execute(stmt, row).first() is None and values:
        conn.execute(
            update(ASSET)
            .where(ASSET.c.project == project, ASSET.c.asset == asset)
            .values(updated_at=now, **values)
        )


def max_version(conn: Connection, *, project: str, branch: str, asset: str) -> int:
    """The highest version of (project, branch, asset), 0 when there is none."""
    return max_versions(conn, keys=[(project, branch, asset)])[(project, branch, asset)]


def asset_kinds(conn: Connection, *, keys: set[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """The kind of each ``(project, asset)`` of ``keys`` that exists, one query per project;
    on PostgreSQL their rows locked as :func:`get_asset` with ``lock`` does (in the order of
    their names, so that two replicas lock them in the same order)."""
    lock = " FOR UPDATE" if conn.dialect.name == "postgresql" else ""
    p = driver.placeholder(conn.dialect.name)
    by_project: dict[str, list[str]] = {}
    for project, asset in sorted(keys):
        by_project.setdefault(project, []).append(asset)
    kinds: dict[tuple[str, str], str] = {}
    for project, assets in by_project.items():
        among, params = driver.one_of(conn, "asset", assets)
        sql = f"SELECT asset, kind FROM asset WHERE project = {p} AND {among} ORDER BY asset{lock}"
        kinds.update(((project, r[0]), r[1])
                     for r in driver.execute(conn, sql, [project, *params]))
    return kinds


# max_versions: at most this many (project, branch, asset) in one statement
_VERSIONS_PER_QUERY = 16


@functools.cache
def versions_sql(dialect: str, n: int) -> str:
    """``SELECT (highest version of key 0), …, (… of key n-1)``, each the first entry of the
    version index read backwards, not ``max(version)``: psycopg prepares a statement run five
    times, and PostgreSQL's generic plan for that max() read every instance of the asset
    (11 ms at 20,000 of them; about a millisecond per registration at 1,000,000)."""
    p = driver.placeholder(dialect)
    one = (f"(SELECT version FROM instance WHERE project = {p} AND branch = {p} "
           f"AND asset = {p} ORDER BY version DESC LIMIT 1)")
    return "SELECT " + ", ".join([one] * n)


def max_versions(conn: Connection, *, keys: list[tuple[str, str, str]]
                 ) -> dict[tuple[str, str, str], int]:
    """The highest version of each ``(project, branch, asset)`` of ``keys`` (0: none yet),
    up to :data:`_VERSIONS_PER_QUERY` of them per statement."""
    out: dict[tuple[str, str, str], int] = {}
    for start in range(0, len(keys), _VERSIONS_PER_QUERY):
        chunk = keys[start:start + _VERSIONS_PER_QUERY]
        sql = versions_sql(conn.dialect.name, len(chunk))
        row = driver.execute(conn, sql, [part for key in chunk for part in key])[0]
        out.update((key, int(v or 0)) for key, v in zip(chunk, row, strict=True))
    return out


_INSERT_INSTANCE = insert(INSTANCE).returning(INSTANCE.c.id)


def insert_instance(conn: Connection, *, values: dict[str, Any]) -> int:
    """Insert an instance row and return its id."""
    return int(conn.execute(_INSERT_INSTANCE, values).scalar_one())


def next_instance_id(conn: Connection) -> int:
    """The id SQLite would give the next instance (its rowid: the highest + 1). Only for a
    writer holding SQLite's write lock (``BEGIN IMMEDIATE``): no one else can insert."""
    return int(driver.execute(conn, "SELECT max(id) FROM instance")[0][0] or 0) + 1


_RESERVE_IDS = text("SELECT nextval(pg_get_serial_sequence('instance', 'id')) "
                    "FROM generate_series(1, :n)")


def reserve_instance_ids(conn: Connection, *, n: int) -> list[int]:
    """PostgreSQL: ``n`` instance ids from the table's id sequence, in one round trip (the
    sequence never hands one out twice, whichever transaction commits; unused ones are
    gaps, as a rolled-back insert leaves)."""
    return [int(r[0]) for r in conn.execute(_RESERVE_IDS, {"n": n})]


def insert_instances(conn: Connection, *, rows: list[dict[str, Any]]) -> None:
    """Insert instance rows whose ``id`` is given, in one statement."""
    bulk.insert(conn, INSTANCE, rows)


def insert_edges(conn: Connection, *, rows: list[dict[str, Any]]) -> None:
    """Insert lineage edges."""
    bulk.insert(conn, EDGE, rows)


def _resolvers() -> dict[str, Select[Any]]:
    """The selector queries, built once: building a statement (and its cache key) per call
    cost several times the database work of a ``resolve``."""
    base = select(INSTANCE).where(
        INSTANCE.c.project == bindparam("k_project"), INSTANCE.c.branch == bindparam("k_branch"),
        INSTANCE.c.asset == bindparam("k_asset"))
    return {
        "latest": base.where(INSTANCE.c.state == "ready", INSTANCE.c.validity != "invalidated")
        .order_by(INSTANCE.c.version.desc()).offset(bindparam("k_arg")).limit(1),
        "version": base.where(INSTANCE.c.version == bindparam("k_arg")),
        "alias": base.join(ALIAS, ALIAS.c.instance_id == INSTANCE.c.id).where(  # its key
            ALIAS.c.project == bindparam("k_project"), ALIAS.c.branch == bindparam("k_branch"),
            ALIAS.c.asset == bindparam("k_asset"), ALIAS.c.alias == bindparam("k_arg")),
    }


_RESOLVE = _resolvers()


def resolve(
    conn: Connection, *, project: str, branch: str, asset: str, selector: str,
    allow_invalid: bool = False,
) -> Any:
    """Resolve a selector (CONTRACT §7) to an instance row, or raise Not­Found/Invalid."""
    kind, arg = parse_selector(selector)
    params = {"k_project": project, "k_branch": branch, "k_asset": asset,
              "k_arg": arg if kind == "alias" else int(arg)}
    row = conn.execute(_RESOLVE[kind], params).first()
    where = f"{asset}@{selector.removeprefix('@')} on branch {branch} of project {project}"
    if row is None:
        raise NotFoundError(f"no instance {where}")
    if row.validity == "invalidated" and not allow_invalid:
        raise InvalidError(f"instance {where} is invalidated (pass allow_invalid to see it)")
    return row


def update_instance(conn: Connection, *, instance_id: int, values: dict[str, Any]) -> None:
    """Change columns of one instance."""
    conn.execute(update(INSTANCE).where(INSTANCE.c.id == instance_id).values(**values))


def has_instances(conn: Connection, *, project: str, asset: str) -> bool:
    """Tell whether the asset has any instance on any branch."""
    q = select(exists().where(INSTANCE.c.project == project, INSTANCE.c.asset == asset))
    return bool(conn.execute(q).scalar())


def outbox_count(conn: Connection) -> int:
    """How many outbound events wait for the relay."""
    q = select(func.count()).select_from(OUTBOX).where(OUTBOX.c.published_at.is_(None))
    return int(conn.execute(q).scalar() or 0)
