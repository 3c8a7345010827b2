"""Scale-out on real processes: 3 nats-servers in a cluster (R3 streams), two daemons on
PostgreSQL; one NATS node and the lease-holding daemon are killed mid-stream."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import pytest
from sqlalchemy import text

from assetd.daemon.embedded import free_port, nats_server_binary
from assetd.registry.engine import make_engine
from tests.faults import DaemonProcess, Publisher, check_exactly_once, until
from tests.helpers import out_events

pytestmark = pytest.mark.slow
N = 2000


class Cluster:
    """Three nats-server processes with JetStream, routed to each other on loopback."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="assetd-cluster-"))
        self.ports = [free_port() for _ in range(3)]
        self.routes = [free_port() for _ in range(3)]
        self.procs: list[subprocess.Popen[bytes] | None] = [None, None, None]

    @property
    def url(self) -> str:
        return ",".join(f"nats://127.0.0.1:{p}" for p in self.ports)

    def start(self) -> None:
        routes = ", ".join(f"nats://127.0.0.1:{r}" for r in self.routes)
        for i in range(3):
            conf = self.root / f"n{i}.conf"
            conf.write_text(
                f'server_name: n{i}\nlisten: "127.0.0.1:{self.ports[i]}"\n'
                f'jetstream {{ store_dir: "{self.root / f"js{i}"}" }}\n'
                f'cluster {{ name: assetd, listen: "127.0.0.1:{self.routes[i]}", '
                f"routes: [{routes}] }}\n")
            self.procs[i] = subprocess.Popen([nats_server_binary(), "-c", str(conf)],
                                             stdout=subprocess.DEVNULL,
                                             stderr=subprocess.DEVNULL)

    def kill9(self, i: int) -> None:
        proc = self.procs[i]
        assert proc is not None
        proc.kill()
        proc.wait(10)

    def stop(self) -> None:
        for proc in self.procs:
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(10)
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    c = Cluster()
    c.start()
    try:
        yield c
    finally:
        c.stop()


async def _jetstream_ready(url: str) -> bool:
    try:
        nc = await nats.connect(url.split(","), max_reconnect_attempts=0, connect_timeout=1)
    except Exception:
        return False
    try:
        await nc.jetstream().account_info()
        return True
    except Exception:
        return False
    finally:
        await nc.close()


def pg_ledger(url: str) -> dict[str, list[tuple[int, int]]]:
    engine = make_engine(url, writer=False)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT asset, version, (annotations->>'seq')::int "
                                     "FROM instance ORDER BY asset, version")).all()
    finally:
        engine.dispose()
    out: dict[str, list[tuple[int, int]]] = {}
    for asset, version, seq in rows:
        out.setdefault(asset, []).append((version, seq))
    return out


def pg_scalar(url: str, sql: str) -> Any:
    engine = make_engine(url, writer=False)
    try:
        with engine.connect() as conn:
            return conn.execute(text(sql)).scalar()
    except Exception:
        return None
    finally:
        engine.dispose()


async def test_cluster_node_and_replica_die_mid_stream(cluster: Cluster, pg_url: str,
                                                       venv_bin: Path, tmp_path: Path) -> None:
    """Nothing lost, nothing applied twice, and the surviving daemon takes the lease."""
    await until(lambda: _jetstream_ready(cluster.url), 60, "JetStream cluster ready")
    daemons = [DaemonProcess(venv_bin, {
        "ASSETD_NATS_URL": cluster.url, "ASSETD_DB_URL": pg_url,
        "ASSETD_DATA_DIR": str(tmp_path / f"d{i}"), "ASSETD_STREAM_REPLICAS": "3",
        "ASSETD_LEASE_TTL": "2", "ASSETD_SCHEDULER_INTERVAL": "0.5", "ASSETD_ACK_WAIT": "5",
        "ASSETD_BATCH_SIZE": "50", "ASSETD_LOG_LEVEL": "WARNING"}, tmp_path / f"d{i}.log")
        for i in range(2)]
    daemons[0].start()
    await until(lambda: pg_scalar(pg_url, "SELECT holder FROM lease"), 60, "first daemon up")
    daemons[1].start()
    applied = lambda: pg_scalar(pg_url, "SELECT count(*) FROM instance") or 0  # noqa: E731
    pub = Publisher(cluster.url, N)
    publishing = asyncio.create_task(pub.run(window=20))
    try:
        await until(lambda: applied() >= N // 4, 120, "a quarter applied")
        cluster.kill9(2)  # one NATS node dies
        await until(lambda: applied() >= N // 2, 120, "half applied")
        assert all(d.proc and d.proc.poll() is None for d in daemons), \
            daemons[0].tail() + daemons[1].tail()
        holder = str(pg_scalar(pg_url, "SELECT holder FROM lease"))
        victim = next(d for d in daemons if d.proc and f"/{d.proc.pid}/" in holder)
        survivor = next(d for d in daemons if d is not victim)
        victim.kill9()  # and the daemon holding the scheduler lease
        await asyncio.wait_for(publishing, 180)
        await until(lambda: applied() >= N, 180, "everything applied")
        check_exactly_once(pg_ledger(pg_url), pub.acked, set())
        assert survivor.proc is not None
        await until(lambda: f"/{survivor.proc.pid}/" in str(  # type: ignore[union-attr]
            pg_scalar(pg_url, "SELECT holder FROM lease")), 30, "survivor holds the lease")
        nc = await nats.connect(cluster.url.split(","))
        try:
            info = await nc.jetstream().stream_info("ASSETD_IN")
            assert info.config.num_replicas == 3
            created = await until(lambda: _created(nc, N), 120, "all instance_created")
            assert len({e["id"] for e in created}) == N, "outbound ids unique"
        finally:
            await nc.close()
    finally:
        publishing.cancel()
        for d in daemons:
            d.stop()
    print(f"scale-out: {len(pub.acked)} acked; node n2 and the lease holder killed; "
          "all applied once; the survivor took the lease")


async def _created(nc: Any, n: int) -> list[dict[str, Any]] | None:
    events = await out_events(nc.jetstream(), "instance_created")
    return events if len(events) >= n else None


