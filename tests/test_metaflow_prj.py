"""``self.prj`` and ``prj.asset`` without a flow run: obproject's scope rules with exact
branch names, attempt-free event ids, obproject's reference and listing shapes, external
references, and the rules' verdict read from real outcomes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from assetd.client import AssetClient, SyncAssetClient
from assetd.daemon.app import Daemon
from assetd.metaflow import shapes
from assetd.metaflow.asset import Asset
from assetd.metaflow.context import ProjectContext
from assetd.metaflow.scope import Scope, resolve_scope

T = TypeVar("T")
TASK = "TrainFlow/17/start/4"
RULES = """version: 1
rules:
  - asset: gated
    gates: [{metric: f1, min: 0.8}]
    promote: {metric: f1, min_improvement: 0.05}
  - asset: checked
    require_checks: [holdout_eval]
    promote: {metric: f1}
"""


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """SQLite is enough here."""
    return f"sqlite:///{tmp_path / 'registry.db'}"


@pytest.fixture
async def ruled(daemon: Daemon, tmp_path: Path) -> Daemon:
    """The daemon with a gate-and-improvement rule and a required-check rule."""
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    daemon.rules.path = rules
    assert daemon.rules.reload()
    return daemon


@pytest.fixture
async def prj(daemon: Daemon) -> AsyncIterator[ProjectContext]:
    """A task's project context on user.alice, as ProjectFlow makes it inside a step."""
    flow = type("Flow", (), {"model": {"w": 1}})()
    client = await asyncio.to_thread(SyncAssetClient, "fraud", "user.alice",
                                     settings=daemon.settings, source=TASK, timeout=15)
    ctx = await asyncio.to_thread(ProjectContext, flow,
                                  Scope("fraud", "user.alice", "user.alice"), TASK,
                                  client=client)
    yield ctx
    await asyncio.to_thread(client.close)


async def blocking(fn: Callable[..., T], *args: Any, **kw: Any) -> T:
    """A blocking prj call, off the loop that runs the daemon."""
    return await asyncio.to_thread(fn, *args, **kw)


@pytest.mark.parametrize(("config", "spec", "branch", "write", "read"), [
    ({"project": "p"}, None, "user.alice", "user.alice", "user.alice"),
    ({"project": "p", "dev-assets": {"branch": "main"}}, None, "user.alice", "user.alice",
     "main"),
    ({"project": "p", "dev-assets": {"branch": "main"}}, None, "test.feat", "test.feat", "main"),
    ({"project": "p", "dev-assets": {"branch": "prod"}}, {"branch": "main"}, "prod", "main",
     "main"),
    ({"project": "p"}, {"branch": "main", "spec": {"project_branch": "feature/x"}}, "test.x",
     "feature/x", "feature/x"),
    ({"project": "p", "dev-assets": {"branch": "main"}}, {"branch": "feature-y"}, "test.y",
     "feature-y", "main"),
])
def test_scope_resolves_as_obproject_with_exact_names(
        config: dict[str, Any], spec: dict[str, Any] | None, branch: str, write: str,
        read: str) -> None:
    """Write = the deployed git branch or the @project branch; read = [dev-assets] unless
    writing main; names stay exact (user.alice, feature/x), never sanitized."""
    got = resolve_scope(config, spec, project="p", metaflow_branch=branch)
    assert (got.write_branch, got.read_branch) == (write, read)


def test_event_ids_are_attempt_free_and_bounded() -> None:
    """The same task and asset give the same id on every attempt; ids stay within the
    contract's 128 printable characters however long the names."""
    assert shapes.event_id("registered", TASK, "m", 1) == shapes.event_id("registered", TASK,
                                                                          "m", 1)
    assert shapes.event_id("registered", TASK, "m", 1) != shapes.event_id("registered", TASK,
                                                                          "m", 2)
    long_id = shapes.event_id("registered", f"{'F' * 120}/1/start/2", "a" * 128, 1)
    assert len(long_id) <= 128 and long_id.isprintable() and " " not in long_id


async def test_external_data_in_obproject_reference_shape(prj: ProjectContext) -> None:
    """register_external_data keeps blobs and kind; consume_data_asset answers obproject's
    shape and records the task as consumer; peek records nothing."""
    await blocking(prj.register_external_data, "raw", blobs=["s3://lake/day1.parquet"],
                   kind="s3_object", annotations={"rows": 10}, tags={"day": 1})
    ref = await blocking(prj.asset.consume_data_asset, "raw", instance="latest")
    assert ref["id"] == "v1" and ref["asset"] == {"id": "raw", "kind": "data"}
    assert ref["created_by"] == {"entity_kind": "task", "entity_id": TASK}
    assert ref["data_properties"] == {"data_kind": "s3_object",
                                      "blobs": ["s3://lake/day1.parquet"],
                                      "annotations": {"rows": 10}}
    assert ref["tags"] == [{"key": "day", "value": "1"}]
    assert (await blocking(prj.asset.peek_data_asset, "raw"))["id"] == "v1"
    with pytest.raises(AttributeError, match="not a Metaflow artifact"):
        await blocking(prj.get_data, "raw")  # an external reference has no artifact object
    async with AssetClient("fraud", "user.alice", settings=prj.client.settings) as c:
        graph = await c.lineage("raw", "v1", direction="downstream", depth=1)
    consumers = [n["name"] for n in graph["nodes"] if n["kind"] == "consumer"]
    assert consumers == [TASK]  # consume once (peek and get_data recorded nothing new)


async def test_model_from_artifact_lists_the_reads_and_filters_by_tags(
        prj: ProjectContext) -> None:
    """register_model points at metaflow://<task>/<artifact>, lists the instances the task
    consumed as inputs, and list_model_assets(tags=) filters with an int tag value."""
    await blocking(prj.register_external_data, "raw", blobs=["s3://x"], kind="s3_object")
    await blocking(prj.asset.consume_data_asset, "raw")
    got = await blocking(prj.register_model, "m", "model", annotations={"f1": 0.9},
                         tags={"seed": 7})
    ref = await blocking(prj.asset.peek_model_asset, "m", got["instance"])
    assert ref["model_properties"]["model_kind"] == "artifact"
    assert ref["model_properties"]["annotations"] == {"artifact": "model", "f1": 0.9}
    assert ref["reference"]["uri"] == f"metaflow://{TASK}/model"
    assert ref["inputs"] == [{"asset": "raw", "branch": "user.alice", "instance": "v1"}]
    assert [a["id"] for a in (await blocking(prj.asset.list_model_assets,
                                             tags={"seed": 7}))["models"]] == ["m"]
    assert (await blocking(prj.asset.list_model_assets, tags={"seed": 8}))["models"] == []
    assert [a["id"] for a in (await blocking(prj.asset.list_data_assets))["data"]] == ["raw"]
    with pytest.raises(AttributeError, match=r"self\.missing"):
        await blocking(prj.register_model, "m", "missing")


async def test_verdict_rejected_with_values_and_gates(ruled: Daemon,
                                                      prj: ProjectContext) -> None:
    """wait="decision" says promoted, then rejected with the reason and the values compared
    (insufficient improvement), then rejected by a gate with the failing gate."""
    first = await blocking(prj.register_model, "gated", "model", annotations={"f1": 0.85},
                           wait="decision")
    assert first.promoted and first.alias == "champion"
    small = await blocking(prj.register_model, "gated", "model", annotations={"f1": 0.87},
                           wait="decision")
    assert (small.decision, small.reason) == ("rejected", "insufficient_improvement")
    assert small.values["candidate_value"] == 0.87 and small.values["champion_value"] == 0.85
    assert "rejected: insufficient_improvement (f1 0.87 against 0.85)" in str(small)
    low = await blocking(prj.register_model, "gated", "model", annotations={"f1": 0.5},
                         wait="decision")
    assert (low.decision, low.reason) == ("rejected", "gates_failed")
    assert [(g["metric"], g["value"]) for g in low.values["gates"]] == [("f1", 0.5)]


async def test_verdict_waiting_then_promoted_by_the_check(ruled: Daemon,
                                                          prj: ProjectContext) -> None:
    """A candidate that needs a check is "waiting for holdout_eval"; the task's report of
    that check (on the vN it registered) returns the promotion."""
    waiting = await blocking(prj.register_model, "checked", "model", annotations={"f1": 0.7},
                             wait="decision")
    assert (waiting.decision, waiting.waiting_for) == ("waiting", ("holdout_eval",))
    assert str(waiting) == "checked v1 waiting for holdout_eval"
    done = await blocking(prj.report_quality, "checked", "holdout_eval", True,
                          instance=waiting.instance, wait="decision")
    assert done.promoted and done.instance == "v1"


async def test_low_level_registration_is_retry_safe_in_a_task(daemon: Daemon) -> None:
    """obproject's Asset.register_data_asset from a task: a second attempt (a new process,
    so a new Asset) registering the same way gets the first attempt's instance."""
    outcomes = []
    for _attempt in range(2):
        client = await blocking(SyncAssetClient, "fraud", "user.alice",
                                settings=daemon.settings, source=TASK)
        asset = Asset("fraud", "user.alice", {"entity_kind": "task", "entity_id": TASK},
                      client=client)
        outcomes.append(await blocking(asset.register_data_asset, "table", kind="bigquery",
                                       blobs=["bq://p.d.t"]))
        await blocking(asset.close)
    assert [o["instance"] for o in outcomes] == ["v1", "v1"]
