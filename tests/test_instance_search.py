"""``instances`` with filters: annotation conditions, tags of any instance, state, validity,
producer, creation time; paged within a scan budget, bound by the version index."""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.dialects import sqlite

from assetd.client import AssetClient
from assetd.daemon.app import Daemon
from assetd.errors import QueryError
from assetd.registry import search
from assetd.registry.migrate import upgrade
from assetd.schemas.where import parse_condition

F1 = [0.7, 0.95, 0.85, 0.91, 0.6, 0.99]  # v1..v6


@pytest.mark.parametrize(("cond", "annotations", "meets"), [
    ("f1_score>=0.9", {"f1_score": 0.9}, True),
    ("f1_score > 0.9", {"f1_score": 0.9}, False),
    ("f1_score<1", {"f1_score": 1}, False),
    ("f1_score>=0.9", {"f1_score": "0.95"}, False),
    ("f1_score>=0.9", {}, False),
    ("epochs=10", {"epochs": 10.0}, True),
    ("epochs==10", {"epochs": True}, False),
    ("ok=true", {"ok": True}, True),
    ("ok=true", {"ok": 1}, False),
    ("stage=prod", {"stage": "prod"}, True),
    ('seed="1"', {"seed": "1"}, True),
    ("seed=1", {"seed": "1"}, False),
    ("stage!=prod", {"stage": "dev"}, True),
    ("stage!=prod", {}, False),
    ("day>=2026-01-01", {"day": "2026-03-01"}, True),
    ("note=null", {"note": None}, True),
    ("train loss <= 0.5", {"train loss": 0.25}, True),
])
def test_conditions(cond: str, annotations: dict[str, Any], meets: bool) -> None:
    """Numbers compare as numbers, strings as strings, equality is exact JSON equality, and a
    missing key never matches."""
    assert parse_condition(cond).matches(annotations) is meets


@pytest.mark.parametrize("cond", ["f1_score", ">=0.9", "a>=[1]", "a=>1", ""])
def test_bad_conditions_are_refused(cond: str) -> None:
    """A condition that is not KEY OP VALUE (or compares with a list or map) is refused."""
    with pytest.raises(ValueError):
        parse_condition(cond)


async def _fill(client: AssetClient) -> None:
    for i, f1 in enumerate(F1, start=1):
        await client.register_model("fraud_model", annotations={"f1_score": f1},
                                    tags={"seed": str(i % 2)}, wait=True)
    await client.register_model("other", annotations={"f1_score": 0.99}, wait=True)


async def _versions(client: AssetClient, **filters: Any) -> list[int]:
    page = await client.request("instances", asset="fraud_model", **filters)
    return [i["version"] for i in page["items"]]


async def test_filters_select_instances_newest_first(client: AssetClient) -> None:
    """Each filter, alone and together, returns exactly the matching instances of the asset;
    tags match on every instance, not only the latest."""
    await _fill(client)
    assert await _versions(client, where=["f1_score>=0.9"]) == [6, 4, 2]
    assert await _versions(client, where=["f1_score>=0.9", "f1_score<0.99"]) == [4, 2]
    assert await _versions(client, tags={"seed": "1"}) == [5, 3, 1]
    assert await _versions(client, tags={"seed": "1"}, where=["f1_score>0.8"]) == [3]
    await client.update_instance("fraud_model", "v4", validity="invalidated", reason="leak")
    assert await _versions(client, validity="invalidated") == [4]
    assert await _versions(client, validity="valid", where=["f1_score>=0.9"]) == [6, 2]
    assert await _versions(client, state="pending") == []
    assert await _versions(client, producer="tests/client") == [6, 5, 4, 3, 2, 1]
    assert await _versions(client, producer="someone/else") == []
    page = await client.request("instances", asset="fraud_model")
    created = {i["version"]: i["created_at"] for i in page["items"]}
    assert await _versions(client, created_after=created[3], created_before=created[5]) == [4, 3]
    with pytest.raises(QueryError) as err:
        await client.request("instances", asset="fraud_model", where=["nonsense"])
    assert err.value.code == "invalid"


async def test_filtered_pages_cover_every_match_once(client: AssetClient,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """With a tiny scan budget, pages come back short or empty with ``next`` set, and
    following ``next`` yields every match exactly once, then null."""
    await _fill(client)
    monkeypatch.setattr(search, "WINDOW", 1)
    monkeypatch.setattr(search, "MAX_SCAN", 2)
    seen: list[int] = []
    pages, before = 0, None
    while True:
        page = await client.request("instances", asset="fraud_model", limit=1, before=before,
                                    where=["f1_score>=0.9"])
        seen += [i["version"] for i in page["items"]]
        pages += 1
        if page["next"] is None:
            break
        before = page["next"]
    assert seen == [6, 4, 2] and pages >= 3


def test_a_window_is_an_index_range_scan(tmp_path: Any) -> None:
    """On SQLite the window query searches the unique version index, never the table."""
    url = f"sqlite:///{tmp_path / 'plan.db'}"
    upgrade(url)
    q = search.window(search._key("p", "main", "a"), 1, 500,
                      {"state": "ready", "created_after": None})
    sql = str(q.compile(dialect=sqlite.dialect(), compile_kwargs={"literal_binds": True}))
    with create_engine(url).connect() as conn:
        plan = " ".join(str(r[-1]) for r in conn.execute(text(f"EXPLAIN QUERY PLAN {sql}")))
    assert plan.startswith("SEARCH instance USING INDEX") and "version>" in plan, plan


async def test_assetctl_instances_where(daemon: Daemon, client: AssetClient,
                                        venv_bin: Any) -> None:
    """``assetctl instances ASSET --where 'f1_score>=0.9' --json`` lists only the matches."""
    await _fill(client)
    env = {**os.environ, "ASSETD_NATS_URL": daemon.settings.effective_nats_url,
           "ASSETD_PROJECT": "fraud"}
    proc = await asyncio.create_subprocess_exec(
        str(venv_bin / "assetctl"), "instances", "fraud_model", "--where", "f1_score>=0.9",
        "--where", "f1_score<0.99", "--json", env=env, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.DEVNULL)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    assert [i["version"] for i in json.loads(out)["items"]] == [4, 2]
