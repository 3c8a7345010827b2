"""Copy a whole registry to another database (SQLite → PostgreSQL), table by table."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import func, select, text

from assetd.errors import ConfigError
from assetd.registry.engine import make_engine
from assetd.registry.migrate import current_revision, head_revision, upgrade
from assetd.registry.tables import metadata

CHUNK = 2000


def copy_registry(source: str, target: str,
                  progress: Callable[[str, int], None] = lambda _t, _n: None) -> dict[str, int]:
    """Copy every row; the target is migrated first and must be empty. Stop the daemons
    writing to ``source`` before, point them at ``target`` after."""
    if current_revision(source) != head_revision():
        raise ConfigError(f"the source registry is not at revision {head_revision()}; "
                          f"run `assetd migrate --db {source}` first")
    upgrade(target)
    src, dst = make_engine(source, writer=False), make_engine(target)
    counts: dict[str, int] = {}
    try:
        with src.connect() as read, dst.begin() as write:
            for table in metadata.sorted_tables:
                if write.execute(select(func.count()).select_from(table)).scalar():
                    raise ConfigError(f"the target's {table.name} table is not empty; copy "
                                      "into a fresh database")
            for table in metadata.sorted_tables:
                n = 0
                result = read.execution_options(yield_per=CHUNK).execute(select(table))
                for rows in result.partitions(CHUNK):
                    write.execute(table.insert(), [dict(r._mapping) for r in rows])
                    n += len(rows)
                counts[table.name] = n
                progress(table.name, n)
            if write.dialect.name == "postgresql":
                _reset_sequences(write)
    finally:
        src.dispose()
        dst.dispose()
    return counts


def _reset_sequences(conn: object) -> None:
    """PostgreSQL: move each serial id's sequence past the copied ids."""
    for table in metadata.sorted_tables:
        pk = list(table.primary_key.columns)
        if len(pk) == 1 and pk[0].autoincrement is not False and str(pk[0].type) == "INTEGER":
            col = pk[0].name
            conn.execute(text(  # type: ignore[attr-defined]
                f"SELECT setval(pg_get_serial_sequence('{table.name}', '{col}'), "
                f"COALESCE((SELECT MAX({col}) FROM {table.name}), 0) + 1, false)"))
