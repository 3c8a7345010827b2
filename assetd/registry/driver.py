"""The write path's statements of every batch, run on the driver's cursor.

SQLAlchemy's execution path (the compiled cache, ``IN`` expansion, its cursor and result
wrappers) costs 12-50 µs of CPU a statement on top of SQLite's own few microseconds; with a
batch of a few events ten such statements were most of its cost, and at 1,000 events/s
most of the daemon's (docs/benchmarks.md). Here a statement is text written for its dialect
(SQLite's ``?``, psycopg's ``%s``), run on the connection's DBAPI cursor in the caller's
transaction, and everything else stays SQLAlchemy's:

- an error goes through SQLAlchemy's own handling (``Connection._handle_dbapi_exception``,
  private but unchanged through 2.0 and 2.1; ``tests/test_bulk.py`` fails if that ends):
  the ``handle_error`` hooks run (engine.py's stale-file and fault handling), the
  connection is invalidated when it is gone, and what is raised is SQLAlchemy's wrapper,
  so ``database_fault`` and the callers' ``except SQLAlchemyError`` see what they saw;
- ``before_cursor_execute`` / ``after_cursor_execute`` listeners (tests that count
  statements, SQL instrumentation) still see every statement.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection


def execute(conn: Connection, sql: str, params: Sequence[Any] = ()) -> list[Any]:
    """Run ``sql`` with positional ``params``; its rows (none for a statement without)."""
    cursor = conn.connection.cursor()
    dispatch = conn.dispatch
    try:
        for before in dispatch.before_cursor_execute:
            before(conn, cursor, sql, params, None, False)
        cursor.execute(sql, params)
        rows = list(cursor.fetchall()) if cursor.description is not None else []
        for after in dispatch.after_cursor_execute:
            after(conn, cursor, sql, params, None, False)
    except Exception as exc:
        # the cursor first: SQLite keeps a connection with an unfinished statement open past
        # its close(), and the handling below may close this one to drop a read-only state
        # (engine.py: _on_sqlite_error, which closes only an execution context's cursor)
        with contextlib.suppress(Exception):
            cursor.close()
        conn._handle_dbapi_exception(exc, sql, params, cursor, None)  # raises, wrapped
    cursor.close()
    return rows


def placeholder(dialect: str) -> str:
    """The driver's placeholder for one parameter: ``?`` (sqlite3) or ``%s`` (psycopg)."""
    return "%s" if dialect == "postgresql" else "?"


def one_of(conn: Connection, column: str, values: Sequence[Any]) -> tuple[str, list[Any]]:
    """``column`` is one of ``values``: the condition and its parameters. PostgreSQL: one
    array, ``= ANY(%s)`` (one statement text whatever the count); SQLite: ``IN (?, …)``."""
    if conn.dialect.name == "postgresql":
        return f"{column} = ANY(%s)", [list(values)]
    return f"{column} IN ({', '.join('?' * len(values))})", list(values)
