"""The maintained per-asset counters behind ``assets``: right through every change, and
filled from existing instances by the migration."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from alembic import command
from sqlalchemy import Engine, case, func, select, text

from assetd.client import AssetClient
from assetd.daemon.app import Daemon
from assetd.registry.engine import make_engine
from assetd.registry.migrate import alembic_config, upgrade
from assetd.registry.stats import Pending
from assetd.registry.tables import INSTANCE, STATS


def _recount(engine: Engine) -> dict[tuple[str, str, str], tuple[int, int | None]]:
    """The counters as a full count over every instance would give them."""
    ok = (INSTANCE.c.state == "ready") & (INSTANCE.c.validity != "invalidated")
    q = (select(INSTANCE.c.project, INSTANCE.c.branch, INSTANCE.c.asset, func.count(),
                func.max(case((ok, INSTANCE.c.version))))
         .group_by(INSTANCE.c.project, INSTANCE.c.branch, INSTANCE.c.asset))
    with engine.connect() as conn:
        return {(p, b, a): (n, v) for p, b, a, n, v in conn.execute(q)}


def _kept(engine: Engine) -> dict[tuple[str, str, str], tuple[int, int | None]]:
    with engine.connect() as conn:
        return {(r.project, r.branch, r.asset): (r.instances, r.latest)
                for r in conn.execute(select(STATS))}


async def _summary(client: AssetClient, asset: str, branch: str = "main") -> tuple[Any, ...]:
    row = next(a for a in await client.list_assets(branch=branch) if a["asset"] == asset)
    return row["instances"], row["latest"]


async def test_counters_follow_registrations_and_lifecycle(client: AssetClient,
                                                           daemon: Daemon) -> None:
    """Counts and latest stay right through ready and pending registrations, pending →
    ready, invalidation of the latest (back to the one before) and its restoration."""
    for _ in range(3):
        await client.register_model("m", wait=True)
    await client.register_model("m", state="pending", wait=True)
    assert await _summary(client, "m") == (4, "v3")
    await client.update_instance("m", "v4", state="ready", reason="done")
    assert await _summary(client, "m") == (4, "v4")
    await client.update_instance("m", "v4", validity="invalidated", reason="bad")
    assert await _summary(client, "m") == (4, "v3")
    await client.update_instance("m", "v3", validity="deprecated", reason="old")
    assert await _summary(client, "m") == (4, "v3")
    await client.update_instance("m", "v4", validity="valid", reason="fine after all")
    assert await _summary(client, "m") == (4, "v4")
    await client.register_model("m", branch="dev", wait=True)
    assert await _summary(client, "m", "dev") == (1, "v1")
    assert _kept(daemon.writer) == _recount(daemon.writer)


async def test_counters_right_when_one_batch_mixes_changes(client: AssetClient,
                                                           daemon: Daemon) -> None:
    """Registrations, finalizations, invalidations and a rejected event published at once
    (applied in few batches) leave the counters equal to a full count."""
    ids = [await client.register_data(f"d{i % 3}", state="pending" if i % 4 == 0 else "ready",
                                      wait=False) for i in range(40)]
    await asyncio.gather(*[client.outcome(i) for i in ids])
    ids = [await client.update_instance(f"d{i}", f"v{v}", reason="r", wait=False, **kw)
           for i in range(3) for v, kw in [(1, {"state": "ready"}),
                                           (14, {"validity": "invalidated"}),
                                           (13, {"validity": "invalidated"})]]
    ids.append(await client.register_model("d0", wait=False))  # wrong kind: rejected
    ids += [await client.register_data("d1", wait=False) for _ in range(3)]
    await asyncio.gather(*[client.outcome(i) for i in ids])
    assert _kept(daemon.writer) == _recount(daemon.writer)
    assert _kept(daemon.writer)[("fraud", "main", "d1")][0] == 16


def test_pending_keeps_only_kept_events() -> None:
    """An event rolled back (its savepoint undone) leaves no trace in the counters."""
    p = Pending()
    key = ("p", "main", "a")
    p.created(key, 1)
    p.keep()
    p.created(key, 2)
    p.changed(key)
    p.drop()
    p.created(key, None)
    p.keep()
    assert (p.counts, p.dirty) == ({key: (2, 1)}, set())


def test_migration_fills_counters_from_existing_instances(db_url: str) -> None:
    """A registry at revision 0004 gets counters equal to a full count when upgraded."""
    command.upgrade(alembic_config(db_url), "0004")
    engine = make_engine(db_url)
    now = datetime.now(UTC)
    rows = [("a", 1, "ready", "valid"), ("a", 2, "ready", "invalidated"),
            ("a", 3, "pending", "valid"), ("b", 1, "pending", "valid")]
    try:
        with engine.begin() as conn:
            for asset, version, state, validity in rows:
                conn.execute(INSTANCE.insert().values(
                    project="p", branch="main", asset=asset, version=version, kind="data",
                    state=state, validity=validity, annotations={}, tags={}, reference={},
                    producer="me", event_id=f"{asset}{version}", created_at=now,
                    updated_at=now))
        upgrade(db_url)
        assert _kept(engine) == {("p", "main", "a"): (3, 1), ("p", "main", "b"): (1, None)}
        assert _kept(engine) == _recount(engine)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM asset_stats")).scalar() == 2
    finally:
        engine.dispose()


def _plan(conn: Any, stmt: Any, params: dict[str, Any]) -> str:
    compiled = stmt.compile(dialect=conn.dialect)
    values = compiled.construct_params(params)
    args = tuple(values[k] for k in compiled.positiontup) if compiled.positional else values
    if conn.dialect.name == "sqlite":
        rows = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}", args)
        return "\n".join(r[-1] for r in rows)
    conn.exec_driver_sql("SET enable_seqscan = off")  # an empty table: is an index usable?
    return "\n".join(r[0] for r in conn.exec_driver_sql(f"EXPLAIN {compiled}", args))


def test_resolve_and_instances_are_bound_by_the_version_index(db_url: str) -> None:
    """``resolve latest``, ``resolve vN`` and a page of ``instances`` read the unique
    (project, branch, asset, version) index, in its order: no scan, no sort."""
    from assetd.registry import repo

    upgrade(db_url)
    engine = make_engine(db_url, writer=False)
    key = {"k_project": "p", "k_branch": "main", "k_asset": "a"}
    page = (select(INSTANCE).where(INSTANCE.c.project == "p", INSTANCE.c.branch == "main",
                                   INSTANCE.c.asset == "a", INSTANCE.c.version < 100)
            .order_by(INSTANCE.c.version.desc()).limit(51))
    try:
        with engine.connect() as conn:
            for stmt, params in [(repo._RESOLVE["latest"], {**key, "k_arg": 0}),
                                 (repo._RESOLVE["version"], {**key, "k_arg": 3}),
                                 (page, {})]:
                plan = _plan(conn, stmt, params)
                assert "SCAN instance" not in plan and "Seq Scan" not in plan, plan
                assert "TEMP B-TREE" not in plan and "Sort" not in plan, plan
                assert "sqlite_autoindex_instance_1" in plan or "uq_instance_version" in plan
    finally:
        engine.dispose()


def test_the_highest_version_reads_one_index_entry_even_with_a_generic_plan(
        pg_url: str) -> None:
    """``max_version`` (each batch, per asset) and search's first version read one entry of
    the version index. psycopg prepares a statement run five times, and PostgreSQL's generic
    plan for ``max(version) WHERE project, branch, asset`` read every instance of the asset:
    11 ms at 20,000, about a millisecond per registration at 1,000,000."""
    import re

    from assetd.registry import repo

    upgrade(pg_url)
    engine = make_engine(pg_url)
    try:
        fill = ("INSERT INTO instance (project, branch, asset, version, kind, state, "
                "validity, annotations, tags, reference, producer, event_id, created_at, "
                "updated_at) SELECT 'p', 'main', {asset}, {version}, 'model', 'ready', "
                "'valid', '{{}}', '{{}}', '{{}}', 't', 'e{n}' || i, now(), now() "
                "FROM generate_series(1, {rows}) AS i")
        with engine.begin() as conn:  # the statistics of a young registry: many small assets
            conn.exec_driver_sql(fill.format(asset="'s' || i", version=1, n=1, rows=200))
            conn.exec_driver_sql("ANALYZE instance")
        with engine.begin() as conn:  # then one asset grows before the next ANALYZE
            conn.exec_driver_sql(fill.format(asset="'a'", version="i", n=2, rows=3000))
        with engine.connect() as conn:
            sql = repo.versions_sql("postgresql", 1).replace("%s", "$1", 1)
            sql = sql.replace("%s", "$2", 1).replace("%s", "$3", 1)
            conn.exec_driver_sql(f"PREPARE highest(text, text, text) AS {sql}")
            conn.exec_driver_sql("SET plan_cache_mode = force_generic_plan")
            plan = "\n".join(r[0] for r in conn.exec_driver_sql(
                "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) EXECUTE highest('p', 'main', 'a')"))
            assert repo.max_version(conn, project="p", branch="main", asset="a") == 3000
            assert repo.max_version(conn, project="p", branch="main", asset="b") == 0
    finally:
        engine.dispose()
    scanned = [int(m) for m in re.findall(r"Scan.*actual rows=(\d+)", plan)]
    assert scanned and max(scanned) <= 1, plan
