"""``assetctl`` and ``assetd`` as real subprocesses: output, --json, exit codes, errors."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from assetd.client import AssetClient
from assetd.daemon.app import Daemon
from assetd.daemon.embedded import free_port
from tests.conftest import run_cli
from tests.helpers import wait_for

BIN = Path(sys.executable).parent


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """The command lines do not depend on the database kind: SQLite only."""
    return f"sqlite:///{tmp_path / 'registry.db'}"


async def ctl(daemon: Daemon, *args: str) -> tuple[int, str, str]:
    """Run ``assetctl`` without blocking the loop the in-process daemon runs on."""
    env = {**os.environ, "ASSETD_NATS_URL": daemon.settings.effective_nats_url,
           "ASSETD_PROJECT": "fraud", "COLUMNS": "200"}
    proc = await asyncio.create_subprocess_exec(
        str(BIN / "assetctl"), *args, env=env, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_register_show_instances_assets_lineage(daemon: Daemon) -> None:
    """The tour of the README: register, show, list, lineage, consume — text and --json."""
    code, out, _ = await ctl(daemon, "register", "features", "--kind", "data",
                             "--annotation", "rows=100", "--tag", "team=risk")
    assert code == 0 and "features v1 registered" in out
    code, out, _ = await ctl(daemon, "--json", "register", "fraud_model", "--kind", "model",
                             "--annotation", "f1_score=0.85", "--annotation", "algo=gbm",
                             "--input", "features@v1", "--uri", "s3://m/1")
    created = orjson.loads(out)
    assert code == 0 and (created["instance"], created["version"]) == ("v1", 1)
    assert created["event_id"] and created["decisions"] == []

    code, out, _ = await ctl(daemon, "show", "fraud_model", "--json")  # flags after, too
    shown = orjson.loads(out)
    assert code == 0 and shown["reference"] == {"uri": "s3://m/1", "blobs": []}
    assert shown["annotations"] == {"f1_score": 0.85, "algo": "gbm"}
    assert shown["inputs"] == [{"asset": "features", "branch": "main", "instance": "v1"}]
    code, out, _ = await ctl(daemon, "show", "fraud_model@v1")
    assert code == 0 and "f1_score" in out
    code, out, _ = await ctl(daemon, "--json", "instances", "fraud_model")
    assert code == 0 and [i["instance"] for i in orjson.loads(out)["items"]] == ["v1"]
    code, out, _ = await ctl(daemon, "--json", "assets", "--tag", "team=risk")
    assert code == 0 and [a["asset"] for a in orjson.loads(out)] == ["features"]
    code, out, _ = await ctl(daemon, "assets")
    assert code == 0 and "fraud_model" in out and "features" in out
    code, out, _ = await ctl(daemon, "lineage", "fraud_model@v1")
    assert code == 0 and "features@main:v1" in out
    code, out, _ = await ctl(daemon, "consume", "fraud_model", "--consumer", "scorer")
    assert code == 0 and "fraud_model v1 consumed" in out
    code, out, _ = await ctl(daemon, "--json", "status")
    assert code == 0 and orjson.loads(out)["database"] == "sqlite"


async def test_not_found_is_exit_1_with_one_line(daemon: Daemon) -> None:
    """A refused or unknown thing: exit 1, one line on stderr saying what is wrong."""
    code, out, err = await ctl(daemon, "show", "nothing")
    assert code == 1 and out == ""
    assert err.strip().count("\n") == 0 and "not_found" in err and "nothing@latest" in err


async def test_usage_error_is_exit_2(daemon: Daemon) -> None:
    """Bad usage exits 2."""
    code, _, err = await ctl(daemon, "register", "x", "--kind", "table")
    assert code == 2 and "--kind must be data or model" in err
    code, _, _ = await ctl(daemon, "register", "x")
    assert code == 2
    code, _, err = await ctl(daemon, "register", "x", "--kind", "data", "--annotation", "novalue")
    assert code == 2 and "KEY=VALUE" in err


async def test_rejected_registration_reports_reason(daemon: Daemon) -> None:
    """A registration the daemon dead-letters comes back as exit 1 with the reason."""
    code, _, err = await ctl(daemon, "register", "m", "--kind", "model", "--input", "ghost")
    assert code == 1 and err.count("\n") == 1
    assert "rejected (dead-lettered, see `assetctl dlq list`): inputs.0: no instance " \
        "ghost@latest" in err


async def test_definitions_sync(daemon: Daemon, tmp_path: Path) -> None:
    """models/*/ and data/*/asset_config.toml become asset definitions; a resync is a no-op."""
    for folder, ident in (("models", "fraud_model"), ("data", "transactions")):
        d = tmp_path / "proj" / folder / ident
        d.mkdir(parents=True)
        (d / "asset_config.toml").write_text(
            f'name = "{ident} name"\nid = "{ident}"\ndescription = "about {ident}"\n'
            '[properties]\nowner = "ml"\nsla_hours = 26\n')
    for _ in range(2):
        code, out, err = await ctl(daemon, "--json", "definitions", "sync",
                                   str(tmp_path / "proj"))
        assert code == 0, err
        assert {d["asset"]: d["kind"] for d in orjson.loads(out)} == {
            "fraud_model": "model", "transactions": "data"}

    async def listed() -> Any:
        _, out, _ = await ctl(daemon, "--json", "assets")
        found = {a["asset"]: a for a in orjson.loads(out)}
        return len(found) == 2 and found

    found = await wait_for(listed, what="definitions applied")
    assert found["transactions"]["properties"] == {"owner": "ml", "sla_hours": "26"}
    assert found["fraud_model"]["description"] == "about fraud_model"
    counters = daemon.ingest.counters
    assert counters["applied"] == 2, "the second sync changed nothing"
    assert counters["duplicate"] <= 2, "the inbox took the second sync's ids as duplicates"


async def test_definitions_sync_reports_bad_file(daemon: Daemon, tmp_path: Path) -> None:
    """A broken asset_config.toml names the file and the problem."""
    d = tmp_path / "models" / "m"
    d.mkdir(parents=True)
    (d / "asset_config.toml").write_text('id = "bad.id"\n')
    code, _, err = await ctl(daemon, "definitions", "sync", str(tmp_path))
    assert code == 1 and "asset_config.toml" in err and "bad.id" in err


def test_no_daemon_is_one_line_exit_1(tmp_path: Path) -> None:
    """With nothing listening, assetctl says where it tried and what to set."""
    r = run_cli(BIN, "assetctl", "--project", "p", "--nats-url",
                f"nats://127.0.0.1:{free_port()}", "assets", timeout=60)
    assert r.returncode == 1
    assert r.stderr.startswith("assetctl: nothing listens at nats://127.0.0.1:")
    assert "(connection refused); is assetd (or NATS) running?" in r.stderr
    assert r.stderr.strip().count("\n") == 0


def test_demo_runs_and_leaves_nothing_running() -> None:
    """``assetd demo`` exits 0 after the pipeline and its final registry view."""
    r = run_cli(BIN, "assetd", "demo", timeout=120)
    assert r.returncode == 0, r.stderr
    assert "fraud_model v3" in r.stdout and "consumed_by" in r.stdout
    for shown in ("asset_promoted", "promotion_rejected", "quality_gate_failed",
                  "retrain_required", "champion=v2"):
        assert shown in r.stdout
    assert "demo done" in r.stdout


def test_embedded_port_taken_is_one_line_exit_1(tmp_path: Path) -> None:
    """If the embedded NATS port is taken, ``assetd run`` says so in one line and exits 1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = run_cli(BIN, "assetd", "run", env={"ASSETD_EMBEDDED_NATS_PORT": str(port),
                                               "ASSETD_DATA_DIR": str(tmp_path / "d")},
                    timeout=60)
    assert r.returncode == 1
    assert r.stderr.strip() == (
        f"assetd: port 127.0.0.1:{port} is taken (another NATS or assetd?); set "
        "ASSETD_EMBEDDED_NATS_PORT to a free port or ASSETD_NATS_URL to use that server")


def test_migrate_command(tmp_path: Path) -> None:
    """``assetd migrate`` creates the registry and reports the revision."""
    r = run_cli(BIN, "assetd", "migrate", "--db", f"sqlite:///{tmp_path / 'r.db'}")
    from assetd.registry.migrate import head_revision

    assert r.returncode == 0 and f"registry at revision {head_revision()} (was empty)" in r.stdout


async def test_runbook_inspection_commands(daemon: Daemon) -> None:
    """The runbook's inspection commands with their flags: filters, paging, invalid, depth."""
    for _ in range(3):
        assert (await ctl(daemon, "register", "transactions", "--kind", "data"))[0] == 0
    assert (await ctl(daemon, "register", "fraud_model", "--kind", "model",
                      "--input", "transactions@v3"))[0] == 0
    code, out, _ = await ctl(daemon, "--json", "assets", "--kind", "model")
    assert code == 0 and [a["asset"] for a in orjson.loads(out)] == ["fraud_model"]
    code, out, _ = await ctl(daemon, "--json", "instances", "transactions", "--limit", "2")
    page = orjson.loads(out)
    assert code == 0 and page["next"] == 2
    code, out, _ = await ctl(daemon, "--json", "instances", "transactions", "--before", "2")
    assert code == 0 and [i["instance"] for i in orjson.loads(out)["items"]] == ["v1"]
    async with AssetClient("fraud", settings=daemon.settings) as c:
        await c.publish("instance_updated", "transactions",
                        {"instance": "v1", "validity": "invalidated", "reason": "bad"})

    async def invalid() -> bool:
        return (await ctl(daemon, "show", "transactions@v1"))[0] == 1

    await wait_for(invalid, what="v1 invalidated")
    code, out, _ = await ctl(daemon, "--json", "show", "transactions@v1", "--allow-invalid")
    assert code == 0 and orjson.loads(out)["validity"] == "invalidated"
    code, out, _ = await ctl(daemon, "--json", "lineage", "transactions@v3", "--direction",
                             "downstream", "--depth", "5")
    assert code == 0 and {"from": "transactions@main:v3", "to": "fraud_model@main:v1",
                          "relation": "input"} in orjson.loads(out)["edges"]
    code, out, _ = await ctl(daemon, "consume", "fraud_model", "v1", "--consumer", "oncall")
    assert code == 0 and "fraud_model v1 consumed" in out
