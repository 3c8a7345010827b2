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
from tests.helpers import envelope, out_events, wait_for

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
                "assetd.in.fraud.racer.asset_registered", orjson.dumps(ev),
                headers={"Nats-Msg-Id": ev["id"]}))
            if i % 3 == 0:  # and the same event again, without the header
                await js.publish("assetd.in.fraud.racer.asset_registered", orjson.dumps(ev))
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

        created = await wait_for(lambda: _n_created(js, N), timeout=60, what="outbound")
        assert len({e["id"] for e in created}) == N
        assert sorted(e["data"]["version"] for e in created) == list(range(1, N + 1))
        counts = [await _applied(client, pid) for pid in await _pids(client)]
        assert len(counts) == 2 and all(c > 0 for c in counts), f"both applied: {counts}"


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
