"""Every class of bad input ends acked in ASSETD_DLQ with a reason and an event_rejected."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from assetd.client import AssetClient, EventRejectedError, QueryError
from assetd.daemon.app import Daemon
from tests.conftest import daemon_settings, running_daemon
from tests.helpers import envelope, out_events, stream_messages, wait_for


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """Bad input never reaches the database layer's differences: SQLite is enough here."""
    return f"sqlite:///{tmp_path / 'registry.db'}"


def _ev(**over: Any) -> dict[str, Any]:
    ev = envelope("asset_registered", "features", {"kind": "data"})
    data = over.pop("data", None)
    if data is not None:
        ev["data"] = data
    ev.update(over)
    return ev


SUBJ = "assetd.in.fraud.main.features.asset_registered"
CASES: list[tuple[str, str, bytes, str]] = [
    ("not_json", SUBJ, b"{not json", "payload is not JSON"),
    ("nan_literal", SUBJ, b'{"specversion":"1.0","score":NaN}', "payload is not JSON"),
    ("json_array", SUBJ, b"[1,2,3]", "must be a JSON object"),
    ("missing_id", SUBJ, orjson.dumps({k: v for k, v in _ev().items() if k != "id"}),
     "invalid CloudEvent envelope: id"),
    ("missing_kind", SUBJ, orjson.dumps(_ev(data={"annotations": {}})),
     "invalid data for asset_registered: kind"),
    ("wrong_type", SUBJ, orjson.dumps(_ev(data={"kind": "data", "annotations": {"a": [1]}})),
     "annotations.a"),
    ("typo_field", SUBJ, orjson.dumps(_ev(data={"kind": "data", "anotations": {}})),
     "anotations"),
    ("bad_spec", SUBJ, orjson.dumps(_ev(specversion="0.3")), "specversion"),
    ("id_with_space", SUBJ, orjson.dumps(_ev(id="a b")), "invalid CloudEvent envelope: id"),
    ("asset_with_dot", "assetd.in.fraud.main.features.asset_registered",
     orjson.dumps(_ev(subject="feat.ures")), "subject"),
    ("asset_with_star", "assetd.in.fraud.main.fea*tures.asset_registered",
     orjson.dumps(_ev(subject="fea*tures")), "subject"),
    ("asset_gt", "assetd.in.fraud.main.fea>.asset_registered",
     orjson.dumps(_ev(subject="fea>")), "subject"),
    ("bad_branch", SUBJ, orjson.dumps(_ev(branch="-main")), "branch"),
    ("project_mismatch", SUBJ, orjson.dumps(_ev(project="other")), "subject/payload mismatch"),
    ("branch_mismatch", SUBJ, orjson.dumps(_ev(branch="user.alice")),
     "branch 'user~alice' != subject token 'main'"),
    ("v1_subject", "assetd.in.fraud.features.asset_registered", orjson.dumps(_ev()),
     "subject must be assetd.in.<project>.<branch token>.<asset>.<type>"),
    ("type_mismatch", "assetd.in.fraud.main.features.asset_consumed", orjson.dumps(_ev()),
     "subject/payload mismatch"),
    ("extra_tokens", "assetd.in.fraud.main.x.features.asset_registered", orjson.dumps(_ev()),
     "subject must be"),
    ("unknown_type", "assetd.in.fraud.main.features.asset_exploded",
     orjson.dumps(_ev(type="asset_exploded")), "unknown event type"),
    ("oversize", SUBJ, orjson.dumps(_ev(data={"kind": "data", "tags": {"x": "y" * 300_000}})),
     "the limit is 262144"),
    ("negative_version", "assetd.in.fraud.main.features.instance_updated",
     orjson.dumps(envelope("instance_updated", "features",
                           {"instance": "v-1", "state": "ready", "reason": "r"})), "instance"),
    ("huge_map", SUBJ, orjson.dumps(_ev(data={"kind": "data",
                                              "annotations": {str(i): i for i in range(2000)}})),
     "annotations"),
]


@pytest.mark.parametrize(("name", "subject", "payload", "reason"), CASES,
                         ids=[c[0] for c in CASES])
async def test_bad_input_is_dead_lettered_and_valid_traffic_continues(
    client: AssetClient, js: Any, name: str, subject: str, payload: bytes, reason: str
) -> None:
    """The message is acked into the DLQ with its reason; event_rejected is published."""
    await js.publish(subject, payload, headers={"Nats-Msg-Id": f"bad-{name}"})
    after = await client.register_data("features", wait=True)  # later valid events still apply
    assert after["instance"] == "v1"

    dlq = await wait_for(lambda: stream_messages(js, "ASSETD_DLQ"), what="DLQ copy")
    assert len(dlq) == 1
    msg = dlq[0]
    assert msg.data == payload, "the original bytes are kept"
    assert reason in msg.headers["Assetd-Reason"]
    assert msg.headers["Assetd-Inbound-Subject"] == subject

    rejected = await wait_for(lambda: out_events(js, "event_rejected"), what="event_rejected")
    assert len(rejected) == 1
    data = rejected[0]["data"]
    assert reason in data["reason"] and data["inbound_subject"] == subject
    tokens = subject.split(".")
    assert msg.subject.startswith("assetd.dlq.")
    assert rejected[0]["_subject"].endswith(".event_rejected")
    if len(tokens) == 6 and tokens[2:5] == ["fraud", "main", "features"]:
        assert rejected[0]["_subject"] == "assetd.out.fraud.main.features.event_rejected"
    if len(tokens) == 5:  # a version 1 publisher hears why, on its project's subjects
        assert rejected[0]["_subject"] == "assetd.out.fraud._.features.event_rejected"

    info = await js.consumer_info("ASSETD_IN", "assetd")
    assert info.num_ack_pending == 0 and info.num_pending == 0, "everything acked"


async def test_unknown_token_becomes_underscore(client: AssetClient, js: Any) -> None:
    """Tokens that are not valid identifiers are routed as ``_`` in DLQ and event_rejected."""
    await js.publish("assetd.in.fraud.main.bad$asset.asset_registered", b"x")
    await client.register_data("features", wait=True)
    rejected = await wait_for(lambda: out_events(js, "event_rejected"), what="event_rejected")
    assert rejected[0]["_subject"] == "assetd.out.fraud.main._.event_rejected"
    dlq = await stream_messages(js, "ASSETD_DLQ")
    assert dlq[0].subject == "assetd.dlq.fraud.main._.asset_registered"


async def test_redelivered_rejection_is_published_once(client: AssetClient, js: Any) -> None:
    """The rejection's outbound id is deterministic, so one bad message yields one event."""
    ev = envelope("asset_consumed", "nothing", {"instance": "v9"})
    await js.publish("assetd.in.fraud.main.nothing.asset_consumed", orjson.dumps(ev))
    await client.register_data("features", wait=True)
    rejected = await wait_for(lambda: out_events(js, "event_rejected"), what="event_rejected")
    assert len(rejected) == 1
    assert rejected[0]["data"]["event_id"] == ev["id"]
    assert rejected[0]["causeid"] == ev["id"]
    assert "no instance nothing@v9" in rejected[0]["data"]["reason"]


@pytest.fixture
async def strict_daemon(nc: Any, nats_server: Any, tmp_path: Path,
                        db_url: str) -> AsyncIterator[Daemon]:
    """A daemon with tight limits."""
    async with running_daemon(daemon_settings(nats_server.url, db_url, tmp_path, max_map_keys=3,
                               max_value_chars=10, max_inputs=1, max_lineage_depth=2,
                               max_lineage_nodes=2)) as d:
        yield d


@pytest.mark.parametrize(("data", "reason"), [
    ({"kind": "data", "tags": {"a": "1", "b": "2", "c": "3", "d": "4"}},
     "limit exceeded: tags has 4 keys; the limit is 3"),
    ({"kind": "data", "annotations": {"note": "x" * 11}},
     "limit exceeded: annotations.note is 11 characters; the limit is 10"),
    ({"kind": "data", "inputs": [{"asset": "a"}, {"asset": "b"}]},
     "limit exceeded: inputs has 2 entries; the limit is 1"),
])
async def test_configured_limits_refuse_with_reason(strict_daemon: Daemon, data: dict[str, Any],
                                                    reason: str) -> None:
    """Each limit (ASSETD_MAX_*) refuses with a reason that names it."""
    async with AssetClient("fraud", settings=strict_daemon.settings) as c:
        with pytest.raises(EventRejectedError) as err:
            await c.send("asset_registered", "x", data, event_id="lim-1")
        assert err.value.reason == reason


async def test_lineage_limits(strict_daemon: Daemon) -> None:
    """Lineage depth is bounded with a clear error; a graph over the node limit is cut and
    says so."""
    async with AssetClient("fraud", settings=strict_daemon.settings) as c:
        await c.register_data("a", wait=True)
        for name, up in (("b", "a"), ("c", "b"), ("d", "c")):
            await c.register_data(name, inputs=[up], wait=True)
        with pytest.raises(QueryError, match="depth 3 is over the limit of 2"):
            await c.lineage("d", depth=3)
        cut = await c.lineage("a", direction="downstream", depth=2)
        assert cut["truncated"] is True and len(cut["nodes"]) == 2
