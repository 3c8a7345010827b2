"""``resolve`` answers kept while the registry does not change (assetd/registry/answers.py).

A kept answer is served only while the registry is at the version it was read at: after a
registration's outcome the next ``resolve`` shows it; a change made outside the daemon (by
hand, another process) on SQLite is seen at once; on PostgreSQL a replica's commit reaches
the other replica's cache with its NATS notice.
"""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client import generate_latest

from assetd.client import AssetClient
from assetd.daemon.app import Daemon
from assetd.daemon.embedded import EmbeddedNats
from assetd.registry.answers import CountedAnswers, SqliteAnswers
from tests.conftest import daemon_settings, running_daemon
from tests.helpers import relayed


async def _resolve(d: Daemon, asset: str, selector: str = "latest", **kw: Any) -> Any:
    """One resolve answered by daemon ``d`` itself (not whichever replica NATS picks)."""
    body = orjson.dumps({"asset": asset, "instance": selector, "branch": "main", **kw})
    reply, code = await d.queries.answer("fraud", "resolve", body)
    assert code is None, reply
    return orjson.loads(reply)["result"]


async def test_a_kept_answer_never_outlives_a_commit(daemon: Daemon,
                                                     client: AssetClient) -> None:
    """Repeated resolves are answered from the cache; each registration's outcome is
    followed by a resolve that shows it; ``at`` is never kept."""
    assert daemon.answers.enabled
    for n in range(1, 4):
        await client.register_data("features", wait=True, annotations={"n": n})
        await relayed(client)  # the relay's own commit (PostgreSQL) would let go as well
        before = daemon.answers.hits
        for _ in range(5):
            found = await client.peek("features")
            assert found["instance"] == f"v{n}" and found["annotations"] == {"n": n}
        # the repeats came from the cache (one may follow a commit of the scheduler's lease)
        assert daemon.answers.hits >= before + 3
    for version in ("v2", "v3", "v1"):
        await client.request_promotion("features", version, reason="test", force=True)
        for _ in range(3):
            assert (await client.peek("features", "@champion"))["instance"] == version
    hits = daemon.answers.hits
    for _ in range(3):
        found = await client.peek("features", "@champion", at=datetime.now(UTC))
        assert found["instance"] == "v1"
    assert daemon.answers.hits == hits, "an answer with `at` is not kept"
    exposed = generate_latest(daemon.metrics.registry).decode()
    assert f"assetd_query_cache_hits_total {float(hits)}" in exposed, exposed
    assert f"assetd_query_cache_misses_total {float(daemon.answers.misses)}" in exposed
    assert daemon.answers.misses >= 7  # each first resolve after a change, and the `at`s


async def test_sqlite_sees_a_change_made_outside_the_daemon(
        nc: Any, nats_server: EmbeddedNats, tmp_path: Path) -> None:
    """Another connection to the file (here sqlite3 by hand) changes an instance: the next
    resolve reads it, because the version is SQLite's own ``data_version``."""
    db = tmp_path / "registry.db"
    async with running_daemon(daemon_settings(nats_server.url, f"sqlite:///{db}",
                                              tmp_path)) as d:
        assert isinstance(d.answers, SqliteAnswers)
        async with AssetClient("fraud", settings=d.settings, timeout=15) as c:
            await c.register_data("features", wait=True, annotations={"n": 1})
        assert (await _resolve(d, "features"))["annotations"] == {"n": 1}
        hits = d.answers.hits
        assert (await _resolve(d, "features"))["annotations"] == {"n": 1}
        assert d.answers.hits == hits + 1
        with sqlite3.connect(db) as conn:
            conn.execute("""UPDATE instance SET annotations = '{"n": 2}'""")
        assert (await _resolve(d, "features"))["annotations"] == {"n": 2}


async def test_cache_off_answers_the_same(nc: Any, nats_server: EmbeddedNats,
                                          tmp_path: Path) -> None:
    """ASSETD_QUERY_CACHE=0: no cache, same answers."""
    settings = daemon_settings(nats_server.url, f"sqlite:///{tmp_path / 'r.db'}", tmp_path,
                               query_cache=0)
    async with running_daemon(settings) as d, \
            AssetClient("fraud", settings=d.settings, timeout=15) as c:
        assert d.queries.cache is None
        await c.register_data("features", wait=True)
        assert (await c.peek("features"))["instance"] == "v1"
        assert d.answers.hits == 0


async def test_postgres_replicas_let_go_when_the_other_commits(
        nc: Any, nats_server: EmbeddedNats, tmp_path: Path, pg_url: str) -> None:
    """Two replicas on one PostgreSQL registry, each with a kept answer: whichever applies
    the next registration, the other's cache lets go with the NATS notice."""
    s1 = daemon_settings(nats_server.url, pg_url, tmp_path / "a")
    s2 = daemon_settings(nats_server.url, pg_url, tmp_path / "b")
    async with running_daemon(s1) as d1, running_daemon(s2) as d2, \
            AssetClient("fraud", settings=s1, timeout=15) as c:
        assert isinstance(d1.answers, CountedAnswers) and isinstance(d2.answers, CountedAnswers)
        for n in range(1, 6):
            await c.register_data("features", wait=True)
            await relayed(c)
            for d in (d1, d2):
                await _until_version(d, f"v{n}")
                await _kept(d, f"v{n}")


async def _kept(d: Daemon, want: str) -> None:
    """A repeat is answered from the cache (retried: a scheduler lease renewal on either
    replica is a commit too, and lets go)."""
    for _ in range(3):
        hits = d.answers.hits
        assert (await _resolve(d, "features"))["instance"] == want
        if d.answers.hits == hits + 1:
            return
    pytest.fail("no resolve was answered from the cache")


async def _until_version(d: Daemon, want: str) -> None:
    """The replica that did not apply hears the notice within a second."""
    for _ in range(100):
        if (await _resolve(d, "features"))["instance"] == want:
            return
        await asyncio.sleep(0.01)
    pytest.fail(f"replica still answers an old version after 1 s (want {want})")
