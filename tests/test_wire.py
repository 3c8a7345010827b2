"""Subjects carry the branch token (CONTRACT §2): exact both ways, checked against the
envelope, and a subscriber of one branch hears that branch only."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from assetd.client import AssetClient
from assetd.daemon.app import Daemon
from assetd.schemas import wire
from tests.helpers import out_events, wait_for


@pytest.mark.parametrize(("branch", "token"), [
    ("main", "main"), ("user.alice", "user~alice"), ("feature/x", "feature/x"),
    ("release.2.1", "release~2~1"), ("a@b+c-d_e", "a@b+c-d_e"),
])
def test_branch_token_is_exact_both_ways(branch: str, token: str) -> None:
    """Every ``.`` becomes ``~`` and back; nothing else changes."""
    assert wire.branch_token(branch) == token
    assert wire.branch_of(token) == branch


@pytest.mark.parametrize("token", ["", "~main", "-x", "a.b", "x" * 129, "has space"])
def test_a_token_that_names_no_branch_is_unknown(token: str) -> None:
    """A token that decodes to no valid branch is ``_`` in dead-letter subjects."""
    assert wire.branch_of(token) is None
    tok = wire.parse_in(f"assetd.in.fraud.{token}.m.asset_registered", "assetd")
    assert tok.branch is None and tok.branch_token == wire.UNKNOWN


def test_subjects_are_built_and_read_by_one_module() -> None:
    """Inbound, outbound, dead-letter and query subjects, and their parsers."""
    assert wire.in_subject("assetd", "fraud", "user.alice", "m", "asset_registered") == \
        "assetd.in.fraud.user~alice.m.asset_registered"
    assert wire.out_subject("assetd", "fraud", "main", "m") == "assetd.out.fraud.main.m.*"
    assert wire.out_subject("assetd", "fraud") == "assetd.out.fraud.*.*.*"
    tok = wire.parse_in("assetd.in.fraud.user~alice.m.asset_registered", "assetd")
    assert (tok.project, tok.branch, tok.asset, tok.type) == \
        ("fraud", "user.alice", "m", "asset_registered")
    assert tok.dlq_subject("assetd") == "assetd.dlq.fraud.user~alice.m.asset_registered"
    assert wire.parse_api("assetd.api.fraud.resolve", "assetd") == ("fraud", "resolve")
    assert wire.parse_api("assetd.api.status", "assetd") == (None, "status")
    assert wire.parse_api("assetd.api.fr.aud.resolve", "assetd") is None


async def test_a_main_subscriber_hears_main_only(daemon: Daemon, tmp_path: Any) -> None:
    """Subscribing to ``assetd.out.fraud.main.m.>`` sees main's promotion and not one on
    ``user.alice``, which arrives on ``assetd.out.fraud.user~alice.m.>``."""
    rules = tmp_path / "rules.yaml"
    rules.write_text("version: 1\nrules:\n  - asset: m\n    promote: {metric: f1}\n")
    daemon.rules.path = rules
    assert daemon.rules.reload()
    heard: dict[str, list[dict[str, Any]]] = {"main": [], "alice": []}
    async with AssetClient("fraud", settings=daemon.settings, timeout=15) as main, \
            AssetClient("fraud", "user.alice", settings=daemon.settings, timeout=15) as alice:
        for key, subject in (("main", "assetd.out.fraud.main.m.>"),
                             ("alice", "assetd.out.fraud.user~alice.m.>")):
            async def on(msg: Any, key: str = key) -> None:
                heard[key].append(orjson.loads(msg.data))
            await main.nc.subscribe(subject, cb=on)
        await alice.register_model("m", annotations={"f1": 0.7}, wait=True)
        await main.register_model("m", annotations={"f1": 0.9}, wait=True)
        await wait_for(lambda: _promoted(heard, "main"), what="main's promotion")
        await wait_for(lambda: _promoted(heard, "alice"), what="alice's promotion")
        await asyncio.sleep(0.3)
        assert {e["branch"] for e in heard["main"]} == {"main"}
        assert {e["branch"] for e in heard["alice"]} == {"user.alice"}
        assert (await alice.peek("m", "@champion"))["annotations"]["f1"] == 0.7
        mine = [e async for e in _take(main.events(asset="m", deliver="all"), 2)]
        assert {e["branch"] for e in mine} == {"main"}, "events() follows the client's branch"


async def _promoted(heard: dict[str, list[dict[str, Any]]], key: str) -> bool:
    return any(e["type"] == "asset_promoted" for e in heard[key])


async def _take(stream: Any, n: int) -> Any:
    got = 0
    async for event in stream:
        yield event
        got += 1
        if got >= n:
            await stream.aclose()
            return


async def test_branch_semantics_of_retrain_and_queries(daemon: Daemon, js: Any,
                                                       tmp_path: Any) -> None:
    """Drift on main's features signals the model on the branch where it was fed by them
    (``user.alice``), never on main where it has no instance; a client on a branch queries
    that branch by default."""
    rules = tmp_path / "rules.yaml"
    rules.write_text("version: 1\nrules:\n  - asset: feats\n    drift: {metric: psi, max: 0.2}\n"
                     "  - asset: model\n    promote: {metric: f1}\n")
    daemon.rules.path = rules
    assert daemon.rules.reload()
    async with AssetClient("fraud", settings=daemon.settings, timeout=15) as main, \
            AssetClient("fraud", "user.alice", settings=daemon.settings, timeout=15) as alice:
        await main.register_data("feats", wait=True)
        await alice.register_model("model", annotations={"f1": 0.8},
                                   inputs=[{"asset": "feats", "instance": "latest",
                                            "branch": "main"}], wait=True)
        await main.report_drift("feats", "psi", 0.5)
        await wait_for(lambda: out_events(js, "retrain_required"), what="retrain")
        await asyncio.sleep(0.3)
        retrain = await out_events(js, "retrain_required")
        assert [(e["_subject"], e["branch"]) for e in retrain] == [
            ("assetd.out.fraud.user~alice.model.retrain_required", "user.alice")]
        assert [d["outcome"] for d in await alice.request("decisions", asset="model")] == \
            ["promoted"]
        assert await main.request("decisions", asset="model") == [], "main has none"
        assert (await main.list_instances("model", branch="user.alice"))["items"][0][
            "branch"] == "user.alice", "a listing takes a branch"
        assert [a["asset"] for a in await alice.list_assets()] == ["feats", "model"]
        assert (await alice.list_assets())[1]["instances"] == 1
