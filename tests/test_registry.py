"""Registry: Alembic migrations on both databases, and the SQLite write lock."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import inspect

from assetd.registry.engine import make_engine
from assetd.registry.migrate import current_revision, head_revision, upgrade


def test_migrate_creates_schema_and_is_idempotent(db_url: str) -> None:
    """``upgrade`` creates every table at head; running it again changes nothing."""
    assert current_revision(db_url) is None
    upgrade(db_url)
    upgrade(db_url)
    assert current_revision(db_url) == head_revision()
    engine = make_engine(db_url, writer=False)
    try:
        tables = set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert {"asset", "instance", "lineage_edge", "alias", "decision", "inbox",
            "outbox", "alembic_version"} <= tables


def test_sqlite_writer_uses_wal_and_begin_immediate(tmp_path: Path) -> None:
    """Writers take the write lock at BEGIN, so version allocation cannot interleave."""
    url = f"sqlite:///{tmp_path / 'r.db'}"
    upgrade(url)
    a, b = make_engine(url, busy_timeout_ms=100), make_engine(url, busy_timeout_ms=100)
    try:
        with a.begin() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            import pytest
            from sqlalchemy.exc import OperationalError

            with pytest.raises(OperationalError, match="locked"), b.begin():
                pass
    finally:
        a.dispose()
        b.dispose()
