"""Filling a registry through the real apply path: registrations published to ``ASSETD_IN``
(``Nats-Msg-Id`` set, a window of unacknowledged publishes), applied by the daemon, counted
back with the ``assets`` query (its maintained counters)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterable, Iterator
from typing import Any

import orjson

from assetd.schemas import wire

PROJECT = "bench"
Event = tuple[str, bytes, str]  # subject, body, id


def registration(asset: str, i: int, inputs: list[dict[str, str]] | None = None) -> Event:
    """One ``asset_registered`` of ``asset`` (annotations and a tag vary with ``i``)."""
    eid = str(uuid.uuid4())
    data: dict[str, Any] = {"kind": "model", "annotations": {"f1_score": 0.8 + i % 100 / 1000,
                                                             "i": i},
                            "tags": {"run": str(i)}}
    if inputs:
        data["inputs"] = inputs
    body = orjson.dumps({"specversion": "1.0", "id": eid, "source": "bench",
                         "type": "asset_registered", "subject": asset, "project": PROJECT,
                         "data": data})
    return wire.in_subject("assetd", PROJECT, "main", asset, "asset_registered"), body, eid


async def publish(js: Any, events: Iterable[Event], window: int = 2000) -> int:
    """Publish every event, at most ``window`` unacknowledged; return how many."""
    pending, n = [], 0
    for subject, body, eid in events:
        pending.append(await js.publish_async(subject, body, headers={"Nats-Msg-Id": eid}))
        n += 1
        if len(pending) >= window:
            await asyncio.gather(*pending)
            pending.clear()
    await asyncio.gather(*pending)
    return n


async def count(nc: Any) -> int:
    """Instances of the project on main, by the ``assets`` query."""
    reply = await nc.request(wire.api_subject("assetd", PROJECT, "assets"), b"{}", timeout=30)
    return sum(a["instances"] for a in orjson.loads(reply.data)["result"])


async def wait_count(nc: Any, expect: int, what: str) -> float:
    """Wait until ``expect`` instances are applied; print progress; return seconds taken."""
    t0 = last = time.perf_counter()
    while (n := await count(nc)) < expect:
        await asyncio.sleep(0.5)
        if time.perf_counter() - last > 30:
            last = time.perf_counter()
            print(f"  {what}: {n:,} of {expect:,} applied ({last - t0:.0f} s)", flush=True)
    return time.perf_counter() - t0


def chain_events(levels: int, width: int) -> Iterator[Event]:
    """A lineage graph: ``lin_0`` v1, then ``levels`` assets of ``width`` instances, each
    instance j of ``lin_k`` derived from instance j of ``lin_{k-1}`` (v1 for level 1)."""
    yield registration("lin_0", 0)
    for k in range(1, levels + 1):
        for j in range(1, width + 1):
            up = f"v{j if k > 1 else 1}"
            yield registration(f"lin_{k}", j, inputs=[{"asset": f"lin_{k - 1}",
                                                       "instance": up}])


def fill_events(start: int, stop: int, assets: int) -> Iterator[Event]:
    """Registrations ``start`` … ``stop - 1`` spread over ``model_0`` … ``model_{assets-1}``."""
    for i in range(start, stop):
        yield registration(f"model_{i % assets}", i)


async def fill(nc: Any, js: Any, *, start: int, stop: int, assets: int, base: int,
               window: int) -> tuple[float, float]:
    """Registrations ``start`` … ``stop - 1`` through the daemon; ``base`` instances were
    there before. Returns (seconds, registrations/s) from the first publish to the last
    applied."""
    t0 = time.perf_counter()
    publisher = asyncio.create_task(publish(js, fill_events(start, stop, assets), window))
    await wait_count(nc, base + stop, f"fill to {stop:,}")  # the count is of all instances
    await publisher
    took = time.perf_counter() - t0
    return took, (stop - start) / took


BULK = """
INSERT INTO instance (project, branch, asset, version, kind, state, validity, annotations,
                      tags, reference, producer, event_id, created_at, updated_at)
SELECT 'bench', 'main', 'model_' || (i % :assets), i / :assets + 1, 'model', 'ready', 'valid',
       json_build_object('f1_score', 0.8 + (i % 100) / 1000.0, 'i', i),
       json_build_object('run', i::text), '{}'::json, 'bench', 'bulk-' || i, now(), now()
FROM generate_series(:start, :stop - 1) AS i
"""
RECOUNT = """
UPDATE asset_stats s SET instances = c.n, latest = c.v
FROM (SELECT asset, count(*) AS n, max(version) AS v FROM instance
      WHERE project = 'bench' AND branch = 'main' GROUP BY asset) c
WHERE s.project = 'bench' AND s.branch = 'main' AND s.asset = c.asset
"""


def bulk_fill(db_url: str, *, start: int, stop: int, assets: int) -> float:
    """NOT the apply path: PostgreSQL only, registrations ``start`` … ``stop - 1`` inserted
    by one ``INSERT … SELECT`` (the versions the daemon would have given them; no inbox,
    outbox or outcome rows) and the counters recounted. Returns the seconds taken."""
    from sqlalchemy import create_engine, text

    engine = create_engine(db_url)
    t0 = time.perf_counter()
    try:
        with engine.begin() as conn:
            conn.execute(text(BULK), {"assets": assets, "start": start, "stop": stop})
            conn.execute(text(RECOUNT))
    finally:
        engine.dispose()
    return time.perf_counter() - t0
