"""Engines for the registry: SQLite (WAL, ``BEGIN IMMEDIATE`` writers) or PostgreSQL.

A database that stops accepting writes (a read-only file, a full or failing disk, a
PostgreSQL server in recovery) is picked up again without a restart: connections that saw
it are dropped (a SQLite connection opened on a read-only file stays read-only for ever),
and :func:`write_problem` tells the daemon whether it can write at all right now.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import stat
import threading
import time
import weakref
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import ExceptionContext, make_url
from sqlalchemy.exc import DBAPIError

from assetd.registry import driver

# SQLite errors after which a pooled connection is useless even once the cause is fixed
_SQLITE_STALE = ("readonly database", "disk i/o error", "unable to open database file")
# SQLite errors that say the database cannot take a write now, whatever was written
_SQLITE_UNAVAILABLE = (*_SQLITE_STALE, "database is locked", "database table is locked",
                       "database or disk is full")
# PostgreSQL: read_only_sql_transaction (a standby, or default_transaction_read_only)
_PG_STALE = {"25006"}
# PostgreSQL classes: connection exception, insufficient resources, operator intervention
_PG_UNAVAILABLE = ("08", "53", "57")
# How long a reset of a SQLite file's connections (see _SqliteFile) holds new ones back
# at most, waiting for the open ones to close
RESET_WAIT = 5.0
_files: dict[str, _SqliteFile] = {}
_files_lock = threading.Lock()
_last_commit: weakref.WeakKeyDictionary[Engine, float] = weakref.WeakKeyDictionary()


class _SqliteFile:
    """One SQLite file's engines in this process, and its connections open here.

    SQLite shares a file's lock state and shared-memory index (``-shm``) between all of a
    process's connections to it, and lets go of them only once none is open: what was
    opened while the file was read-only keeps every later connection read-only, for as
    long as the process has one open. A busy daemon always has one (the batch, a reader,
    the relay, the lease), so dropping the pooled connections after a stale error was not
    enough: the daemon stayed read-only after the file was fixed. :meth:`reset` therefore
    holds new connections back until every open one is closed (checked-out ones as they
    come back), at most ``RESET_WAIT`` seconds, and then drops the pooled ones.
    """

    def __init__(self) -> None:
        self.engines: weakref.WeakSet[Engine] = weakref.WeakSet()
        self._cond = threading.Condition()
        self._open = 0
        self._reset_until = 0.0
        file = self

        class Connection(sqlite3.Connection):
            """A connection that counts itself open until it is closed or collected."""

            def __init__(self, *args: Any, **kwargs: Any) -> None:
                file._before_open()
                super().__init__(*args, **kwargs)
                self._counted = True
                file._count(+1)

            def close(self) -> None:
                try:
                    super().close()
                finally:
                    self._uncount()

            def __del__(self) -> None:
                self._uncount()

            def _uncount(self) -> None:
                if self.__dict__.pop("_counted", False):
                    file._count(-1)

        self.connection_class = Connection

    @property
    def resetting(self) -> bool:
        """A reset is waiting for the open connections to close."""
        return time.monotonic() < self._reset_until

    def reset(self) -> None:
        """Close every connection of this process to the file before a new one opens."""
        with self._cond:
            if self._open > 0:
                self._reset_until = time.monotonic() + RESET_WAIT
        for engine in list(self.engines):
            with contextlib.suppress(Exception):
                engine.dispose()

    def _before_open(self) -> None:
        with self._cond:
            while (left := self._reset_until - time.monotonic()) > 0:
                self._cond.wait(left)

    def _count(self, delta: int) -> None:
        with self._cond:
            self._open += delta
            if self._open <= 0:
                self._reset_until = 0.0
                self._cond.notify_all()


def _sqlite_file(path: str) -> _SqliteFile:
    with _files_lock:
        return _files.setdefault(str(Path(path).resolve()), _SqliteFile())


def sqlite_connect(path: str, **kwargs: Any) -> sqlite3.Connection | None:
    """A plain ``sqlite3`` connection to the file, counted with the engines' connections
    (see :class:`_SqliteFile`); None while their connections are being reset."""
    file = _sqlite_file(path)
    if file.resetting:
        return None
    return sqlite3.connect(path, factory=file.connection_class, **kwargs)


def json_text(value: Any) -> str:
    """A JSON column's text: orjson, not the standard library's encoder (which was ~4 % of
    the daemon's samples under load, every instance's annotations, tags and reference and
    every outcome row encoded by it). The values read back are the same; the text is more
    compact (no spaces, UTF-8 instead of ``\\u`` escapes), and a NaN or infinity, which no
    JSON can hold, is stored as null instead of as invalid text."""
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


def is_sqlite(url: str) -> bool:
    """Tell whether ``url`` names a SQLite database."""
    return make_url(url).get_backend_name() == "sqlite"


def make_engine(url: str, *, writer: bool = True, busy_timeout_ms: int = 5000) -> Engine:
    """Create an engine; on SQLite a writer's transactions start with ``BEGIN IMMEDIATE``.

    ``BEGIN IMMEDIATE`` takes SQLite's write lock at the start of the transaction, so
    "read the highest version, insert the next" cannot race with another process.
    """
    if not is_sqlite(url):
        u = make_url(url)
        args = {} if "connect_timeout" in u.query else {"connect_timeout": 10}
        engine = create_engine(url, pool_pre_ping=True, pool_size=4, max_overflow=4,
                               connect_args=args, json_serializer=json_text)
        event.listen(engine, "handle_error", _on_pg_error)
        _track_commits(engine)
        return engine
    database = make_url(url).database
    path = file = None
    connect_args: dict[str, Any] = {"check_same_thread": False,
                                    "timeout": busy_timeout_ms / 1000}
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
        path = str(Path(database).resolve())
        file = _sqlite_file(path)
        connect_args["factory"] = file.connection_class
    # LIFO: the ingest gets back the connection it used last. SQLite keeps a page cache per
    # connection and drops it whole when another connection wrote since; handed out in
    # turn (the pool's default), the ingest's batches went to two writer connections
    # (2,409 and 800 of one run's 3,209), each switch starting on a cold cache
    engine = create_engine(url, connect_args=connect_args, json_serializer=json_text,
                           pool_use_lifo=True)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        if path is not None:
            _heal_sidecars(path)
        dbapi_conn.isolation_level = None  # let SQLAlchemy's begin hook below own BEGIN
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        _enable_wal(cur, busy_timeout_ms)
        cur.execute("PRAGMA synchronous=FULL")  # a commit is on disk before its ack
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    begin = "BEGIN IMMEDIATE" if writer else "BEGIN"

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        driver.execute(conn, begin)

    _track_commits(engine)
    if file is not None:
        file.engines.add(engine)
        sqlite_file = file

        @event.listens_for(engine, "checkin")
        def _on_checkin(_dbapi_conn: Any, record: Any) -> None:
            if record is not None and sqlite_file.resetting:
                record.invalidate()  # closed now; the record reconnects when next used

        event.listen(engine, "handle_error", _on_sqlite_error)

    return engine


def _track_commits(engine: Engine) -> None:
    """Remember when a transaction last committed on ``engine`` (any error forgets it)."""

    def committed(conn: Any) -> None:
        _last_commit[engine] = time.monotonic()

    def failed(_ctx: ExceptionContext) -> None:
        _last_commit.pop(engine, None)

    event.listen(engine, "commit", committed)
    event.listen(engine, "handle_error", failed)


def _on_sqlite_error(ctx: ExceptionContext) -> None:
    """A read-only or failing file: drop this connection and every other connection to
    the file (the reader's too, which share SQLite's read-only shared-memory index)."""
    exc = ctx.original_exception
    if not isinstance(exc, sqlite3.OperationalError):
        return
    if not any(s in str(exc).lower() for s in _SQLITE_STALE):
        return
    ctx.is_disconnect = True  # this connection is dropped, not returned to the pool
    # its unfinished statement would keep the file open (SQLAlchemy 2.1 leaves ctx.cursor unset)
    cursor = getattr(ctx, "cursor", None) or getattr(ctx.execution_context, "cursor", None)
    if cursor is not None:
        with contextlib.suppress(Exception):
            cursor.close()
    _dispose_all(ctx.engine)


def _dispose_all(engine: Engine | None) -> None:
    """Close every connection of this process to ``engine``'s SQLite file (see
    :class:`_SqliteFile`) before another opens."""
    with _files_lock:
        files = [f for f in _files.values() if engine in f.engines]
    for file in files:
        file.reset()


def _on_pg_error(ctx: ExceptionContext) -> None:
    """A read-only PostgreSQL (a standby): reconnect next time, to whatever is primary."""
    if getattr(ctx.original_exception, "sqlstate", None) in _PG_STALE:
        ctx.is_disconnect = True


def _heal_sidecars(path: str) -> None:
    """SQLite creates ``-wal`` and ``-shm`` with the database file's permissions: made while
    the file was read-only, they keep the database read-only after it is fixed. Give them
    the file's mode again (only ours, only when the file itself is writable)."""
    with contextlib.suppress(OSError):
        if not os.access(path, os.W_OK):
            return
        mode = stat.S_IMODE(os.stat(path).st_mode)
        for side in (path + "-wal", path + "-shm"):
            if (os.path.exists(side) and not os.access(side, os.W_OK)
                    and os.stat(side).st_uid == os.geteuid()):
                os.chmod(side, mode)


def write_problem(engine: Engine, *, timeout_ms: int = 1000,
                  trust_commit_within: float = 0.0) -> str | None:
    """Why the database cannot take a write now (``None``: it can). Cheap: SQLite takes the
    write lock and writes nothing (``BEGIN IMMEDIATE``, a no-op header write, rollback);
    PostgreSQL answers and is not read-only (a standby, a read-only default).

    ``trust_commit_within``: a commit on ``engine`` that recent (and no error since) is
    answer enough — so that a readiness probe does not queue for SQLite's write lock behind
    the daemon's own batches under load."""
    last = _last_commit.get(engine)
    if trust_commit_within and last is not None \
            and time.monotonic() - last < trust_commit_within:
        return None
    try:
        with engine.connect() as conn:
            if engine.dialect.name != "sqlite":
                read_only = conn.exec_driver_sql("SHOW transaction_read_only").scalar()
                return None if read_only == "off" else "the database is read-only"
            raw = conn.connection.dbapi_connection  # no SQLAlchemy begin hook on this path
            assert raw is not None
            try:
                _sqlite_probe(raw, timeout_ms)
            except sqlite3.OperationalError as exc:
                if any(s in str(exc).lower() for s in _SQLITE_STALE):
                    conn.invalidate()
                    _dispose_all(engine)
                raise
        return None
    except Exception as exc:
        first = str(exc).splitlines()[0] if str(exc) else ""
        return f"{type(exc).__name__}: {first}"[:300]


def database_fault(exc: BaseException) -> str | None:
    """Why a failed transaction was the database's fault rather than its statements'
    (read-only, locked past the busy timeout, disk full or failing, connection lost,
    a standby), or ``None`` when it may have been the statements'.

    The answer comes from the error itself: a probe made afterwards can succeed on a
    fresh connection (the failed one was dropped) and wrongly put the blame on the events.
    """
    if not isinstance(exc, DBAPIError):
        return None
    orig = exc.orig
    first = (str(orig).splitlines() or [""])[0][:200]
    if exc.connection_invalidated:
        return f"connection dropped: {first}"
    if isinstance(orig, sqlite3.OperationalError):
        return first if any(s in first.lower() for s in _SQLITE_UNAVAILABLE) else None
    code = str(getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None) or "")
    if code in _PG_STALE or code.startswith(_PG_UNAVAILABLE):
        return f"{code}: {first}"
    return None


def _sqlite_probe(raw: Any, timeout_ms: int) -> None:
    old = raw.execute("PRAGMA busy_timeout").fetchone()[0]
    raw.execute(f"PRAGMA busy_timeout={int(timeout_ms)}")
    try:
        raw.execute("BEGIN IMMEDIATE")
        try:
            version = int(raw.execute("PRAGMA user_version").fetchone()[0])
            raw.execute(f"PRAGMA user_version={version}")  # needs a writable file
        finally:
            if raw.in_transaction:  # SQLite may have rolled back by itself (I/O errors)
                raw.execute("ROLLBACK")
    finally:
        raw.execute(f"PRAGMA busy_timeout={int(old)}")


def writable(engine: Engine) -> bool:
    """Tell whether the database can take a write now (see :func:`write_problem`)."""
    return write_problem(engine) is None


def _enable_wal(cur: Any, busy_timeout_ms: int) -> None:
    """Switch to WAL once; the switch ignores the busy handler, so retry while another
    process (a replica starting at the same moment) holds the database."""
    deadline = time.monotonic() + max(busy_timeout_ms, 1000) / 1000
    while True:
        try:
            if cur.execute("PRAGMA journal_mode").fetchone()[0] == "wal":
                return
            cur.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)
