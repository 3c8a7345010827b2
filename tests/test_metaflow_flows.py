"""Real Metaflow flows (``python flow.py run``, local metadata and datastore) against a real
daemon: the example project's chain ETL → train → promotion → drift → retrain_required runs
once for the module, with its model server deployment following; then @retry and
[dev-assets]. Flow runs cost seconds each, so there are as few as the behaviours need."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from assetd.client import AssetClient, QueryError
from assetd.daemon.app import Daemon
from tests.conftest import daemon_settings, running_daemon, running_nats
from tests.helpers import wait_for

pytestmark = pytest.mark.slow  # each flow run is a few processes and seconds

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "metaflow"
RETRY_FLOW = ROOT / "tests" / "flows" / "retry" / "flow.py"
PATHSPEC = r"{flow}/\d+/start/\d+"


@dataclass
class Workspace:
    """A copy of examples/metaflow, a Metaflow sysroot and a daemon with its rules."""

    root: Path
    sysroot: Path
    daemon: Daemon
    outputs: dict[str, str] = field(default_factory=dict)

    def env(self, user: str, **extra: str) -> dict[str, str]:
        """Environment of a flow: local Metaflow in the temp dir, ``USERNAME`` = ``user``."""
        keep = {k: v for k, v in os.environ.items()
                if not k.startswith(("METAFLOW_", "ASSETD_")) and k != "SUDO_USER"}
        return {**keep, "METAFLOW_DEFAULT_METADATA": "local",
                "METAFLOW_DEFAULT_DATASTORE": "local",
                "METAFLOW_DATASTORE_SYSROOT_LOCAL": str(self.sysroot),
                "METAFLOW_HOME": str(self.sysroot / "home"), "USERNAME": user,
                "ASSETD_NATS_URL": self.daemon.settings.effective_nats_url,
                "PYTHONUNBUFFERED": "1", **extra}

    async def run(self, flow: Path, *args: str, user: str = "alice") -> str:
        """``python flow.py run ARGS``; its output, or a failure that shows it."""
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(flow), "run", *args, cwd=flow.parent, env=self.env(user),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        out, _ = await asyncio.wait_for(proc.communicate(), 180)
        text = out.decode()
        assert proc.returncode == 0, f"{flow} {' '.join(args)} failed:\n{text}"
        return text

    def client(self, branch: str = "user.alice") -> AssetClient:
        """A client of the example project on ``branch``."""
        return AssetClient("fraud", branch, settings=self.daemon.settings, source="tests",
                           timeout=15)


@pytest.fixture(scope="module")
async def ws(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Workspace]:
    """Its own nats-server and daemon (example rules, SQLite) for the module's flow runs."""
    tmp = tmp_path_factory.mktemp("metaflow")
    root = tmp / "project"
    shutil.copytree(EXAMPLE, root)
    with running_nats() as nats_server:
        settings = daemon_settings(nats_server.url, f"sqlite:///{tmp / 'registry.db'}", tmp,
                                   rules=root / "rules.yaml")
        async with running_daemon(settings) as daemon:
            yield Workspace(root, tmp / "metaflow", daemon)


@pytest.fixture(scope="module")
async def chain(ws: Workspace) -> Workspace:
    """ETL twice (the second day shifted), train, drift monitor, as user ``alice``; the
    model server deployment runs throughout."""
    flows = ws.root / "flows"
    ws.outputs["etl1"] = await ws.run(flows / "etl" / "flow.py", "--seed", "1")
    ws.outputs["etl2"] = await ws.run(flows / "etl" / "flow.py", "--seed", "2", "--shift", "20")
    server, reader, lines = await _model_server(ws)
    try:
        ws.outputs["train"] = await ws.run(flows / "train" / "flow.py")
        await wait_for(_has(lines, "serving fraud_model v1"), what="model server swap")
        ws.outputs["drift"] = await ws.run(flows / "drift_monitor" / "flow.py")
    finally:
        server.terminate()
        await server.wait()
        reader.cancel()
    ws.outputs["server"] = "\n".join(lines)
    return ws


async def test_train_lineage_lists_what_its_task_read(chain: Workspace) -> None:
    """The model's inputs are exactly the two transactions instances its task read (latest
    and latest-1), its producer and reference name the train task, with no ids in the flow."""
    async with chain.client() as c:
        model = await c.peek("fraud_model", "v1")
    producer = model["producer"]
    assert re.fullmatch(PATHSPEC.format(flow="TrainFraudModel"), producer)
    run, task = producer.split("/")[1], producer.split("/")[3]
    assert f"[{run}/start/{task} " in chain.outputs["train"]  # the run this module started
    assert sorted((i["asset"], i["instance"], i["branch"]) for i in model["inputs"]) == [
        ("transactions", "v1", "user.alice"), ("transactions", "v2", "user.alice")]
    assert model["reference"]["uri"] == f"metaflow://{producer}/model"
    assert model["branch"] == "user.alice"


async def test_rules_promote_and_the_flow_gets_the_verdict(chain: Workspace) -> None:
    """The flow's register_model(wait="decision") reports the promotion; the deployment
    loaded the champion's Metaflow artifact."""
    assert "verdict: fraud_model v1 promoted to @champion" in chain.outputs["train"]
    async with chain.client() as c:
        assert (await c.peek("fraud_model", "@champion"))["instance"] == "v1"
    assert "serving fraud_model v1 (threshold" in chain.outputs["server"]


async def test_registration_keeps_annotation_types_and_stringifies_tags(
        chain: Workspace) -> None:
    """An int Metaflow parameter used as a tag is stored as its string; annotations stay
    typed; the ETL task consumed nothing, so its instance has no inputs."""
    async with chain.client() as c:
        data = await c.peek("transactions", "v2")
    assert data["tags"] == {"seed": "2", "source": "synthetic"}
    assert data["annotations"]["rows"] == 2000 and isinstance(
        data["annotations"]["fraud_rate"], float)
    assert data["inputs"] == []


async def test_drift_flow_signals_retrain_of_the_model(chain: Workspace) -> None:
    """The drift flow's report over the threshold yields retrain_required on fraud_model's
    subject of the same branch, triggered by the instance the flow read."""
    assert "retrain required for: fraud_model" in chain.outputs["drift"]
    async with chain.client() as c:
        event = await asyncio.wait_for(
            anext(c.events(type="retrain_required", deliver="all")), 15)
    assert (event["subject"], event["branch"]) == ("fraud_model", "user.alice")
    assert (event["data"]["trigger_asset"], event["data"]["trigger_instance"]) == (
        "transactions", "v2")


async def test_consumptions_name_the_reading_tasks(chain: Workspace) -> None:
    """get_data records the task as consumer: train and drift tasks read transactions v2."""
    async with chain.client() as c:
        graph = await c.lineage("transactions", "v2", direction="downstream", depth=1)
    consumers = {n["name"].split("/")[0] for n in graph["nodes"] if n["kind"] == "consumer"}
    assert consumers == {"TrainFraudModel", "DriftMonitor"}


async def test_retry_after_registering_ends_with_one_instance(ws: Workspace) -> None:
    """A @retry step that registered and then failed registers again on its second attempt
    and gets the first attempt's instance: one instance, no error, no wait."""
    out = await ws.run(RETRY_FLOW)
    assert "attempt 0 got v1" in out and "attempt 1 got v1" in out
    assert "read back [1, 2, 3]" in out  # the artifact of the attempt that succeeded
    async with AssetClient("mfretry", "user.alice", settings=ws.daemon.settings) as c:
        page = await c.list_instances("retry_table")
    assert [i["instance"] for i in page["items"]] == ["v1"]
    assert page["items"][0]["tags"] == {"attempt": "0"}


async def test_dev_assets_reads_main_and_writes_the_user_branch(chain: Workspace,
                                                                tmp_path: Path) -> None:
    """With [dev-assets] branch = "main", bob's local train run reads main's transactions
    (promoted there from alice's branch) and registers its model on user.bob only."""
    async with chain.client() as c:
        for vn in ("v1", "v2"):
            await c.request_promotion("transactions", vn, reason="merge", to_branch="main")
    project = tmp_path / "project"
    shutil.copytree(chain.root, project)
    config = project / "obproject.toml"
    config.write_text(config.read_text().replace('# branch = "main"', 'branch = "main"'))
    out = await chain.run(project / "flows" / "train" / "flow.py", user="bob")
    assert "read fraud/main, write fraud/user.bob" in out
    async with chain.client("user.bob") as c:
        model = await c.peek("fraud_model", "latest")
        assert sorted((i["instance"], i["branch"]) for i in model["inputs"]) == [
            ("v1", "main"), ("v2", "main")]
        with pytest.raises(QueryError):
            await c.peek("fraud_model", "latest", branch="main")


async def _model_server(ws: Workspace) -> tuple[Any, asyncio.Task[None], list[str]]:
    """Start deployments/model_server/app.py on user.alice; wait until it follows."""
    app = ws.root / "deployments" / "model_server" / "app.py"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(app), env=ws.env("alice", ASSETD_BRANCH="user.alice", PORT="0"),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    lines: list[str] = []

    async def collect() -> None:
        assert proc.stdout is not None
        async for line in proc.stdout:
            lines.append(line.decode().rstrip())

    reader = asyncio.create_task(collect())
    await wait_for(_has(lines, "no champion for fraud_model"), what=f"server start {lines}")
    async with ws.client() as c:
        async def subscribed() -> bool:
            try:
                await c.nc.jetstream().consumer_info("ASSETD_OUT_fraud", "model-server")
            except Exception:
                return False
            return True

        await wait_for(subscribed, what="model server subscribed")
    return proc, reader, lines


def _has(lines: list[str], text: str) -> Any:
    async def check() -> bool:
        return any(text in line for line in lines)

    return check
