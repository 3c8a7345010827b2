"""Registration, consumption and lifecycle events through a real nats-server and registry."""

from __future__ import annotations

from typing import Any

import pytest

from assetd.client import AssetClient, EventRejectedError
from assetd.daemon.app import Daemon
from tests.helpers import envelope, out_events, publish, relayed, wait_for


async def test_register_assigns_contiguous_versions_and_publishes_instance_created(
    client: AssetClient, js: Any
) -> None:
    """Each registration gets the next vN and exactly one instance_created with causeid."""
    ids = []
    for f1 in (0.8, 0.81, 0.82):
        created = await client.register_model("fraud_model", annotations={"f1": f1}, wait=True)
        ids.append(created["instance"])
    assert ids == ["v1", "v2", "v3"]
    events = await wait_for(lambda: _n_events(js, "instance_created", 3), what="3 events")
    assert [e["data"]["version"] for e in events] == [1, 2, 3]
    for e in events:
        assert e["source"] == "assetd"
        assert e["_subject"] == "assetd.out.fraud.main.fraud_model.instance_created"
        assert e["_headers"]["Nats-Msg-Id"] == e["id"]
        assert e["_headers"]["Content-Type"] == "application/cloudevents+json"
        assert e["causeid"]


async def _n_events(js: Any, type_: str, n: int) -> list[dict[str, Any]] | None:
    events = await out_events(js, type_)
    return events if len(events) >= n else None


async def test_annotations_keep_their_types(client: AssetClient) -> None:
    """A float stays a float, an int an int, a bool a bool, a string a string."""
    ann = {"f": 1.0, "i": 1, "b": True, "s": "1", "n": None}
    await client.register_data("features", annotations=ann, wait=True)
    got = (await client.peek("features"))["annotations"]
    assert got == ann
    assert [type(got[k]) for k in "fibs"] == [float, int, bool, str]


async def test_inputs_are_resolved_and_stored_as_versions(client: AssetClient) -> None:
    """``inputs`` selectors are resolved to vN at registration and show in lineage."""
    await client.register_data("features", wait=True)
    await client.register_data("features", wait=True)
    m = await client.register_model("fraud_model", inputs=["features@latest-1"], wait=True)
    assert (await client.peek("fraud_model", m["instance"]))["inputs"] == [
        {"asset": "features", "branch": "main", "instance": "v1"}]
    up = await client.lineage("fraud_model", "v1", direction="upstream")
    assert {"from": "features@main:v1", "to": "fraud_model@main:v1", "relation": "input"} in \
        up["edges"]


async def test_unknown_input_is_rejected_with_reason(client: AssetClient) -> None:
    """An input that does not resolve is bad input: rejected, nothing registered."""
    with pytest.raises(EventRejectedError, match=r"inputs\.0: no instance nope@latest"):
        await client.register_model("fraud_model", inputs=["nope"], wait=True)
    assert (await client.list_instances("fraud_model"))["items"] == []


async def test_pending_instance_is_not_latest_until_ready(client: AssetClient) -> None:
    """``state: pending`` hides an instance from ``latest`` until instance_updated readies it."""
    await client.register_data("features", wait=True)
    await client.register_data("features", state="pending", wait=True)
    assert (await client.peek("features"))["instance"] == "v1"
    await client.publish("instance_updated", "features",
                         {"instance": "v2", "state": "ready", "reason": "upload finished"})
    await wait_for(lambda: _latest_is(client, "features", "v2"), what="v2 ready")


async def _latest_is(client: AssetClient, asset: str, inst: str) -> bool:
    return bool((await client.peek(asset))["instance"] == inst)


async def test_invalidated_instance_is_skipped_and_refused(client: AssetClient) -> None:
    """An invalidated vN leaves ``latest`` and an explicit request for it is ``invalid``."""
    from assetd.errors import QueryError

    for _ in range(2):
        await client.register_data("features", wait=True)
    await client.publish("instance_updated", "features",
                         {"instance": "v2", "validity": "invalidated", "reason": "bad rows"})
    await wait_for(lambda: _latest_is(client, "features", "v1"), what="v2 invalidated")
    with pytest.raises(QueryError) as err:
        await client.peek("features", "v2")
    assert err.value.code == "invalid"
    shown = await client.peek("features", "v2", allow_invalid=True)
    assert shown["validity"] == "invalidated"


async def test_consumption_is_recorded_with_resolved_version(client: AssetClient) -> None:
    """``consume`` resolves the selector and records that exact vN downstream."""
    await client.register_data("features", wait=True)
    await client.register_data("features", wait=True)
    got = await client.consume("features", "latest", consumer={"name": "trainer"})
    assert got["instance"] == "v2"

    async def consumed() -> bool:
        g = await client.lineage("features", "v2", direction="downstream")
        return {"from": "features@main:v2", "to": "consumer:trainer",
                "relation": "consumed_by"} in g["edges"]

    await wait_for(consumed, what="consumption edge")


async def test_asset_defined_upserts_definition(client: AssetClient) -> None:
    """``asset_defined`` creates, then updates, the definition shown by ``assets``."""
    await client.define("fraud_model", "model", name="Fraud", properties={"owner": "ml"})
    await client.define("fraud_model", "model", description="GBM")

    async def defined() -> Any:
        found = [a for a in await client.list_assets() if a["asset"] == "fraud_model"]
        return found and found[0]["description"] == "GBM" and found[0]

    a = await wait_for(defined, what="definition")
    assert (a["name"], a["properties"], a["kind"]) == ("Fraud", {"owner": "ml"}, "model")


async def test_same_event_id_applies_once_with_and_without_header(
    client: AssetClient, js: Any, daemon: Daemon
) -> None:
    """The inbox dedupes by id for ever: with the header, without it (as after the window)."""
    ev = envelope("asset_registered", "features", {"kind": "data"}, event_id="run-1/step-1")
    await publish(js, ev)
    await publish(js, ev)  # JetStream drops it if inside its (100 ms) window, else the inbox
    await publish(js, ev, header=False)  # what a re-publish after the window looks like
    await publish(js, ev, header=False)
    await client.register_data("features", event_id="marker", wait=False)
    await wait_for(lambda: _instances(client, "features", 2), what="marker applied")
    items = (await client.list_instances("features"))["items"]
    assert [i["instance"] for i in items] == ["v2", "v1"]
    assert daemon.ingest.counters["duplicate"] in (2, 3)
    await relayed(client)
    created = await out_events(js, "instance_created")
    assert len(created) == 2 and len({e["id"] for e in created}) == 2


async def _instances(client: AssetClient, asset: str, n: int) -> bool:
    return len((await client.list_instances(asset))["items"]) >= n


async def test_branches_have_their_own_versions(client: AssetClient) -> None:
    """Versions count per (project, branch, asset)."""
    await client.register_data("features", wait=True)
    other = await client.register("features", "data", branch="user.alice", wait=True)
    assert other["instance"] == "v1"
