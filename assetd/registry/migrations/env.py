"""Alembic environment: one transaction per upgrade, serialized across processes."""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

from assetd.registry.engine import make_engine
from assetd.registry.tables import metadata

config = context.config
url = config.get_main_option("sqlalchemy.url")
assert url, "sqlalchemy.url is required"

engine = make_engine(url, writer=True)
with engine.connect() as conn, conn.begin():
    # SQLite: the writer engine's BEGIN IMMEDIATE already holds the database's write lock.
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(4242001)"))
    context.configure(connection=conn, target_metadata=metadata, render_as_batch=True,
                      compare_type=True)
    context.run_migrations()
engine.dispose()
