"""The ``event`` query (CONTRACT §7): what became of one inbound event id, from the registry."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from assetd.client import AssetClient
from assetd.daemon.embedded import EmbeddedNats
from assetd.errors import QueryError
from assetd.registry import reads, repo
from assetd.registry.engine import make_engine
from tests.conftest import daemon_settings, running_daemon
from tests.helpers import wait_for

RULES = """\
version: 1
rules:
  - asset: fraud_model
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
      retrain: [fraud_model]
"""


def _id(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


async def _outcome(c: AssetClient, eid: str, status: str = "applied") -> dict[str, Any]:
    """Poll the ``event`` query until ``eid`` has ``status``; return the result."""

    async def done() -> dict[str, Any] | None:
        got: dict[str, Any] = await c.request("event", id=eid)
        return got if got["status"] == status else None

    result: dict[str, Any] = await wait_for(done, what=f"{eid} {status}")
    return result


def _events(result: dict[str, Any], type_: str) -> list[dict[str, Any]]:
    return [e for e in result["outcome"]["events"] if e["type"] == type_]


@pytest.fixture
async def rules_client(nc: Any, nats_server: EmbeddedNats, tmp_path: Path,
                       db_url: str) -> AsyncIterator[AssetClient]:
    """A client of project ``fraud`` talking to a daemon with ``RULES`` in force."""
    path = tmp_path / "rules.yaml"
    path.write_text(RULES)
    settings = daemon_settings(nats_server.url, db_url, tmp_path, rules=path)
    async with running_daemon(settings) as d, \
            AssetClient("fraud", settings=d.settings, source="tests/rules", timeout=15) as c:
        yield c


async def test_registration_answers_its_instance(client: AssetClient) -> None:
    """An applied registration answers ``applied`` with its ``vN``, version and instance_created."""
    await client.register_data("features", wait=True)
    eid = await client.register_data("features", annotations={"rows": 10}, event_id=_id("reg"),
                                     wait=False)
    got = await _outcome(client, eid)
    assert got["type"] == "asset_registered" and got["at"] and got["seq"] >= 1
    out = got["outcome"]
    assert (out["asset"], out["branch"], out["instance"], out["version"], out["state"]) == \
        ("features", "main", "v2", 2, "ready")
    assert out["decisions"] == [] and "decision" not in out
    assert out["events"] == [{"type": "instance_created", "asset": "features",
                              "branch": "main", "instance": "v2", "version": 2,
                              "kind": "data", "state": "ready"}]


async def test_repeated_id_answers_its_first_outcome(client: AssetClient) -> None:
    """The same id published again changes nothing and still answers its first outcome."""
    eid = _id("again")
    await client.register_data("features", annotations={"n": 1}, event_id=eid, wait=True)
    first = await _outcome(client, eid)
    await client.register_data("features", annotations={"n": 2}, event_id=eid, wait=False)
    await client.register_data("barrier", wait=True)  # applied after the repeat
    assert await client.request("event", id=eid) == first
    page = await client.list_instances("features")
    assert [i["instance"] for i in page["items"]] == ["v1"]
    assert page["items"][0]["annotations"] == {"n": 1}


async def test_rejected_event_says_why_and_stays_republishable(client: AssetClient) -> None:
    """Bad data answers ``rejected`` with reason and errors; a corrected re-publish applies."""
    eid = _id("bad")
    await client.publish("asset_registered", "features", {"kind": "data", "bogus": 1},
                         event_id=eid)
    got = await _outcome(client, eid, "rejected")
    assert got["type"] == "asset_registered"
    out = got["outcome"]
    assert out["reason"].startswith("invalid data for asset_registered: bogus")
    assert [e["loc"] for e in out["errors"]] == ["bogus"]
    assert (out["asset"], out["branch"]) == ("features", "main")

    await client.publish("asset_registered", "features", {"kind": "data"}, event_id=eid)
    fixed = await _outcome(client, eid, "applied")
    assert fixed["outcome"]["instance"] == "v1" and fixed["seq"] > got["seq"]
    await client.publish("asset_registered", "features", {"kind": "data", "bogus": 2},
                         event_id=eid)  # a bad copy of an applied id: rejected, not recorded
    await client.register_data("barrier", wait=True)
    assert await client.request("event", id=eid) == fixed


async def test_handler_rejection_and_consumption(client: AssetClient) -> None:
    """A refused event answers its reason; a consumption answers the resolved instance."""
    await client.register_data("features", wait=True)
    await client.register_data("features", wait=True)
    missing = await client.publish("asset_consumed", "features", {"instance": "v9"},
                                   event_id=_id("consume-missing"))
    got = await _outcome(client, missing, "rejected")
    assert got["type"] == "asset_consumed"
    assert got["outcome"]["reason"] == "no instance features@v9 on branch main of project fraud"
    used = await client.publish("asset_consumed", "features",
                                {"instance": "latest-1", "consumer": {"name": "scorer"}},
                                event_id=_id("consume"))
    out = (await _outcome(client, used))["outcome"]
    assert (out["instance"], out["consumer"], out["events"]) == ("v1", "scorer", [])


async def test_unknown_and_malformed_ids(client: AssetClient) -> None:
    """An id never seen answers ``unknown``; an id that no event could carry is ``invalid``."""
    got = await client.request("event", id="never-seen")
    assert got == {"status": "unknown", "type": None, "outcome": None, "at": None, "seq": None}
    for body in ({"id": "has space"}, {"id": ""}, {"id": "x" * 129}, {}):
        with pytest.raises(QueryError) as err:
            await client.request("event", **body)
        assert err.value.code == "invalid"


async def test_promotion_outcomes_name_the_decision(rules_client: AssetClient) -> None:
    """Registrations, checks, promotion requests, invalidations and drift answer what they
    decided and published."""
    c = rules_client
    await c.register_data("fraud_features", wait=True)
    reg = await c.register_model("fraud_model", annotations={"f1_score": 0.85},
                                 inputs=["fraud_features"], event_id=_id("m1"), wait=False)
    out = (await _outcome(c, reg))["outcome"]
    assert (out["instance"], out["decision"], out["waiting_for"]) == \
        ("v1", "waiting", ["holdout_eval"])
    assert out["decisions"] == ["gates_passed", "waiting"]
    assert [e["type"] for e in out["events"]] == ["instance_created", "quality_gate_passed"]

    check = await c.report_quality("fraud_model", "holdout_eval", True, instance="v1",
                                   event_id=_id("check"), wait=False)
    out = (await _outcome(c, check))["outcome"]
    assert (out["instance"], out["check"], out["passed"], out["decision"]) == \
        ("v1", "holdout_eval", True, "promoted")
    (promoted,) = _events({"outcome": out}, "asset_promoted")
    assert (promoted["instance"], promoted["alias"], promoted["previous"],
            promoted["candidate_value"]) == ("v1", "champion", None, 0.85)

    await c.register_model("fraud_model", annotations={"f1_score": 0.95}, wait=True)
    ask = await c.request_promotion("fraud_model", "v2", reason="looks better",
                                    event_id=_id("ask"), wait=False)
    got = await _outcome(c, ask)
    assert got["type"] == "promotion_requested"
    out = got["outcome"]
    assert (out["instance"], out["alias"], out["decision"]) == ("v2", "champion", "rejected")
    (rejected,) = _events(got, "promotion_rejected")
    assert (rejected["reason"], rejected["champion"], rejected["not_reported"]) == \
        ("check_failed", "v1", ["holdout_eval"])

    drift = await c.report_drift("fraud_features", "ks_statistic", 0.3, event_id=_id("drift"),
                                 wait=False)
    got = await _outcome(c, drift)
    assert got["outcome"]["decisions"] == ["drift_exceeded"]
    (retrain,) = _events(got, "retrain_required")
    assert (retrain["asset"], retrain["trigger_asset"], retrain["score"]) == \
        ("fraud_model", "fraud_features", 0.3)

    bad = await c.update_instance("fraud_model", "v1", validity="invalidated",
                                  reason="label leak", event_id=_id("invalidate"), wait=False)
    got = await _outcome(c, bad)
    assert (got["outcome"]["state"], got["outcome"]["validity"]) == ("ready", "invalidated")
    (back,) = _events(got, "alias_rolled_back")
    assert (back["alias"], back["from"], back["to"]) == ("champion", "v1", None)

    copy = await c.request_promotion("fraud_model", "v2", reason="stage it",
                                     to_branch="staging", event_id=_id("copy"), wait=False)
    out = (await _outcome(c, copy))["outcome"]
    assert (out["instance"], out["copied_to"]) == ("v2", {"branch": "staging", "instance": "v1"})
    assert (out["decision"], out["waiting_for"]) == ("waiting", ["holdout_eval"])
    assert [(e["type"], e["branch"]) for e in out["events"]] == \
        [("instance_created", "staging"), ("quality_gate_passed", "staging")]


async def test_outcome_survives_a_restart(nc: Any, nats_server: EmbeddedNats, tmp_path: Path,
                                          db_url: str) -> None:
    """The answer comes from the registry: a new daemon on the same registry gives it too."""
    settings = daemon_settings(nats_server.url, db_url, tmp_path)
    eid = _id("durable")
    async with running_daemon(settings) as d, \
            AssetClient("fraud", settings=d.settings, timeout=15) as c:
        await c.register_model("fraud_model", annotations={"f1_score": 0.9}, event_id=eid)
        before = await _outcome(c, eid)
    async with running_daemon(settings) as d, \
            AssetClient("fraud", settings=d.settings, timeout=15) as c:
        assert await c.request("event", id=eid) == before
        assert before["outcome"]["instance"] == "v1"
        other = AssetClient("other", settings=d.settings, timeout=15)
        async with other:  # ids are per project
            assert (await other.request("event", id=eid))["status"] == "unknown"


def test_upgrade_keeps_applied_ids_and_outcomes_never_regress(db_url: str) -> None:
    """An id applied before revision 0004 answers ``applied`` (null outcome) after the upgrade;
    a rejection is replaced by a later application, never the other way round."""
    from alembic import command
    from sqlalchemy import text

    from assetd.registry.migrate import alembic_config, upgrade

    command.upgrade(alembic_config(db_url), "0003")
    engine = make_engine(db_url)
    now = datetime.now(UTC)
    try:
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO inbox (project, event_id, type, applied_at) "
                              "VALUES ('p', 'old', 'asset_registered', :now)"), {"now": now})
        upgrade(db_url)
        with engine.begin() as conn:
            got = reads.event(conn, project="p", event_id="old")
            assert (got["status"], got["type"], got["outcome"]) == \
                ("applied", "asset_registered", None)
            assert reads.event(conn, project="p", event_id="new")["status"] == "unknown"

            def row(status: str, seq: int) -> dict[str, Any]:
                return {"project": "p", "event_id": "new", "type": "asset_consumed",
                        "status": status, "outcome": {"seq": seq}, "seq": seq,
                        "recorded_at": now}

            repo.outcomes_add(conn, rows=[row("rejected", 1)])
            repo.outcomes_add(conn, rows=[row("rejected", 2)])
            assert reads.event(conn, project="p", event_id="new")["outcome"] == {"seq": 2}
            repo.outcomes_add(conn, rows=[row("applied", 3)])
            repo.outcomes_add(conn, rows=[row("rejected", 4)])
            repo.outcomes_add(conn, rows=[row("applied", 5)])
            got = reads.event(conn, project="p", event_id="new")
            assert (got["status"], got["outcome"], got["seq"]) == ("applied", {"seq": 3}, 3)
    finally:
        engine.dispose()

