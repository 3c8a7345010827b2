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


def test_upgrade_keeps_data_from_the_first_revision(tmp_path: Path) -> None:
    """A registry created by the first release survives the upgrade to head."""
    from datetime import UTC, datetime

    from alembic import command
    from sqlalchemy import text

    from assetd.registry.migrate import alembic_config

    url = f"sqlite:///{tmp_path / 'old.db'}"
    command.upgrade(alembic_config(url), "0001")
    engine = make_engine(url)
    now = datetime.now(UTC).isoformat(" ")
    try:
        with engine.begin() as conn:
            conn.execute(text(
                "INSERT INTO instance (project, branch, asset, version, kind, state, validity, "
                "annotations, tags, reference, producer, event_id, created_at, updated_at) "
                "VALUES ('p', 'main', 'a', 1, 'data', 'ready', 'valid', '{\"x\": 1.5}', '{}', "
                "'{}', 'me', 'e1', :now, :now)"), {"now": now})
        upgrade(url)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT annotations FROM instance")).scalar() == \
                '{"x": 1.5}'
            assert conn.execute(text("SELECT count(*) FROM alias_history")).scalar() == 0
    finally:
        engine.dispose()
    assert current_revision(url) == head_revision()
