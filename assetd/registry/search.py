"""The filtered ``instances`` query: one asset's instances that meet every filter, newest
first, paged.

Bound by the unique index on (project, branch, asset, version), never by the registry: the
versions of an asset are scanned downwards in windows of :data:`WINDOW` (an index range
scan), the column filters (state, validity, producer, creation time) in SQL, the JSON ones
(annotation conditions, tags) in Python, the same on SQLite and PostgreSQL. One request
examines at most :data:`MAX_SCAN` versions; when it stops there, ``next`` says where to go
on, so a rare match costs several short pages rather than one unbounded query.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, Select, select

from assetd.registry import repo
from assetd.registry.reads import instance_view
from assetd.registry.tables import INSTANCE
from assetd.schemas.where import Condition, parse_condition

WINDOW = 500
MAX_SCAN = 10_000
COLUMN_FILTERS = ("state", "validity", "producer", "created_after", "created_before")


def filtered(args: dict[str, Any]) -> bool:
    """Whether an ``instances`` request asks for any filter."""
    return bool(args.get("where") or args.get("tags")) or any(
        args.get(name) is not None for name in COLUMN_FILTERS)


def search(conn: Connection, *, project: str, branch: str, asset: str, limit: int,
           before: int | None, where: list[str], tags: dict[str, str] | None,
           **columns: Any) -> dict[str, Any]:
    """A page of the instances that meet every filter; ``next`` is the ``before`` of the next
    page (null: no older version is left to examine)."""
    key = _key(project, branch, asset)
    top = repo.max_version(conn, project=project, branch=branch, asset=asset)
    if top == 0:
        return {"items": [], "next": None}
    hi = min(top, before - 1) if before is not None else top
    conds = [parse_condition(text) for text in where]
    found: list[Any] = []
    start = hi
    while hi >= 1 and start - hi < MAX_SCAN and len(found) <= limit:
        lo = max(1, hi - WINDOW + 1, start - MAX_SCAN + 1)
        rows = conn.execute(window(key, lo, hi, columns))
        found += [r for r in rows if _meets(r, conds, tags)][: limit + 1 - len(found)]
        hi = lo - 1
    if len(found) > limit:
        found = found[:limit]
        nxt: int | None = found[-1].version
    else:
        nxt = hi + 1 if hi >= 1 else None
    return {"items": instance_view(conn, found), "next": nxt}


def _key(project: str, branch: str, asset: str) -> list[ColumnElement[bool]]:
    return [INSTANCE.c.project == project, INSTANCE.c.branch == branch,
            INSTANCE.c.asset == asset]


def window(key: list[ColumnElement[bool]], lo: int, hi: int,
           columns: dict[str, Any]) -> Select[Any]:
    """Versions ``lo``..``hi`` of one asset that pass the column filters, newest first."""
    return (select(INSTANCE)
            .where(*key, INSTANCE.c.version.between(lo, hi), *_column_filters(columns))
            .order_by(INSTANCE.c.version.desc()))


def _column_filters(columns: dict[str, Any]) -> list[ColumnElement[bool]]:
    out: list[ColumnElement[bool]] = []
    for name in ("state", "validity", "producer"):
        if columns.get(name) is not None:
            out.append(INSTANCE.c[name] == columns[name])
    if columns.get("created_after") is not None:
        out.append(INSTANCE.c.created_at >= _utc(columns["created_after"]))
    if columns.get("created_before") is not None:
        out.append(INSTANCE.c.created_at < _utc(columns["created_before"]))
    return out


def _utc(ts: datetime) -> datetime:
    """As the registry writes its times: aware, in UTC."""
    return ts.astimezone(UTC)


def _meets(row: Any, conds: list[Condition], tags: dict[str, str] | None) -> bool:
    annotations = row.annotations or {}
    if not all(c.matches(annotations) for c in conds):
        return False
    have = row.tags or {}
    return all(k in have and have[k] == v for k, v in (tags or {}).items())
