"""The query API of CONTRACT §7: selectors, assets, paging, lineage, errors, status."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from sqlalchemy import insert

from assetd.client import AssetClient
from assetd.daemon.app import Daemon
from assetd.errors import QueryError
from assetd.registry.tables import ALIAS
from tests.helpers import wait_for


async def _versions(client: AssetClient, n: int, asset: str = "fraud_model") -> None:
    for i in range(n):
        await client.register_model(asset, annotations={"i": i}, tags={"n": str(i)}, wait=True)


def _set_alias(daemon: Daemon, asset: str, alias: str, version: int) -> None:
    """Point an alias directly (alias moves by rules arrive with the rules engine)."""
    from datetime import UTC, datetime

    from sqlalchemy import select

    from assetd.registry.tables import INSTANCE

    with daemon.writer.begin() as conn:
        iid = conn.execute(select(INSTANCE.c.id).where(
            INSTANCE.c.asset == asset, INSTANCE.c.version == version)).scalar_one()
        conn.execute(insert(ALIAS).values(project="fraud", branch="main", asset=asset,
                                          alias=alias, instance_id=iid,
                                          updated_at=datetime.now(UTC)))


@pytest.mark.parametrize(("selector", "expected"), [
    ("latest", "v4"), ("latest-1", "v3"), ("latest-3", "v1"), ("v2", "v2"),
    ("@champion", "v3"), ("champion", "v3"),
])
async def test_every_selector_resolves(client: AssetClient, daemon: Daemon, selector: str,
                                       expected: str) -> None:
    """latest, latest-N, vN, @alias and a bare alias name each resolve as the contract says."""
    await _versions(client, 4)
    _set_alias(daemon, "fraud_model", "champion", 3)
    got = await client.peek("fraud_model", selector)
    assert got["instance"] == expected
    if expected == "v3":
        assert got["aliases"] == ["champion"]


@pytest.mark.parametrize(("selector", "code"), [
    ("latest-4", "not_found"), ("v9", "not_found"), ("@nobody", "not_found"),
    ("latest-x", "invalid"), ("v0", "invalid"),
])
async def test_selector_errors(client: AssetClient, selector: str, code: str) -> None:
    """Unknown instances are ``not_found``; malformed selectors are ``invalid``."""
    await _versions(client, 4)
    with pytest.raises(QueryError) as err:
        await client.peek("fraud_model", selector)
    assert err.value.code == code


async def test_instances_pages_newest_first(client: AssetClient) -> None:
    """``limit`` and ``before`` page through every instance exactly once."""
    await _versions(client, 7)
    seen: list[int] = []
    before = None
    while True:
        page = await client.list_instances("fraud_model", limit=3, before=before)
        seen += [i["version"] for i in page["items"]]
        if page["next"] is None:
            break
        before = page["next"]
    assert seen == [7, 6, 5, 4, 3, 2, 1]
    with pytest.raises(QueryError) as err:
        await client.request("instances", asset="fraud_model", limit=501)
    assert err.value.code == "invalid"


async def test_assets_filters_by_kind_and_tags(client: AssetClient) -> None:
    """``assets`` filters on kind and, server-side, on the latest instance's tags."""
    await _versions(client, 2)
    await client.register_data("features", tags={"team": "risk"}, wait=True)
    everything = await client.list_assets()
    assert {a["asset"] for a in everything} == {"fraud_model", "features"}
    assert [a["asset"] for a in await client.list_assets(kind="data")] == ["features"]
    assert [a["asset"] for a in await client.list_assets(tags={"team": "risk"})] == ["features"]
    assert [a["asset"] for a in await client.list_assets(tags={"n": "1"})] == ["fraud_model"]
    assert await client.list_assets(tags={"n": "0"}) == []
    model = next(a for a in everything if a["asset"] == "fraud_model")
    assert (model["latest"], model["instances"], model["kind"]) == ("v2", 2, "model")


async def test_lineage_depth_and_direction(client: AssetClient) -> None:
    """raw → features → model → consumer: depth bounds the walk in both directions."""
    await client.register_data("raw", wait=True)
    await client.register_data("features", inputs=["raw"], wait=True)
    await client.register_model("fraud_model", inputs=["features@v1"], wait=True)
    await client.consume("fraud_model", consumer={"name": "server"})

    up1 = await client.lineage("fraud_model", direction="upstream", depth=1)
    assert {n["id"] for n in up1["nodes"]} == {"fraud_model@main:v1", "features@main:v1"}
    up2 = await client.lineage("fraud_model", direction="upstream", depth=2)
    assert {"from": "raw@main:v1", "to": "features@main:v1", "relation": "input"} in up2["edges"]

    async def down() -> Any:
        g = await client.lineage("raw", "v1", direction="downstream", depth=3)
        return any(e["relation"] == "consumed_by" for e in g["edges"]) and g

    graph = await wait_for(down, what="consumption in lineage")
    kinds = {n["id"]: n["kind"] for n in graph["nodes"]}
    assert kinds == {"raw@main:v1": "data", "features@main:v1": "data",
                     "fraud_model@main:v1": "model", "consumer:server": "consumer"}


async def test_bad_requests_get_clear_errors(client: AssetClient) -> None:
    """Unknown methods, non-JSON bodies and bad fields answer ``invalid``, never hang."""
    nc = client.nc
    for subject, body in [("assetd.api.fraud.explode", b"{}"),
                          ("assetd.api.fraud.resolve", b"{oops"),
                          ("assetd.api.fraud.resolve", b'{"asset": "a.b"}'),
                          ("assetd.api.fraud.resolve", b'{"asset": "x", "extra": 1}')]:
        reply = orjson.loads((await nc.request(subject, body, timeout=5)).data)
        assert reply["ok"] is False and reply["error"]["code"] == "invalid", subject


async def test_status_and_decisions(client: AssetClient) -> None:
    """``status`` reports version, database, counters and DLQ depth; decisions start empty."""
    await _versions(client, 1)
    st = await client.status()
    assert st["version"] and st["database"] in ("sqlite", "postgresql")
    assert st["counters"]["applied"] >= 1 and st["dlq_depth"] == 0
    assert await client.request("decisions", asset="fraud_model") == []
