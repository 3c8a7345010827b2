"""deploy/nats/nats-server.conf: the daemon works with its least-privilege user, and the
pipeline and service roles cannot publish what is not theirs."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import nats
import pytest

from assetd.client import AssetClient, PermissionDeniedError
from assetd.config import Settings
from assetd.daemon.app import Daemon
from assetd.daemon.embedded import free_port, nats_server_binary
from tests.conftest import running_daemon

CONF = Path(__file__).resolve().parent.parent / "deploy" / "nats" / "nats-server.conf"
PASSWORDS = {"ASSETD_DAEMON_PASSWORD": "d-secret", "ASSETD_PIPELINE_PASSWORD": "p-secret",
             "ASSETD_SERVICE_PASSWORD": "s-secret", "ASSETD_OPERATOR_PASSWORD": "o-secret",
             "ASSETD_CI_PASSWORD": "c-secret", "ASSETD_ALICE_PASSWORD": "a-secret",
             "NATS_SYS_PASSWORD": "sys-secret"}


@pytest.fixture
def secured_nats() -> Iterator[str]:
    """nats-server started with the deploy config; yields its URL (no credentials)."""
    with deploy_nats() as url:
        yield url


@contextlib.contextmanager
def deploy_nats() -> Iterator[str]:
    """nats-server with deploy/nats/nats-server.conf on a free loopback port and a temp store,
    the test passwords in its environment; stopped by its pid. Yields its URL."""
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
                assert proc.poll() is None, "nats-server refused deploy/nats/nats-server.conf"
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
                        http_port=0, fetch_timeout=1.0, max_consumers_per_project=3)
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
    """Pipeline: its project's inbound on its branch (staging) only; service: reads, no
    inbound; daemon: works."""
    pipeline = Settings(nats_url=secured_nats, nats_user="pipeline-fraud",
                        nats_password=PASSWORDS["ASSETD_PIPELINE_PASSWORD"])  # type: ignore[arg-type]
    async with AssetClient("fraud", "staging", settings=pipeline, timeout=15) as c:
        created = await c.register_model("fraud_model", annotations={"f1": 0.9}, wait=True)
        assert created["instance"] == "v1", "pipeline publishes and hears its outcome"
        assert (await c.peek("fraud_model"))["instance"] == "v1"

    nc, errors = await _as(secured_nats, "pipeline-fraud", PASSWORDS["ASSETD_PIPELINE_PASSWORD"])
    try:
        assert await _denied(nc, errors, "assetd.out.fraud.main.fraud_model.asset_promoted")
        assert await _denied(nc, errors, "assetd.in.other.main.fraud_model.asset_registered")
        assert await _denied(nc, errors, "assetd.in.other.staging.fraud_model.asset_registered")
        assert await _denied(nc, errors, "assetd.in.fraud.main.fraud_model.asset_registered")
        assert await _denied(nc, errors, "assetd.dlq.fraud.main.x.asset_registered")
    finally:
        await nc.close()

    nc, errors = await _as(secured_nats, "service-fraud", PASSWORDS["ASSETD_SERVICE_PASSWORD"])
    try:
        assert await _denied(nc, errors, "assetd.in.fraud.main.fraud_model.asset_registered")
        assert await _denied(nc, errors, "assetd.out.fraud.main.fraud_model.asset_promoted")
    finally:
        await nc.close()
    service = Settings(nats_url=secured_nats, nats_user="service-fraud",
                       nats_password=PASSWORDS["ASSETD_SERVICE_PASSWORD"])  # type: ignore[arg-type]
    async with AssetClient("fraud", "staging", settings=service, timeout=15) as c:
        assert (await c.peek("fraud_model"))["instance"] == "v1", "service may query"
        stream = c.events(type="instance_created", durable="svc", deliver="all")
        first = await asyncio.wait_for(stream.__anext__(), 15)
        assert first["data"]["instance"] == "v1", "service reads outbound durably"
        await stream.aclose()


def _role(url: str, user: str) -> Settings:
    key = {"pipeline-fraud": "ASSETD_PIPELINE_PASSWORD", "service-fraud": "ASSETD_SERVICE_PASSWORD",
           "operator": "ASSETD_OPERATOR_PASSWORD", "ci": "ASSETD_CI_PASSWORD",
           "alice": "ASSETD_ALICE_PASSWORD"}[user]
    return Settings(nats_url=url, nats_user=user, nats_password=PASSWORDS[key])  # type: ignore[arg-type]


async def _sub_denied(nc: Any, errors: list[str], subject: str) -> bool:
    before = len(errors)
    await nc.subscribe(subject)
    await nc.flush()
    for _ in range(50):
        if len(errors) > before:
            return f'subscription to "{subject.lower()}"' in errors[-1].lower()
        await asyncio.sleep(0.02)
    return False


async def test_each_user_reads_only_its_own_inbox(secured_daemon: Daemon,
                                                  secured_nats: str) -> None:
    """No role but the operator may subscribe to another user's inbox, or to all of them;
    clients work on their own inbox prefix."""
    for user, own in (("pipeline-fraud", "_INBOX.fraud.pipeline-fraud.>"),
                      ("service-fraud", "_INBOX.fraud.service-fraud.>")):
        for subject in ("_INBOX.>", "_INBOX.other.>", "_INBOX.fraud.>", "_INBOX_assetd.>",
                        "_INBOX.fraud.operator.>"):
            nc, errors = await _as(secured_nats, user, _role(secured_nats, user)
                                   .nats_password.get_secret_value())  # type: ignore[union-attr]
            try:
                assert await _sub_denied(nc, errors, subject), (user, subject)
            finally:
                await nc.close()
        assert _role(secured_nats, user).inbox_prefix("fraud") + ".>" == own
    async with AssetClient("fraud", "staging", settings=_role(secured_nats, "pipeline-fraud"),
                           timeout=15) as c:
        assert (await c.register_data("d", wait=True))["instance"] == "v1"


async def test_services_touch_only_their_projects_consumers(secured_daemon: Daemon,
                                                            secured_nats: str) -> None:
    """A service cannot create, inspect or repoint consumers outside its project's stream,
    and creates at most ASSETD_MAX_CONSUMERS_PER_PROJECT there."""
    async with AssetClient("other", settings=_role(secured_nats, "operator"), timeout=15) as op:
        await op.register_data("x", wait=True)
        other_stream = (await op.request("events_stream"))["stream"]
        await op.nc.jetstream().add_consumer("ASSETD_OUT", durable_name="server",
                                             filter_subject="assetd.out.other.main.>")
    from nats.js.api import ConsumerConfig
    svc = _role(secured_nats, "service-fraud")
    async with AssetClient("fraud", settings=svc, timeout=5) as c:
        js = c.nc.jetstream()
        attempts = [
            js.add_consumer("ASSETD_OUT", ConsumerConfig(durable_name="spy",
                                                         filter_subject="assetd.out.other.main.>")),
            js.add_consumer(other_stream, ConsumerConfig(durable_name="spy")),
            js.add_consumer("ASSETD_OUT", ConsumerConfig(
                name="server", durable_name="server", filter_subject="assetd.out.nobody.>")),
            js.consumer_info("ASSETD_OUT", "server"),
            js.delete_consumer("ASSETD_OUT", "server"),
        ]
        for attempt in attempts:
            with pytest.raises(PermissionDeniedError):
                await c.guarded(attempt)
        own = (await c.request("events_stream"))["stream"]
        for i in range(3):
            stream = c.events(durable=f"d{i}")
            task = asyncio.ensure_future(stream.__anext__())
            for _ in range(100):  # the project's own consumers work
                with contextlib.suppress(Exception):
                    if (await c.guarded(js.consumer_info(own, f"d{i}"))).config.durable_name:
                        break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError(f"consumer d{i} was not created on {own}")
            assert not task.done()
            task.cancel()
        # the limit itself, asked of JetStream directly
        with pytest.raises(Exception, match="maximum consumers"):
            await c.guarded(js.add_consumer(own, ConsumerConfig(
                durable_name="d3", filter_subject="assetd.out.fraud.main.>")))
    async with AssetClient("other", settings=_role(secured_nats, "operator"), timeout=15) as op:
        info = await op.nc.jetstream().consumer_info("ASSETD_OUT", "server")
        assert info.config.filter_subject == "assetd.out.other.main.>", "not repointed"


async def test_only_operators_publish_operators_event_types(secured_daemon: Daemon,
                                                            secured_nats: str) -> None:
    """Pipelines cannot publish forced promotions, invalidations or rollbacks; the client
    says so at once, in one line naming the subject; operators can."""
    pipeline = _role(secured_nats, "pipeline-fraud")
    async with AssetClient("fraud", "staging", settings=pipeline, timeout=15) as c:
        await c.register_model("m", annotations={"f1": 0.9}, wait=True)
        with pytest.raises(PermissionDeniedError, match=r"publish to "
                           r"assetd\.in\.fraud\.staging\.m\.promotion_requested"):
            await c.request_promotion("m", "v1", reason="mine", force=True)
        with pytest.raises(PermissionDeniedError, match="instance_updated"):
            await c.update_instance("m", "v1", reason="x", validity="invalidated")
        with pytest.raises(PermissionDeniedError, match="alias_rollback_requested"):
            await c.rollback("m", reason="x", wait=False)
    async with AssetClient("fraud", "staging", settings=_role(secured_nats, "operator"),
                           timeout=15) as op:
        await op.request_promotion("m", "v1", reason="pin", force=True, wait=True)
        assert (await op.peek("m", "champion"))["instance"] == "v1", "operators may"


async def test_a_query_cannot_make_the_daemon_publish_elsewhere(secured_daemon: Daemon,
                                                                secured_nats: str) -> None:
    """A query whose reply subject is another project's outbound subject publishes nothing
    there, and no subscriber of that project sees it."""
    async with AssetClient("other", settings=_role(secured_nats, "operator"), timeout=15) as op:
        await op.register_model("m", wait=True)
    nc, _ = await _as(secured_nats, "pipeline-fraud", PASSWORDS["ASSETD_PIPELINE_PASSWORD"])
    try:
        await nc.publish("assetd.api.fraud.assets", b"{}",
                         reply="assetd.out.other.main.m.asset_promoted")
        await nc.flush()
    finally:
        await nc.close()
    async with AssetClient("fraud", settings=_role(secured_nats, "pipeline-fraud"),
                           timeout=15) as c:
        await c.list_assets()  # the daemon has handled the request before this one
    async with AssetClient("other", settings=_role(secured_nats, "operator"), timeout=15) as op:
        info = await op.nc.jetstream().stream_info("ASSETD_OUT", subjects_filter=">")
        assert "assetd.out.other.main.m.asset_promoted" not in (info.state.subjects or {})


async def _ctl_as(url: str, user: str, password: str, *args: str) -> tuple[int, str, str]:
    """``assetctl`` logged in as ``user`` (ASSETD_NATS_USER/_PASSWORD), project fraud."""
    env = {**os.environ, "ASSETD_NATS_URL": url, "ASSETD_NATS_USER": user,
           "ASSETD_NATS_PASSWORD": password, "ASSETD_PROJECT": "fraud"}
    proc = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "assetctl"), *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_assetctl_denials_are_one_line(secured_daemon: Daemon, secured_nats: str) -> None:
    """Under restricted users assetctl says what NATS refused in one line, at once: the DLQ
    for a pipeline, main for a developer, a wrong password for anyone — never a traceback."""
    cases = [
        ("pipeline-fraud", PASSWORDS["ASSETD_PIPELINE_PASSWORD"], ("dlq", "list")),
        ("alice", PASSWORDS["ASSETD_ALICE_PASSWORD"], ("register", "m", "--kind", "data")),
        ("alice", "wrong", ("assets",)),
    ]
    for user, password, args in cases:
        code, out, err = await _ctl_as(secured_nats, user, password, *args)
        assert (code, out) == (1, ""), (user, args, err)
        assert err.count("\n") == 1 and "Traceback" not in err, (user, args, err)
    _, _, err = await _ctl_as(secured_nats, "alice", PASSWORDS["ASSETD_ALICE_PASSWORD"],
                              "register", "m", "--kind", "data")
    assert "NATS denied publish to assetd.in.fraud.main.m.asset_registered" in err
    _, _, err = await _ctl_as(secured_nats, "alice", "wrong", "assets")
    assert "refused the connection" in err and "check the credentials" in err
