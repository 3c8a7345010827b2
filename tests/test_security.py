"""deploy/nats/nats-server.conf: the daemon works with its least-privilege user, and the
pipeline and service roles cannot publish what is not theirs."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import nats
import pytest

from assetd.client import AssetClient
from assetd.config import Settings
from assetd.daemon.app import Daemon
from assetd.daemon.embedded import free_port, nats_server_binary
from tests.conftest import running_daemon

CONF = Path(__file__).resolve().parent.parent / "deploy" / "nats" / "nats-server.conf"
PASSWORDS = {"ASSETD_DAEMON_PASSWORD": "d-secret", "ASSETD_PIPELINE_PASSWORD": "p-secret",
             "ASSETD_SERVICE_PASSWORD": "s-secret", "ASSETD_OPERATOR_PASSWORD": "o-secret",
             "NATS_SYS_PASSWORD": "sys-secret"}


@pytest.fixture
def secured_nats() -> Iterator[str]:
    """nats-server started with the deploy config; yields its URL (no credentials)."""
    store = Path(tempfile.mkdtemp(prefix="assetd-sec-"))
    port = free_port()
    env = {**os.environ, **PASSWORDS, "NATS_PORT": str(port), "NATS_STORE_DIR": str(store),
           "NATS_MONITOR_PORT": str(free_port())}
    proc = subprocess.Popen([nats_server_binary(), "-c", str(CONF)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        yield f"nats://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(store, ignore_errors=True)


def test_every_deploy_config_validates() -> None:
    """``nats-server -t -c`` accepts every config file under deploy/."""
    env = {**os.environ, **PASSWORDS, "NATS_PORT": "4222", "NATS_STORE_DIR": "/tmp/x",
           "NATS_MONITOR_PORT": "8222"}
    configs = sorted(CONF.parent.parent.rglob("*.conf"))
    assert configs
    for conf in configs:
        r = subprocess.run([nats_server_binary(), "-t", "-c", str(conf)], env=env,
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, f"{conf}: {r.stdout}{r.stderr}"


@pytest.fixture
async def secured_daemon(secured_nats: str, tmp_path: Path) -> AsyncIterator[Daemon]:
    """The daemon connected as user ``assetd``."""
    settings = Settings(nats_url=secured_nats, nats_user="assetd",
                        nats_password=PASSWORDS["ASSETD_DAEMON_PASSWORD"],  # type: ignore[arg-type]
                        db_url=f"sqlite:///{tmp_path / 'r.db'}", data_dir=tmp_path,
                        http_port=0, fetch_timeout=1.0)
    async with running_daemon(settings) as d:
        yield d


async def _as(url: str, user: str, password: str) -> tuple[Any, list[str]]:
    errors: list[str] = []

    async def on_error(exc: Exception) -> None:
        errors.append(str(exc))

    nc = await nats.connect(url, user=user, password=password, error_cb=on_error,
                            max_reconnect_attempts=0)
    return nc, errors


async def _denied(nc: Any, errors: list[str], subject: str) -> bool:
    before = len(errors)
    await nc.publish(subject, b"{}")
    await nc.flush()
    for _ in range(50):
        if len(errors) > before:
            return "permissions violation" in errors[-1].lower()
        await asyncio.sleep(0.02)
    return False


async def test_roles_on_the_deploy_config(secured_daemon: Daemon, secured_nats: str) -> None:
    """Pipeline: its project's inbound only; service: reads, no inbound; daemon: works."""
    pipeline = Settings(nats_url=secured_nats, nats_user="pipeline-fraud",
                        nats_password=PASSWORDS["ASSETD_PIPELINE_PASSWORD"])  # type: ignore[arg-type]
    async with AssetClient("fraud", settings=pipeline, timeout=15) as c:
        created = await c.register_model("fraud_model", annotations={"f1": 0.9}, wait=True)
        assert created["instance"] == "v1", "pipeline publishes and hears its outcome"
        assert (await c.peek("fraud_model"))["instance"] == "v1"

    nc, errors = await _as(secured_nats, "pipeline-fraud", PASSWORDS["ASSETD_PIPELINE_PASSWORD"])
    try:
        assert await _denied(nc, errors, "assetd.out.fraud.fraud_model.asset_promoted")
        assert await _denied(nc, errors, "assetd.in.other.fraud_model.asset_registered")
        assert await _denied(nc, errors, "assetd.dlq.fraud.x.asset_registered")
    finally:
        await nc.close()

    nc, errors = await _as(secured_nats, "service-fraud", PASSWORDS["ASSETD_SERVICE_PASSWORD"])
    try:
        assert await _denied(nc, errors, "assetd.in.fraud.fraud_model.asset_registered")
        assert await _denied(nc, errors, "assetd.out.fraud.fraud_model.asset_promoted")
    finally:
        await nc.close()
    service = Settings(nats_url=secured_nats, nats_user="service-fraud",
                       nats_password=PASSWORDS["ASSETD_SERVICE_PASSWORD"])  # type: ignore[arg-type]
    async with AssetClient("fraud", settings=service, timeout=15) as c:
        assert (await c.peek("fraud_model"))["instance"] == "v1", "service may query"
        stream = c.events(type="instance_created", durable="svc", deliver="all")
        first = await asyncio.wait_for(stream.__anext__(), 15)
        assert first["data"]["instance"] == "v1", "service reads outbound durably"
        await stream.aclose()
