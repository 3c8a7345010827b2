"""Rules on a real nats-server: every outbound type once, on the contract's subject."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from assetd.client import AssetClient, PromotionRejectedError
from assetd.client.outcome import emitted
from assetd.daemon.app import Daemon
from assetd.daemon.embedded import EmbeddedNats
from assetd.errors import QueryError
from tests.conftest import daemon_settings, running_daemon
from tests.helpers import out_events, wait_for

RULES = """\
version: 1
rules:
  - asset: fraud_model
    branches: [main, staging]
    gates:
      - {metric: f1_score, min: 0.80}
    require_checks: [holdout_eval]
    promote:
      metric: f1_score
      min_improvement: 0.02
  - asset: fraud_features
    drift:
      metric: ks_statistic
      max: 0.1
"""


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """Rules behave alike on both databases; PostgreSQL runs in the property and race tests."""
    return f"sqlite:///{tmp_path / 'registry.db'}"


@pytest.fixture
async def rules_daemon(nc: Any, nats_server: EmbeddedNats, tmp_path: Path,
                       db_url: str) -> AsyncIterator[Daemon]:
    """A daemon with ``RULES`` in force, watching the file every 0.1 s."""
    path = tmp_path / "rules.yaml"
    path.write_text(RULES)
    async with running_daemon(daemon_settings(nats_server.url, db_url, tmp_path, rules=path,
                             rules_poll_interval=0.1)) as d:
        yield d


@pytest.fixture
async def c(rules_daemon: Daemon) -> AsyncIterator[AssetClient]:
    async with AssetClient("fraud", settings=rules_daemon.settings, timeout=15) as client:
        yield client


async def _decided(c: AssetClient, asset: str, instance: str, outcome: str) -> bool:
    rows = await c.request("decisions", asset=asset, limit=100)
    return any(r["instance"] == instance and r["outcome"] == outcome for r in rows)


async def _model(c: AssetClient, f1: float, check: bool | None) -> str:
    m = await c.register_model("fraud_model", annotations={"f1_score": f1},
                               inputs=["fraud_features"], wait=True)
    v = m["instance"]
    if check is not None:
        await wait_for(lambda: _decided(c, "fraud_model", v, "waiting"), what=f"{v} waiting")
        await c.report_quality("fraud_model", "holdout_eval", check, instance=v)
        await wait_for(lambda: _final(c, v), what=f"{v} decided")
    return str(v)


async def _final(c: AssetClient, v: str) -> bool:
    return await _decided(c, "fraud_model", v, "promoted") or \
        await _decided(c, "fraud_model", v, "rejected")


async def test_scripted_sequence_publishes_each_type_once(c: AssetClient, js: Any) -> None:
    """Gates, checks, champion/challenger, rollback and drift, each outcome published once."""
    await c.register_data("fraud_features", wait=True)
    v1 = await _model(c, 0.85, True)           # no champion → promoted
    v2 = await _model(c, 0.86, True)           # +0.01 < 0.02 → insufficient_improvement
    v3 = await _model(c, 0.70, None)           # gate f1 ≥ 0.80 fails
    await wait_for(lambda: _decided(c, "fraud_model", v3, "rejected"), what="v3 rejected")
    v4 = await _model(c, 0.95, False)          # holdout_eval failed → check_failed
    v5 = await _model(c, 0.87, True)           # +0.02 over v1 (float edge) → promoted
    assert (await c.peek("fraud_model", "@champion"))["instance"] == v5
    await c.update_instance("fraud_model", v5, validity="invalidated", reason="label leak")

    async def rolled_back() -> bool:
        return bool((await c.peek("fraud_model", "champion"))["instance"] == v1)

    await wait_for(rolled_back, what="champion back to v1")
    await c.report_drift("fraud_features", "ks_statistic", 0.25)
    await c.report_drift("fraud_features", "ks_statistic", 0.05)  # under max: no signal

    events = await wait_for(lambda: _all_types(js), what="every outbound type")
    by_type: dict[str, list[dict[str, Any]]] = {}
    for e in events:
        by_type.setdefault(e["type"], []).append(e)
    promoted = by_type["asset_promoted"]
    assert [(e["data"]["instance"], e["data"]["previous"]) for e in promoted] == [
        (v1, None), (v5, v1)]
    assert promoted[1]["data"]["improvement"] == pytest.approx(0.02)
    assert promoted[1]["data"]["rule"] == "rules[0]" and promoted[1]["data"]["manual"] is False
    rejected = {e["data"]["instance"]: e["data"] for e in by_type["promotion_rejected"]}
    assert {k: v["reason"] for k, v in rejected.items()} == {
        v2: "insufficient_improvement", v3: "gates_failed", v4: "check_failed"}
    assert rejected[v2]["champion"] == v1 and rejected[v2]["candidate_value"] == 0.86
    failed = by_type["quality_gate_failed"]
    assert [e["data"]["instance"] for e in failed] == [v3]
    assert failed[0]["data"]["results"] == [{"metric": "f1_score", "op": "min",
                                             "threshold": 0.8, "value": 0.7, "passed": False,
                                             "reason": "0.7 < 0.8"}]
    assert [e["data"]["instance"] for e in by_type["quality_gate_passed"]] == [v1, v2, v4, v5]
    (back,) = by_type["alias_rolled_back"]
    assert back["data"] == {"alias": "champion", "from": v5, "to": v1, "reason": "label leak"}
    (retrain,) = by_type["retrain_required"]
    assert retrain["_subject"] == "assetd.out.fraud.main.fraud_model.retrain_required"
    assert retrain["data"] == {"trigger_asset": "fraud_features", "trigger_instance": "v1",
                               "metric": "ks_statistic", "score": 0.25, "threshold": 0.1,
                               "reason": "ks_statistic 0.25 > 0.1 on fraud_features v1"}
    for e in events:
        assert e["_subject"] == f"assetd.out.fraud.main.{e['subject']}.{e['type']}"
        assert e["source"] == "assetd" and e["causeid"] and e["_headers"]["Nats-Msg-Id"] == e["id"]
    assert len({e["id"] for e in events}) == len(events), "each outbound event once"

    history = await c.request("decisions", asset="fraud_model", limit=500)
    assert history[0]["outcome"] == "rolled_back"
    assert all("rules_sha256" in r["inputs"] for r in history if r["rule"])


async def _all_types(js: Any) -> list[dict[str, Any]] | None:
    events = await out_events(js)
    types = {e["type"] for e in events}
    wanted = {"instance_created", "quality_gate_passed", "quality_gate_failed",
              "asset_promoted", "promotion_rejected", "alias_rolled_back", "retrain_required"}
    return events if wanted <= types else None


async def test_manual_promotion_force_and_to_branch(c: AssetClient) -> None:
    """Manual requests obey gates unless forced; to_branch copies and applies that branch."""
    await c.register_data("fraud_features", wait=True)
    await _model(c, 0.90, True)
    low = (await c.register_model("fraud_model", annotations={"f1_score": 0.5},
                                  wait=True))["instance"]
    with pytest.raises(PromotionRejectedError) as err:
        await c.request_promotion("fraud_model", low, reason="try", wait=True)
    assert err.value.reason == "gates_failed"
    forced = await c.request_promotion("fraud_model", low, reason="hotfix", force=True,
                                       wait=True)
    (promoted,) = emitted(forced, "asset_promoted")
    assert (forced["instance"], promoted["manual"], promoted["reason"]) == (low, True, "hotfix")
    rows = await c.request("decisions", asset="fraud_model", limit=1)
    assert rows[0]["inputs"]["forced"] is True and rows[0]["inputs"]["request"]["force"] is True

    copy = await c.request_promotion("fraud_model", "v1", reason="ship to staging",
                                     to_branch="staging", wait=True)
    assert copy["copied_to"] == {"branch": "staging", "instance": "v1"}
    staging = AssetClient("fraud", "staging", settings=c.settings)
    async with staging:
        copied = await staging.peek("fraud_model", "v1")
        assert copied["annotations"]["promoted_from_branch"] == "main"
        assert copied["annotations"]["promoted_from_instance"] == "v1"
        await wait_for(lambda: _decided(staging, "fraud_model", "v1", "waiting"),
                       what="staging rules applied to the copy")


async def test_invalid_reload_keeps_old_rules(c: AssetClient, rules_daemon: Daemon) -> None:
    """A reload that fails validation is refused; the previous rules keep deciding."""
    path = rules_daemon.rules.path
    assert path is not None
    before = (await c.status())["rules"]
    path.write_text(RULES.replace("min_improvement: 0.02", "min_improvment: 0.02"))

    async def refused() -> Any:
        return (await c.status())["rules"]["last_error"]

    errors = await wait_for(refused, what="reload refused")
    assert errors == [f"{path}:10: rules.0.promote.min_improvment: unknown key "
                      "'min_improvment'"]
    assert (await c.status())["rules"]["sha256"] == before["sha256"]
    await c.register_data("fraud_features", wait=True)
    await _model(c, 0.85, True)  # the old rules still decide
    assert await _decided(c, "fraud_model", "v1", "promoted")

    path.write_text(RULES.replace("min: 0.80", "min: 0.99"))

    async def reloaded() -> bool:
        st = (await c.status())["rules"]
        return bool(st["sha256"] != before["sha256"] and st["last_error"] is None)

    await wait_for(reloaded, what="valid reload")
    v2 = (await c.register_model("fraud_model", annotations={"f1_score": 0.95},
                                 wait=True))["instance"]
    await wait_for(lambda: _decided(c, "fraud_model", v2, "gates_failed"), what="new rules")


async def test_champion_at_time_t_and_drift_annotation(c: AssetClient, js: Any) -> None:
    """``peek(..., at=T)`` answers who held the alias at T; a registration carrying the
    drift metric as an annotation counts as a drift report."""
    await c.register_data("fraud_features", wait=True)
    await _model(c, 0.85, True)
    t1 = datetime.now(UTC)  # v1 is champion from here until v2 is promoted
    await _model(c, 0.90, True)
    assert (await c.peek("fraud_model", "@champion", at=t1))["instance"] == "v1"
    assert (await c.peek("fraud_model", "@champion"))["instance"] == "v2"
    with pytest.raises(QueryError) as err:
        await c.peek("fraud_model", "@champion", at="2000-01-01T00:00:00Z")
    assert err.value.code == "not_found"

    await c.register_data("fraud_features", annotations={"ks_statistic": 0.3}, wait=True)
    (ev,) = await wait_for(lambda: out_events(js, "retrain_required"), what="drift annotation")
    assert ev["data"]["trigger_instance"] == "v2" and ev["data"]["score"] == 0.3
