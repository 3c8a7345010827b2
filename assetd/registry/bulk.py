"""A batch's rows in one ``INSERT`` statement, run on the driver (SQLite and PostgreSQL).

SQLAlchemy's ``executemany`` path builds, for every row, a dict of processed parameters and
then a positional tuple from it, and formats each datetime with its own ``%`` formatting:
under load that per-row work (``construct_params``, the DATETIME bind processor) was about
an eighth of the daemon's samples, more than SQLite's own work on the rows. Here each
column's value goes through **the same bind processor** SQLAlchemy would use (so the stored
text is the same: ``tests/test_bulk.py`` compares both byte for byte), a value that repeats
(the batch's ``now``) is converted once, and the rows go in as one statement
(``INSERT … VALUES (…), (…) [suffix]``), chunked under SQLite's limit on bound variables.

PostgreSQL: one array per column, ``INSERT … SELECT * FROM unnest(%b::T[], …) [suffix]``
(bound in binary: the text format's escaping of every element cost more than it saved).
SQLAlchemy's path there (its "insertmanyvalues" for RETURNING, psycopg's pipelined
``executemany`` otherwise) sent statements whose text grows with the batch, which psycopg
parsed again every time (``_query2pg_nocache``: a tenth of the daemon's samples under load),
or one statement per row for the server to parse and plan. The text here is the same for
every batch, so psycopg's query cache and the server's prepared statement both hold, and the
server runs one statement per batch (docs/benchmarks.md). The arrays are read in order, so
rows are inserted (and their row locks taken) in the order given.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import chain
from typing import Any

from sqlalchemy import Connection, DateTime, Table

from assetd.registry import driver

# SQLite's default limit on bound variables in one statement is 32,766 (since 3.32): stay
# well under it (a batch of 500 instances, 15 columns, is one statement).
_MAX_VARIABLES = 8_000

_Plan = tuple[str, tuple[str, ...], tuple[Callable[[Any], Any] | None, ...], tuple[bool, ...]]
_PLANS: dict[tuple[str, str, tuple[str, ...], str], _Plan] = {}


def _plan(conn: Connection, table: Table, columns: tuple[str, ...], suffix: str) -> _Plan:
    dialect = conn.dialect
    key = (dialect.name, table.name, columns, suffix)
    if key not in _PLANS:
        quote = dialect.identifier_preparer.quote
        types = [table.c[c].type for c in columns]
        head = (f"INSERT INTO {dialect.identifier_preparer.format_table(table)} "
                f"({', '.join(quote(c) for c in columns)}) ")
        if dialect.name == "postgresql":  # the whole statement: its text never changes
            arrays = ", ".join(f"%b::{t.compile(dialect=dialect)}[]" for t in types)
            head += f"SELECT * FROM unnest({arrays})" + (f" {suffix}" if suffix else "")
        else:
            head += "VALUES "
        procs = tuple(_processor(conn, table, c) for c in columns)
        dates = tuple(_is_datetime(t) for t in types)
        _PLANS[key] = (head, columns, procs, dates)
    return _PLANS[key]


def bound(conn: Connection, table: Table, column: str, value: Any) -> Any:
    """``value`` as SQLAlchemy would bind it to ``table.column`` (for :mod:`driver`'s SQL)."""
    proc = _processor(conn, table, column)
    return value if proc is None else proc(value)


def _processor(conn: Connection, table: Table, column: str) -> Callable[[Any], Any] | None:
    """The bind processor SQLAlchemy uses for ``table.column`` on this dialect."""
    key = (conn.dialect.name, table.name, column)
    if key not in _PROCESSORS:
        _PROCESSORS[key] = table.c[column].type.dialect_impl(conn.dialect).bind_processor(
            conn.dialect)
    return _PROCESSORS[key]


_PROCESSORS: dict[tuple[str, str, str], Callable[[Any], Any] | None] = {}


def _is_datetime(type_: Any) -> bool:
    """A DateTime column, or a type decorating one (sqlmodel's UTCDateTime)."""
    return isinstance(getattr(type_, "impl_instance", type_), DateTime)


def insert(conn: Connection, table: Table, rows: Sequence[dict[str, Any]], *,
           suffix: str = "") -> list[Any]:
    """Insert ``rows`` (all with the keys of the first); return the rows of a ``RETURNING``
    in ``suffix`` (e.g. ``ON CONFLICT (id) DO NOTHING RETURNING seq``), written so that
    both SQLite and PostgreSQL take it."""
    if not rows:
        return []
    head, columns, procs, dates = _plan(conn, table, tuple(rows[0]), suffix)
    arrays = [_column(rows, name, proc, is_date)
              for name, proc, is_date in zip(columns, procs, dates, strict=True)]
    if conn.dialect.name == "postgresql":
        return driver.execute(conn, head, tuple(arrays))
    flat = list(chain.from_iterable(zip(*arrays, strict=True)))  # row by row
    width = len(columns)
    group = "(" + ", ".join("?" * width) + ")"
    per = max(1, _MAX_VARIABLES // width)
    out: list[Any] = []
    for start in range(0, len(rows), per):
        count = min(per, len(rows) - start)
        sql = head + ", ".join([group] * count) + (" " + suffix if suffix else "")
        params = tuple(flat[start * width:(start + count) * width])
        out += driver.execute(conn, sql, params)
    return out


def _column(rows: Sequence[dict[str, Any]], name: str, proc: Callable[[Any], Any] | None,
            is_date: bool) -> list[Any]:
    """One column's values, through the bind processor SQLAlchemy would use; a datetime that
    repeats (the batch's ``now``) is converted once."""
    values = [row[name] for row in rows]
    if proc is None:
        return values
    if not is_date:
        return [proc(value) for value in values]  # None too: JSON stores it as 'null'
    memo: dict[int, Any] = {}
    out = []
    for value in values:
        if value is None:
            out.append(proc(value))
            continue
        done = memo.get(id(value))
        if done is None:
            done = memo[id(value)] = proc(value)
        out.append(done)
    return out
