"""SQLite: a batch's rows in one multi-row ``INSERT``, run on the driver.

SQLAlchemy's ``executemany`` path builds, for every row, a dict of processed parameters and
then a positional tuple from it, and formats each datetime with its own ``%`` formatting:
under load that per-row work (``construct_params``, the DATETIME bind processor) was about
an eighth of the daemon's samples, more than SQLite's own work on the rows. Here each
column's value goes through **the same bind processor** SQLAlchemy would use (so the stored
text is the same: ``tests/test_bulk.py`` compares both byte for byte), a value that repeats
(the batch's ``now``) is converted once, and the rows go in as one statement
(``INSERT … VALUES (…), (…) [suffix]``), chunked under SQLite's limit on bound variables.

PostgreSQL keeps SQLAlchemy's own path (psycopg's pipeline of its ``executemany``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import chain
from operator import itemgetter
from typing import Any

from sqlalchemy import Connection, DateTime, Table

# SQLite's default limit on bound variables in one statement is 32,766 (since 3.32): stay
# well under it (a batch of 500 instances, 15 columns, is one statement).
_MAX_VARIABLES = 8_000

_Plan = tuple[str, tuple[str, ...], tuple[Callable[[Any], Any] | None, ...], tuple[bool, ...]]
_PLANS: dict[tuple[str, tuple[str, ...], str], _Plan] = {}


def _plan(conn: Connection, table: Table, columns: tuple[str, ...], suffix: str) -> _Plan:
    key = (table.name, columns, suffix)
    if key not in _PLANS:
        dialect = conn.dialect
        quote = dialect.identifier_preparer.quote
        head = (f"INSERT INTO {dialect.identifier_preparer.format_table(table)} "
                f"({', '.join(quote(c) for c in columns)}) VALUES ")
        types = [table.c[c].type for c in columns]
        procs = tuple(t.dialect_impl(dialect).bind_processor(dialect) for t in types)
        dates = tuple(_is_datetime(t) for t in types)
        _PLANS[key] = (head, columns, procs, dates)
    return _PLANS[key]


def _is_datetime(type_: Any) -> bool:
    """A DateTime column, or a type decorating one (sqlmodel's UTCDateTime)."""
    return isinstance(getattr(type_, "impl_instance", type_), DateTime)


def insert(conn: Connection, table: Table, rows: Sequence[dict[str, Any]], *,
           suffix: str = "") -> list[Any]:
    """Insert ``rows`` (all with the keys of the first) on SQLite; return the rows of a
    ``RETURNING`` in ``suffix`` (e.g. ``ON CONFLICT (id) DO NOTHING RETURNING seq``)."""
    if not rows:
        return []
    head, columns, procs, dates = _plan(conn, table, tuple(rows[0]), suffix)
    # the rows' values in column order, taken in C; then only the columns with a bind
    # processor are walked in Python (a third of the values of a registration's rows)
    take = itemgetter(*columns)
    values = [list(take(row)) for row in rows] if len(columns) > 1 else \
        [[row[columns[0]]] for row in rows]
    memo: dict[int, Any] = {}  # id of a datetime -> its text, for this call's rows
    for j, (proc, is_date) in enumerate(zip(procs, dates, strict=True)):
        if proc is None:
            continue
        for vals in values:
            value = vals[j]
            if is_date and value is not None:
                text = memo.get(id(value))
                if text is None:
                    text = memo[id(value)] = proc(value)
                vals[j] = text
            else:  # None too: a JSON column stores it as 'null'
                vals[j] = proc(value)
    flat = list(chain.from_iterable(values))
    width = len(columns)
    group = "(" + ", ".join("?" * width) + ")"
    per = max(1, _MAX_VARIABLES // width)
    out: list[Any] = []
    for start in range(0, len(rows), per):
        count = min(per, len(rows) - start)
        sql = head + ", ".join([group] * count) + (" " + suffix if suffix else "")
        params = tuple(flat[start * width:(start + count) * width])
        result = conn.exec_driver_sql(sql, params)
        if result.returns_rows:
            out += result.fetchall()
    return out
