"""``assetctl dlq``: list, show, replay (harmless twice), purge."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from assetd.client import AssetClient
from assetd.daemon.app import Daemon
from tests.helpers import envelope, stream_messages, wait_for
from tests.test_cli import ctl


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """SQLite is enough: this is about the DLQ stream."""
    return f"sqlite:///{tmp_path / 'registry.db'}"


async def test_list_show_replay_purge(daemon: Daemon, js: Any) -> None:
    """Fix the cause, replay the letter, replay again (no second effect), purge the rest."""
    early = envelope("asset_registered", "model", {"kind": "model",
                                                   "inputs": [{"asset": "features"}]})
    await js.publish("assetd.in.fraud.main.model.asset_registered", orjson.dumps(early),
                     headers={"Nats-Msg-Id": early["id"]})
    await js.publish("assetd.in.fraud.main.junk.asset_registered", b"not json at all")
    await wait_for(lambda: _dlq_size(js, 2), what="two dead letters")

    code, out, err = await ctl(daemon, "--json", "dlq", "list")
    assert code == 0, err
    rows = orjson.loads(out)
    assert [r["event_id"] for r in rows] == [early["id"], None]
    assert "inputs.0: no instance features@latest" in rows[0]["reason"]
    assert rows[1]["reason"].startswith("payload is not JSON")
    code, out, _ = await ctl(daemon, "dlq", "list")
    assert code == 0 and "no instance features@latest" in out
    code, out, _ = await ctl(daemon, "dlq", "show", str(rows[0]["seq"]))
    shown = orjson.loads(out)
    assert shown["payload"] == early and shown["inbound_subject"].endswith("asset_registered")

    async with AssetClient("fraud", settings=daemon.settings) as c:
        await c.register_data("features", wait=True)  # the cause is fixed
        code, out, _ = await ctl(daemon, "dlq", "replay", str(rows[0]["seq"]), "--keep")
        assert code == 0 and "replayed 1" in out
        await wait_for(lambda: _instances(c, "model", 1), what="replayed event applied")
        code, _, _ = await ctl(daemon, "dlq", "replay", str(rows[0]["seq"]))  # and again
        assert code == 0
        await wait_for(lambda: _ignored_duplicates(daemon, 1), what="second replay acked")
        assert len((await c.list_instances("model"))["items"]) == 1, "applied once"

    code, out, _ = await ctl(daemon, "--json", "dlq", "list")
    assert [r["event_id"] for r in orjson.loads(out)] == [None], "the fixed letter is gone"
    code, out, _ = await ctl(daemon, "dlq", "purge", "--older-than", "0s", "--yes")
    assert code == 0 and "deleted 1 dead letters" in out
    assert await stream_messages(js, "ASSETD_DLQ") == []
    code, _, err = await ctl(daemon, "dlq", "replay")
    assert code == 2 and "SEQ or --all" in err


async def _dlq_size(js: Any, n: int) -> bool:
    return (await js.stream_info("ASSETD_DLQ")).state.messages >= n


async def _instances(c: AssetClient, asset: str, n: int) -> bool:
    return len((await c.list_instances(asset))["items"]) >= n


async def _ignored_duplicates(daemon: Daemon, n: int) -> bool:
    return daemon.ingest.counters["duplicate"] >= n


async def test_replay_all_of_a_subject(daemon: Daemon, js: Any) -> None:
    """``dlq list --subject`` narrows; ``dlq replay --all --subject … --yes`` replays those."""
    for asset in ("a", "b"):
        ev = envelope("asset_consumed", asset, {"instance": "v1"})
        await js.publish(f"assetd.in.fraud.main.{asset}.asset_consumed", orjson.dumps(ev))
    await wait_for(lambda: _dlq_size(js, 2), what="two dead letters")
    code, out, _ = await ctl(daemon, "--json", "-p", "fraud", "dlq", "list", "--subject",
                             "assetd.dlq.fraud.main.a.>")
    assert code == 0 and len(orjson.loads(out)) == 1
    async with AssetClient("fraud", settings=daemon.settings) as c:
        await c.register_data("a", wait=True)
    code, out, _ = await ctl(daemon, "dlq", "replay", "--all", "--subject",
                             "assetd.dlq.fraud.main.a.>", "--yes")
    assert code == 0 and "replayed 1 dead letters" in out
    code, out, _ = await ctl(daemon, "--json", "dlq", "list")
    assert [r["inbound_subject"] for r in orjson.loads(out)] == [
        "assetd.in.fraud.main.b.asset_consumed"]
