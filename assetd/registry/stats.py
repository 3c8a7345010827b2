"""The maintained per-asset counters (``asset_stats``): instance count and latest ready
version, written with the batch that changes them — one statement for the batch.

Registrations add to the count and raise the latest version (an upsert per distinct
(project, branch, asset) of the batch); a state or validity change re-reads the latest
version from the unique version index (the newest ready, not invalidated instance: an
index scan downwards that stops at the first match).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Update, bindparam, select, update

from assetd.registry import bulk
from assetd.registry.tables import INSTANCE, STATS

Key = tuple[str, str, str]  # (project, branch, asset)
# Add the batch's count; raise ``latest`` only to a higher version (a new ready instance)
_ADD = ("ON CONFLICT (project, branch, asset) DO UPDATE SET "
        "instances = asset_stats.instances + excluded.instances, "
        "latest = CASE WHEN excluded.latest IS NOT NULL AND (asset_stats.latest IS NULL "
        "OR excluded.latest > asset_stats.latest) THEN excluded.latest "
        "ELSE asset_stats.latest END")


def _recompute() -> Update:
    key = (STATS.c.project == bindparam("k_project"), STATS.c.branch == bindparam("k_branch"),
           STATS.c.asset == bindparam("k_asset"))
    newest = (select(INSTANCE.c.version)
              .where(INSTANCE.c.project == STATS.c.project, INSTANCE.c.branch == STATS.c.branch,
                     INSTANCE.c.asset == STATS.c.asset, INSTANCE.c.state == "ready",
                     INSTANCE.c.validity != "invalidated")
              .order_by(INSTANCE.c.version.desc()).limit(1).scalar_subquery())
    return update(STATS).where(*key).values(latest=newest)


_RECOMPUTE = _recompute()


def add(conn: Connection, *, counts: dict[Key, tuple[int, int | None]]) -> None:
    """Add ``n`` instances to each key's count and raise its latest version to ``latest``
    (``(n, latest)`` per key; ``latest`` None: no new ready instance)."""
    if counts:
        rows = [{"project": p, "branch": b, "asset": a, "instances": n, "latest": v}
                for (p, b, a), (n, v) in sorted(counts.items())]
        bulk.insert(conn, STATS, rows, suffix=_ADD)


def recompute(conn: Connection, *, keys: set[Key]) -> None:
    """Re-read the latest ready, not invalidated version of each key (after state or
    validity changes)."""
    if keys:
        conn.execute(_RECOMPUTE, [{"k_project": p, "k_branch": b, "k_asset": a}
                                  for p, b, a in sorted(keys)])


class Pending:
    """What one batch changes in the counters: an event's share is kept only when its
    savepoint is released (``keep``), dropped when it rolls back (``drop``)."""

    def __init__(self) -> None:
        self.counts: dict[Key, tuple[int, int | None]] = {}
        self.dirty: set[Key] = set()
        self._event: list[tuple[Key, int | None]] = []
        self._event_dirty: set[Key] = set()

    def created(self, key: Key, ready_version: int | None) -> None:
        """One instance was inserted (its version when it is ready)."""
        self._event.append((key, ready_version))

    def changed(self, key: Key) -> None:
        """An instance of ``key`` changed state or validity."""
        self._event_dirty.add(key)

    def keep(self) -> None:
        """The current event stands."""
        for key, v in self._event:
            n, top = self.counts.get(key, (0, None))
            self.counts[key] = (n + 1, top if v is None or (top or 0) >= v else v)
        self.dirty |= self._event_dirty
        self.drop()

    def drop(self) -> None:
        """The current event was undone."""
        self._event, self._event_dirty = [], set()

    def write(self, conn: Connection) -> Any:
        """Write the kept changes: the upsert first, then the re-reads (a re-read sees every
        instance of the transaction, so it must come last)."""
        add(conn, counts=self.counts)
        recompute(conn, keys=self.dirty)
        self.counts, self.dirty = {}, set()
