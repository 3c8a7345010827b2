"""Two daemon processes on one registry: versions stay unique and contiguous (1..N)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from assetd.client import AssetClient
from assetd.config import Settings
from assetd.daemon.embedded import EmbeddedNats
from tests.faults import DaemonProcess
from tests.helpers import envelope, out_events, stream_messages, wait_for

N = 600


@pytest.fixture
def replicas(nc: Any, nats_server: EmbeddedNats, db_url: str, tmp_path: Path,
             venv_bin: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Two ``assetd run`` processes sharing the NATS server and the registry."""
    procs = []
    for i in range(2):
        env = {**os.environ, "ASSETD_NATS_URL": nats_server.url, "ASSETD_DB_URL": db_url,
               "ASSETD_DATA_DIR": str(tmp_path / f"d{i}"), "ASSETD_HTTP_PORT": "0",
               "ASSETD_BATCH_SIZE": "50", "ASSETD_FETCH_TIMEOUT": "1"}
        log = open(tmp_path / f"d{i}.log", "wb")  # noqa: SIM115 - closed below
        procs.append(subprocess.Popen([str(venv_bin / "assetd"), "run"], env=env, stdout=log,
                                      stderr=subprocess.STDOUT))
        log.close()
    try:
        yield procs
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


async def _pids(client: AssetClient) -> set[int]:
    seen: set[int] = set()
    for _ in range(40):
        try:
            seen.add((await client.status())["pid"])
        except Exception:
            await asyncio.sleep(0.1)
    return seen


@pytest.mark.slow
async def test_two_daemons_allocate_contiguous_versions(
    replicas: list[subprocess.Popen[bytes]], nats_server: EmbeddedNats, js: Any, tmp_path: Path
) -> None:
    """N registrations raced through two daemons give exactly v1..vN, each applied once."""
    settings = Settings(nats_url=nats_server.url)
    async with AssetClient("fraud", settings=settings, timeout=10) as client:
        async def both_up() -> bool:
            for i, proc in enumerate(replicas):
                if proc.poll() is not None:
                    log = (tmp_path / f"d{i}.log").read_text()[-3000:]
                    raise AssertionError(f"replica {i} exited with {proc.returncode}:\n{log}")
            return await _two(client)

        await wait_for(both_up, timeout=60, what="both daemons answering")
        futures = []
        for i in range(N):
            ev = envelope("asset_registered", "racer", {"kind": "model",
                                                       "annotations": {"seq": i}})
            futures.append(await js.publish_async(
                "assetd.in.fraud.main.racer.asset_registered", orjson.dumps(ev),
                headers={"Nats-Msg-Id": ev["id"]}))
            if i % 3 == 0:  # and the same event again, without the header
                await js.publish("assetd.in.fraud.main.racer.asset_registered", orjson.dumps(ev))
        await asyncio.gather(*futures)

        async def all_created() -> bool:
            page = await client.list_instances("racer", limit=1)
            return bool(page["items"]) and page["items"][0]["version"] >= N

        await wait_for(all_created, timeout=120, what=f"{N} instances")
        versions, seqs = [], []
        before = None
        while True:
            page = await client.list_instances("racer", limit=500, before=before)
            versions += [i["version"] for i in page["items"]]
            seqs += [i["annotations"]["seq"] for i in page["items"]]
            if page["next"] is None:
                break
            before = page["next"]
        assert sorted(versions) == list(range(1, N + 1))
        assert sorted(seqs) == list(range(N)), "each event applied exactly once"
        [racer] = await client.list_assets()
        assert (racer["instances"], racer["latest"]) == (N, f"v{N}"), "counters kept by both"

        created = await wait_for(lambda: _n_created(js, N), timeout=60, what="outbound")
        assert len({e["id"] for e in created}) == N
        assert sorted(e["data"]["version"] for e in created) == list(range(1, N + 1))
        counts = [await _applied(client, pid) for pid in await _pids(client)]
        assert len(counts) == 2 and all(c > 0 for c in counts), f"both applied: {counts}"


async def _at_least(client: AssetClient, n: int) -> bool:
    page = await client.list_instances("racer", limit=1)
    return bool(page["items"]) and page["items"][0]["version"] >= n


async def _two(client: AssetClient) -> bool:
    return len(await _pids(client)) == 2


async def _n_created(js: Any, n: int) -> list[dict[str, Any]] | None:
    events = await out_events(js, "instance_created")
    return events if len(events) >= n else None


async def _applied(client: AssetClient, pid: int) -> int:
    for _ in range(60):
        st = await client.status()
        if st["pid"] == pid:
            return int(st["counters"].get("applied", 0))
    return -1


PROMO_RULES = """\
version: 1
rules:
  - asset: racer
    promote: {metric: f1, min_improvement: 0.0}
"""


@pytest.mark.slow
async def test_two_replicas_race_registrations_and_promotions_on_postgres(
    nc: Any, js: Any, nats_server: EmbeddedNats, pg_url: str, tmp_path: Path, venv_bin: Path
) -> None:
    """Registrations with rising and falling f1 plus manual promotions, raced through two
    daemons on one PostgreSQL: contiguous versions, one valid holder, contiguous history,
    every event applied once."""
    from sqlalchemy import text

    from assetd.registry.engine import make_engine
    from tests.test_alias_properties import check_invariants

    rules = tmp_path / "rules.yaml"
    rules.write_text(PROMO_RULES)
    procs = [DaemonProcess(venv_bin, {"ASSETD_NATS_URL": nats_server.url, "ASSETD_DB_URL": pg_url,
                                      "ASSETD_DATA_DIR": str(tmp_path / f"d{i}"),
                                      "ASSETD_BATCH_SIZE": "20", "ASSETD_RULES": str(rules)},
                           tmp_path / f"d{i}.log") for i in range(2)]
    for p in procs:
        p.start()
    n = 400
    try:
        settings = Settings(nats_url=nats_server.url)
        async with AssetClient("fraud", settings=settings, timeout=10) as client:
            await wait_for(lambda: _two(client), timeout=60, what="both replicas answering")
            futures = []
            for i in range(n):
                if i == 20:  # warm-up applied, so every promotion below has its target
                    await asyncio.gather(*futures)
                    await wait_for(lambda: _at_least(client, 20), timeout=60, what="warm-up")
                ev = envelope("asset_registered", "racer", {
                    "kind": "model", "annotations": {"seq": i, "f1": (i * 37 % 100) / 100}})
                futures.append(await js.publish_async(
                    "assetd.in.fraud.main.racer.asset_registered", orjson.dumps(ev),
                    headers={"Nats-Msg-Id": ev["id"]}))
                if i % 10 == 9 and i > 20:  # and a manual promotion, racing the registrations
                    req = envelope("promotion_requested", "racer", {
                        "instance": "latest-2", "reason": "race", "force": True})
                    futures.append(await js.publish_async(
                        "assetd.in.fraud.main.racer.promotion_requested", orjson.dumps(req),
                        headers={"Nats-Msg-Id": req["id"]}))
            await asyncio.gather(*futures)

            async def settled() -> bool:
                st = [await client.status() for _ in range(6)]
                done = sum({s["pid"]: s["counters"].get("applied", 0) + s["counters"].get(
                    "rejected", 0) for s in st}.values())
                return done >= n + (n - 20) // 10

            await wait_for(settled, timeout=120, what="every event applied or rejected")
        engine = make_engine(pg_url, writer=False)
        try:
            with engine.connect() as conn:
                rows = conn.execute(text(
                    "SELECT version, (annotations->>'seq')::int FROM instance "
                    "WHERE asset = 'racer' ORDER BY version")).all()
                decisions = conn.execute(text(
                    "SELECT count(*) FROM decision WHERE outcome = 'promoted'")).scalar()
            check_invariants(engine, "fraud")
        finally:
            engine.dispose()
        assert [v for v, _ in rows] == list(range(1, n + 1))
        assert sorted(s for _, s in rows) == list(range(n)), "each registration applied once"
        assert decisions and decisions > (n - 20) // 10, "promotions happened"
        assert await stream_messages(js, "ASSETD_DLQ") == []
    finally:
        for p in procs:
            assert p.stop() == 0, p.tail()
