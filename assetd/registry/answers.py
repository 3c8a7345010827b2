"""Answers to ``resolve`` kept while the registry does not change (``ASSETD_QUERY_CACHE``).

A model server asks "which instance is ``fraud_model@champion``?" far more often than the
answer changes. A ``resolve`` reply (without ``at``) is a function of the registry's state
alone, so the exact reply bytes are kept, keyed by the request, under the *version* of the
registry they were read at; a reply is served only while the registry is still at that
version. The version is read before the registry is, so a change that lands during the
read leaves the stored reply already outdated, never served.

What the version is depends on the database:

- **SQLite**: ``PRAGMA data_version`` on a connection of the cache's own, which changes as
  soon as any other connection commits — this daemon's writer, another process on the same
  file, ``sqlite3`` by hand. A reply is exactly as fresh as a read of the database made at
  the moment of the request (about 7 us per check).
- **PostgreSQL**: a counter of this process, moved by every transaction of its writer
  engine (before its commit, during which the cache is not used, and after it) and by a
  notice each replica publishes on NATS after its commits (:data:`wire.changed_subject`),
  and when the connection to NATS is re-established. A commit on *another* replica reaches
  this cache with that notice: for the time it takes to cross NATS (well under a
  millisecond on one server) a reply can miss it. Set ``ASSETD_QUERY_CACHE=0`` where that
  window matters; docs/architecture.md says more.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.engine import make_url

from assetd.registry.engine import sqlite_connect

# A transaction that said "committing" but never came back (its connection lost): the
# cache is used again after this long without it.
_STUCK_COMMIT_S = 10.0
Key = tuple[str, bytes]


class AnswerCache:
    """Reply bytes by request, each valid for one version of the registry."""

    def __init__(self, *, max_entries: int) -> None:
        self.max_entries = max_entries
        self._entries: dict[Key, tuple[Any, bytes]] = {}
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    @property
    def enabled(self) -> bool:
        return self.max_entries > 0

    def version(self) -> Any:
        """The registry's version now; ``None``: do not use the cache now."""
        raise NotImplementedError

    def get(self, key: Key, *, count_miss: bool = True) -> bytes | None:
        """The reply stored for ``key`` if the registry has not changed since
        (``count_miss`` False: a first look, the miss is counted by the one after it)."""
        if not self.enabled:
            return None
        found = self._entries.get(key)
        now = None if found is None else self.version()
        if found is None or now is None or found[0] != now:
            self.misses += count_miss
            return None
        self.hits += 1
        return found[1]

    def put(self, key: Key, reply: bytes, version: Any) -> None:
        """Keep ``reply``, read at ``version`` (from :meth:`version` before the read)."""
        if not self.enabled or version is None:
            return
        with self._lock:
            if len(self._entries) >= self.max_entries and key not in self._entries:
                self._entries.pop(next(iter(self._entries)))  # the oldest
            self._entries[key] = (version, reply)

    def close(self) -> None:
        self._entries.clear()


class SqliteAnswers(AnswerCache):
    """Versioned by ``PRAGMA data_version`` (see the module's text)."""

    def __init__(self, *, path: str, engine: Engine, max_entries: int) -> None:
        super().__init__(max_entries=max_entries)
        self.path = path
        self._conn: sqlite3.Connection | None = None
        self._conn_lock = threading.Lock()
        # A read-only or failing file makes the engines drop every connection to it (SQLite
        # lets go of the file's read-only state only once all are closed): this one too.
        event.listen(engine, "engine_disposed", lambda _e: self.reset())

    def reset(self) -> None:
        """Close the version connection (the next check opens a new one)."""
        with self._conn_lock:
            self._drop()

    def version(self) -> Any:
        with self._conn_lock:
            try:
                if self._conn is None:
                    self._conn = sqlite_connect(self.path, isolation_level=None,
                                                check_same_thread=False, timeout=0.05)
                    if self._conn is None:  # the file's connections are being reset
                        return None
                return self._conn.execute("PRAGMA data_version").fetchone()[0]
            except sqlite3.Error:  # locked, read-only, gone: read the registry instead
                self._drop()
                return None

    def _drop(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
            self._conn = None

    def close(self) -> None:
        super().close()
        self.reset()


class CountedAnswers(AnswerCache):
    """Versioned by a counter that this process's commits and the peers' notices move."""

    def __init__(self, *, writer: Engine, max_entries: int,
                 committed: Callable[[], None] = lambda: None) -> None:
        super().__init__(max_entries=max_entries)
        self._counter = 0
        self._committing: dict[int, float] = {}  # id of the connection record -> since
        self.committed = committed  # after each local commit (the daemon tells its peers)
        event.listen(writer, "commit", self._before_commit)
        event.listen(writer, "checkin", self._after_transaction)

    def version(self) -> Any:
        if self._committing:
            now = time.monotonic()
            if any(now - since < _STUCK_COMMIT_S for since in list(self._committing.values())):
                return None
        return self._counter

    def changed(self) -> None:
        """The registry changed elsewhere (a peer's notice, a reconnect): nothing stored is
        valid any more."""
        with self._lock:
            self._counter += 1
            self._entries.clear()

    def _before_commit(self, conn: Any) -> None:
        with self._lock:
            self._counter += 1
            self._committing[id(conn.connection._connection_record)] = time.monotonic()

    def _after_transaction(self, _dbapi: Any, record: Any) -> None:
        if self._committing.pop(id(record), None) is None:
            return  # a read, a rollback: nothing committed
        self.changed()
        self.committed()


def answer_cache(url: str, writer: Engine, *, max_entries: int,
                 committed: Callable[[], None] = lambda: None) -> AnswerCache:
    """The cache for the registry at ``url`` (``max_entries`` 0: none)."""
    u = make_url(url)
    if u.get_backend_name() == "sqlite" and u.database and u.database != ":memory:":
        return SqliteAnswers(path=u.database, engine=writer, max_entries=max_entries)
    return CountedAnswers(writer=writer, max_entries=max_entries, committed=committed)
