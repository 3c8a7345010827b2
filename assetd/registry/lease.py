"""A lease row with a time-to-live: whoever holds it runs the scheduled jobs."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Connection, or_, select
from sqlalchemy.dialects import postgresql, sqlite

from assetd.registry.tables import LEASE


def acquire(conn: Connection, *, name: str, holder: str, ttl: float, now: datetime) -> bool:
    """Take or renew the lease; True if ``holder`` holds it until ``now + ttl``.

    One statement: insert it, or take it over if it is ours or has expired.
    """
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    expires = now + timedelta(seconds=ttl)
    stmt = dialect.insert(LEASE).values(name=name, holder=holder, expires_at=expires)
    stmt = stmt.on_conflict_do_update(
        index_elements=["name"], set_={"holder": holder, "expires_at": expires},
        where=or_(LEASE.c.holder == holder, LEASE.c.expires_at < now),
    ).returning(LEASE.c.holder)
    row = conn.execute(stmt).first()
    return row is not None and row[0] == holder


def release(conn: Connection, *, name: str, holder: str) -> None:
    """Give the lease up (on shutdown) so another replica takes over at once."""
    conn.execute(LEASE.delete().where(LEASE.c.name == name, LEASE.c.holder == holder))


def current(conn: Connection, *, name: str) -> tuple[str, datetime] | None:
    """(holder, expires_at) or None."""
    row = conn.execute(select(LEASE.c.holder, LEASE.c.expires_at)
                       .where(LEASE.c.name == name)).first()
    return None if row is None else (row[0], row[1])
