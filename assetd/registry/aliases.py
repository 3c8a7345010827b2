"""Aliases, their history, decisions and check results: the write path of the rules step."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, and_, delete, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from assetd.errors import AssetdError
from assetd.registry.tables import (
    ALIAS,
    ALIAS_HISTORY,
    ASSET,
    CHECK,
    DECISION,
    EDGE,
    INSTANCE,
)


class AliasConflictError(AssetdError):
    """The alias no longer points where the decision read it: the batch is retried."""


def holder(conn: Connection, *, project: str, branch: str, asset: str, alias: str) -> Any:
    """The instance row holding the alias, or None."""
    q = (select(INSTANCE).join(ALIAS, ALIAS.c.instance_id == INSTANCE.c.id)
         .where(ALIAS.c.project == project, ALIAS.c.branch == branch, ALIAS.c.asset == asset,
                ALIAS.c.alias == alias))
    return conn.execute(q).first()


def aliases_held(conn: Connection, *, instance_id: int) -> list[str]:
    """The aliases an instance holds."""
    q = select(ALIAS.c.alias).where(ALIAS.c.instance_id == instance_id).order_by(ALIAS.c.alias)
    return list(conn.execute(q).scalars())


def move(conn: Connection, *, project: str, branch: str, asset: str, alias: str,
         expected: int | None, new: Any | None, now: datetime, decision_id: int | None,
         event_id: str) -> None:
    """Compare-and-set: point ``alias`` from ``expected`` to ``new`` (a row, or None to clear).

    Raises AliasConflictError if the alias does not point at ``expected`` any more.
    """
    key = and_(ALIAS.c.project == project, ALIAS.c.branch == branch, ALIAS.c.asset == asset,
               ALIAS.c.alias == alias)
    hist = and_(ALIAS_HISTORY.c.project == project, ALIAS_HISTORY.c.branch == branch,
                ALIAS_HISTORY.c.asset == asset, ALIAS_HISTORY.c.alias == alias)
    # The history must stay contiguous even when this transaction began before the one that
    # moved the alias last (it waited for the asset's lock), or clocks differ between hosts.
    now = max(now, datetime.now(UTC))
    last = conn.execute(select(func.max(ALIAS_HISTORY.c.held_from)).where(hist)).scalar()
    if last is not None:  # UTCDateTime: always timezone-aware
        now = max(now, last)
    if expected is None:
        assert new is not None
        dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
        stmt = (dialect.insert(ALIAS)
                .values(project=project, branch=branch, asset=asset, alias=alias,
                        instance_id=new.id, updated_at=now)
                .on_conflict_do_nothing(index_elements=["project", "branch", "asset", "alias"])
                .returning(ALIAS.c.alias))
        done = conn.execute(stmt).first() is not None
    elif new is None:
        done = conn.execute(delete(ALIAS).where(key, ALIAS.c.instance_id == expected)
                            ).rowcount == 1
    else:
        done = conn.execute(update(ALIAS).where(key, ALIAS.c.instance_id == expected)
                            .values(instance_id=new.id, updated_at=now)).rowcount == 1
    if not done:
        raise AliasConflictError(f"alias {alias} of {asset}@{branch} moved concurrently")
    conn.execute(update(ALIAS_HISTORY).where(hist, ALIAS_HISTORY.c.held_to.is_(None))
                 .values(held_to=now))
    if new is not None:
        conn.execute(insert(ALIAS_HISTORY).values(
            project=project, branch=branch, asset=asset, alias=alias, instance_id=new.id,
            version=new.version, held_from=now, held_to=None, decision_id=decision_id,
            event_id=event_id))


def previous_valid_holder(conn: Connection, *, project: str, branch: str, asset: str,
                          alias: str, current_id: int) -> Any:
    """The newest earlier holder of the alias that is still ready and valid, or None."""
    q = (select(INSTANCE).join(ALIAS_HISTORY, ALIAS_HISTORY.c.instance_id == INSTANCE.c.id)
         .where(ALIAS_HISTORY.c.project == project, ALIAS_HISTORY.c.branch == branch,
                ALIAS_HISTORY.c.asset == asset, ALIAS_HISTORY.c.alias == alias,
                INSTANCE.c.id != current_id, INSTANCE.c.state == "ready",
                INSTANCE.c.validity == "valid")
         .order_by(ALIAS_HISTORY.c.held_from.desc(), ALIAS_HISTORY.c.id.desc()).limit(1))
    return conn.execute(q).first()


def add_decision(conn: Connection, *, values: dict[str, Any]) -> int:
    """Append to the decision log; return the row id."""
    return int(conn.execute(insert(DECISION).returning(DECISION.c.id), values).scalar_one())


def last_outcome(conn: Connection, *, project: str, branch: str, asset: str,
                 instance: str, outcomes: tuple[str, ...]) -> str | None:
    """The newest decision outcome among ``outcomes`` for one instance, or None."""
    q = (select(DECISION.c.outcome)
         .where(DECISION.c.project == project, DECISION.c.branch == branch,
                DECISION.c.asset == asset, DECISION.c.instance == instance,
                DECISION.c.outcome.in_(outcomes))
         .order_by(DECISION.c.id.desc()).limit(1))
    return conn.execute(q).scalar()


def add_check(conn: Connection, *, values: dict[str, Any]) -> None:
    """Record a check result."""
    conn.execute(insert(CHECK), values)


def checks_for(conn: Connection, *, instance_id: int) -> dict[str, bool]:
    """The newest result of each check reported for an instance."""
    q = (select(CHECK.c.check, CHECK.c.passed).where(CHECK.c.instance_id == instance_id)
         .order_by(CHECK.c.id))
    return {name: bool(passed) for name, passed in conn.execute(q)}


def models_fed_by(conn: Connection, *, project: str, asset: str) -> list[tuple[str, str]]:
    """``(model asset, branch)`` for each branch where an instance of that model lists an
    instance of ``asset`` among its inputs."""
    up, down = INSTANCE.alias("up"), INSTANCE.alias("down")
    q = (select(down.c.asset, down.c.branch).distinct()
         .select_from(EDGE.join(up, up.c.id == EDGE.c.upstream_id)
                      .join(down, down.c.id == EDGE.c.downstream_id)
                      .join(ASSET, and_(ASSET.c.project == down.c.project,
                                        ASSET.c.asset == down.c.asset)))
         .where(EDGE.c.relation == "input", up.c.project == project, up.c.asset == asset,
                ASSET.c.kind == "model")
         .order_by(down.c.asset, down.c.branch))
    return [(row.asset, row.branch) for row in conn.execute(q)]
