"""Scheduled work on the registry: freshness (``asset_stale``) and pending timeouts.

Each job runs as one transaction on the writer engine, with outbound events through the
outbox like any event's; their ids derive from what they report, so a job that runs twice
(two leaders for an instant, or a retry) publishes once.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from fnmatch import fnmatchcase
from typing import Any

from sqlalchemy import Engine, and_, select

from assetd.handlers.rules_step import _log
from assetd.handlers.tx import InstanceRef, Tx
from assetd.registry import repo
from assetd.registry.tables import DECISION, INSTANCE, STATS
from assetd.rules.engine import is_stale
from assetd.rules.loader import LoadedRules
from assetd.schemas.envelope import iso
from assetd.schemas.outbound import AssetStale, InstanceAbandoned


def check_freshness(engine: Engine, *, rules: LoadedRules | None, prefix: str) -> int:
    """Publish ``asset_stale`` once per stale episode; return how many were published."""
    if rules is None or not any(r.freshness for r in rules.rules.rules):
        return 0
    with engine.begin() as conn:
        tx = Tx(conn=conn, now=datetime.now(UTC), prefix=prefix, rules=rules)
        found = 0
        for row in _latest_ready(tx):
            rule = next((r for r in rules.rules.rules if fnmatchcase(row.asset, r.asset) and (
                r.branches is None or any(fnmatchcase(row.branch, b) for b in r.branches))),
                None)
            if rule is None or rule.freshness is None:
                continue  # the first matching rule decides, and it has no freshness
            age = (tx.now - _aware(row.created_at)).total_seconds()
            if not is_stale(age, rule.freshness.max_age) or _flagged(tx, row):
                continue
            inst = InstanceRef.of(row)
            _log(tx, inst, "stale", None, f"stale:{row.id}",
                 {"max_age_seconds": rule.freshness.max_age, "age_seconds": round(age, 3)})
            tx.emit(project=row.project, branch=row.branch, asset=row.asset,
                    cause=None, key=f"stale:{row.id}",
                    data=AssetStale(last_instance=inst.name,
                                    last_refreshed_at=iso(row.created_at),
                                    max_age_seconds=rule.freshness.max_age))
            tx.keep()
            found += 1
        tx.flush()
    return found


def _latest_ready(tx: Tx) -> list[Any]:
    """The latest ready, not invalidated instance of every (project, branch, asset): one
    row per asset through the maintained counters, not a scan of every instance."""
    q = select(INSTANCE).join(STATS, and_(INSTANCE.c.project == STATS.c.project,
                                          INSTANCE.c.branch == STATS.c.branch,
                                          INSTANCE.c.asset == STATS.c.asset,
                                          INSTANCE.c.version == STATS.c.latest))
    return list(tx.conn.execute(q))


def _flagged(tx: Tx, row: Any) -> bool:
    """This episode (no newer ready instance since ``row``) was reported already."""
    q = select(DECISION.c.id).where(
        DECISION.c.project == row.project, DECISION.c.branch == row.branch,
        DECISION.c.asset == row.asset, DECISION.c.instance == f"v{row.version}",
        DECISION.c.outcome == "stale").limit(1)
    return tx.conn.execute(q).first() is not None


def abandon_pending(engine: Engine, *, timeout: float, prefix: str) -> int:
    """Instances pending longer than ``timeout`` become ``abandoned``; return how many."""
    with engine.begin() as conn:
        tx = Tx(conn=conn, now=datetime.now(UTC), prefix=prefix)
        cutoff = tx.now - timedelta(seconds=timeout)
        rows = list(conn.execute(select(INSTANCE).where(INSTANCE.c.state == "pending",
                                                        INSTANCE.c.created_at < cutoff)))
        for row in rows:
            repo.update_instance(conn, instance_id=row.id,
                                 values={"state": "abandoned", "updated_at": tx.now})
            tx.emit(project=row.project, branch=row.branch, asset=row.asset,
                    cause=None, key=f"abandoned:{row.id}",
                    data=InstanceAbandoned(instance=f"v{row.version}",
                                           pending_since=iso(row.created_at),
                                           reason=f"pending for more than {timeout:g} s"))
            tx.keep()
        tx.flush()
    return len(rows)


def _aware(ts: datetime) -> datetime:
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)
