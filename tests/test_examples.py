"""The examples: the rules file validates; the services' event stream survives a restart."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from assetd.client import AssetClient
from assetd.daemon.app import Daemon
from assetd.rules.loader import load_rules
from tests.helpers import wait_for

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """SQLite is enough here."""
    return f"sqlite:///{tmp_path / 'registry.db'}"


def test_example_rules_cover_every_rule_kind() -> None:
    """examples/rules.yaml validates and uses gates, checks, promote (both directions),
    drift with and without targets, and freshness."""
    rules = load_rules(EXAMPLES / "rules.yaml").rules.rules
    assert any(r.gates and r.promote and r.require_checks for r in rules)
    assert {r.promote.direction for r in rules if r.promote} == {"maximize", "minimize"}
    assert any(r.gates and not r.promote for r in rules)
    assert any(r.drift and r.drift.retrain for r in rules)
    assert any(r.drift and not r.drift.retrain for r in rules)
    assert any(r.freshness for r in rules)


async def test_durable_events_resume_after_restart(daemon: Daemon) -> None:
    """A service reading with a durable name gets, after a restart, what it had not acked."""
    async with AssetClient("fraud", settings=daemon.settings) as c:
        await c.register_data("a", wait=True)  # before the consumer exists: not delivered
        seen: list[str] = []

        async def read(n: int) -> None:
            async for ev in c.events(type="instance_created", durable="svc"):
                seen.append(f"{ev['subject']} {ev['data']['instance']}")
                if len(seen) >= n:
                    return

        reader = asyncio.create_task(read(1))
        await wait_for(_consumer(c, "svc"), what="durable consumer")
        await c.register_data("b", wait=True)
        await asyncio.wait_for(reader, 15)
        await c.register_data("c", wait=True)  # published while the "service" is down
        await c.register_data("d", wait=True)
        await asyncio.wait_for(read(3), 15)
    assert seen == ["b v1", "c v1", "d v1"]


async def test_model_server_example_follows_promotions(daemon: Daemon, tmp_path: Path) -> None:
    """examples/model_server.py loads the champion, swaps it on asset_promoted and on a
    rollback, and keeps serving (and says so) when an invalidation clears the champion."""
    rules = tmp_path / "rules.yaml"
    rules.write_text("version: 1\nrules:\n  - asset: m\n    promote: {metric: f1}\n")
    daemon.rules.path = rules
    assert daemon.rules.reload()
    env = {**os.environ, "ASSETD_NATS_URL": daemon.settings.effective_nats_url,
           "ASSETD_PROJECT": "fraud", "PYTHONUNBUFFERED": "1"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(EXAMPLES / "model_server.py"), "m", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    lines: list[str] = []

    async def collect() -> None:
        assert proc.stdout is not None
        async for line in proc.stdout:
            lines.append(line.decode().strip())

    reading = asyncio.create_task(collect())
    try:
        async with AssetClient("fraud", settings=daemon.settings) as c:
            await wait_for(_has(lines, "no champion yet"), what="server started")
            await wait_for(_consumer(c, "model-server-m"), what="server subscribed")
            await c.register_model("m", annotations={"f1": 0.7}, uri="s3://m/1", wait=True)
            await wait_for(_has(lines, "serving m v1 from s3://m/1"), what="v1 served")
            await c.register_model("m", annotations={"f1": 0.9}, uri="s3://m/2", wait=True)
            await wait_for(_has(lines, "serving m v2 from s3://m/2"), what="hot swap to v2")
            await c.update_instance("m", "v2", validity="invalidated", reason="bad")
            await wait_for(_has(lines, "serving m v1 from s3://m/1", times=2),
                           what="rolled back to v1")
            await c.update_instance("m", "v1", validity="invalidated", reason="bad too")
            await wait_for(_has(lines, "no champion for m now"), what="champion cleared")
            assert proc.returncode is None, "the server must keep serving"
            assert "still serving v1" in lines[-1]
    finally:
        proc.terminate()
        await proc.wait()
        reading.cancel()


def _consumer(c: AssetClient, name: str) -> Any:
    async def exists() -> bool:
        try:
            await c.nc.jetstream().consumer_info("ASSETD_OUT_fraud", name)  # the project's stream
        except Exception:
            return False
        return True

    return exists


def _has(lines: list[str], text: str, times: int = 1) -> Any:
    async def check() -> bool:
        return sum(text in line for line in lines) >= times

    return check
