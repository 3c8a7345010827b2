"""Query benchmark: resolve, assets and lineage against a registry filled through the real
apply path, at 10k and then 1M instances (10 assets), with a raw NATS reference.

Starts ``assetd run`` as a subprocess on embedded NATS (SQLite in a temp dir, or a fresh
PostgreSQL database with ``--db postgres``), fills the registry by publishing registrations
(bench/_fill.py), and measures from this process:

- reference: raw NATS request-reply round trips against a trivial responder (a separate
  Python process, like the daemon), so figures compare across machines;
- ``resolve latest`` throughput, p50 and p99 at ``--callers`` concurrent callers (10
  requests asked over and over: answered from the daemon's answer cache);
- ``resolve vN`` of instances all over the registry, no request asked twice: the same
  without the cache;
- ``assets`` latency (one caller);
- ``resolve`` p50/p99 at the same concurrency while another client (a process of its own)
  runs deep ``lineage`` queries back to back.

    .venv/bin/python bench/bench_queries.py --db sqlite --instances 10000,1000000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import orjson
from _common import machine, running_daemon, scratch_database, wait_ready
from _fill import PROJECT, bulk_fill, chain_events, fill, publish, wait_count

from assetd.schemas import wire

ECHO = """
import asyncio, sys, nats
async def main():
    while True:
        try:
            nc = await nats.connect(sys.argv[1], connect_timeout=1)
            break
        except Exception:
            await asyncio.sleep(0.2)
    async def cb(msg): await msg.respond(b'{"ok":true,"result":{}}')
    await nc.subscribe("bench.echo", cb=cb)
    await asyncio.Event().wait()
asyncio.run(main())
"""
LEVELS, WIDTH = 20, 200  # the lineage graph: 4,001 instances, a walk 20 levels deep


def pct(lat: list[float], q: float) -> float:
    """The q-quantile of ``lat`` (seconds) in milliseconds."""
    s = sorted(lat)
    return 1000 * s[min(len(s) - 1, int(len(s) * q))]


async def callers(nc: Any, subject: str, bodies: list[bytes], n: int,
                  seconds: float) -> tuple[float, list[float]]:
    """``n`` callers, each sending requests one after another for ``seconds``: (req/s, each
    request's latency)."""
    lat: list[float] = []
    end = time.perf_counter() + seconds

    async def caller(k: int) -> None:
        i = k  # caller k asks bodies k, k + n, k + 2n, ...: no two callers ask the same
        while time.perf_counter() < end:
            t = time.perf_counter()
            reply = await nc.request(subject, bodies[i % len(bodies)], timeout=30)
            lat.append(time.perf_counter() - t)
            assert reply.data.startswith(b'{"ok":true'), reply.data[:200]
            i += n

    t0 = time.perf_counter()
    await asyncio.gather(*(caller(k) for k in range(n)))
    return len(lat) / (time.perf_counter() - t0), lat


def api(method: str) -> str:
    return wire.api_subject("assetd", PROJECT, method)


RESOLVE = [orjson.dumps({"asset": f"model_{a}", "instance": "latest"}) for a in range(10)]
COLD = 20_000  # distinct requests, twice the daemon's default answer cache


def cold_resolves(size: int) -> list[bytes]:
    """``resolve vN`` of instances spread over the whole registry, each asked once in a
    figure (more of them than the answer cache keeps): the path without the cache."""
    per_asset = max(1, size // 10)
    rnd = random.Random(size)
    return [orjson.dumps({"asset": f"model_{rnd.randrange(10)}",
                          "instance": f"v{rnd.randint(1, per_asset)}"}) for _ in range(COLD)]


LINEAGE = orjson.dumps({"asset": "lin_0", "instance": "v1", "direction": "downstream",
                        "depth": LEVELS})


WALKER = """
import asyncio, sys, time, json, nats
async def main():
    url, subject, body, seconds = sys.argv[1], sys.argv[2], sys.argv[3].encode(), float(sys.argv[4])
    nc = await nats.connect(url, inbox_prefix="_INBOX.bench")
    took, nodes, end = [], 0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        t = time.perf_counter()
        reply = await nc.request(subject, body, timeout=60)
        took.append(time.perf_counter() - t)
        assert reply.data.startswith(b'{"ok":true'), reply.data[:300]
        nodes = max(nodes, len(json.loads(reply.data)["result"]["nodes"]))
    await nc.close()
    print(json.dumps({"ms": 1000 * sum(took) / len(took), "n": len(took), "nodes": nodes}))
asyncio.run(main())
"""


async def during_lineage(nc: Any, url: str, n: int, seconds: float) -> dict[str, float]:
    """Resolve at ``n`` callers while another client (a process of its own, like a dashboard
    beside the model servers) runs deep lineage queries back to back."""
    walker = await asyncio.create_subprocess_exec(
        sys.executable, "-c", WALKER, url, api("lineage"), LINEAGE.decode(), str(seconds + 0.4),
        stdout=subprocess.PIPE)
    await asyncio.sleep(0.2)
    rps, lat = await callers(nc, api("resolve"), RESOLVE, n, seconds)
    out, _ = await walker.communicate()
    assert walker.returncode == 0, "the lineage walker failed"
    walk = orjson.loads(out)
    return {"rps": rps, "p50": pct(lat, 0.5), "p99": pct(lat, 0.99),
            "lineage_ms": walk["ms"], "lineage_n": walk["n"], "lineage_nodes": walk["nodes"]}


async def measure(nc: Any, url: str, n: int, seconds: float, size: int) -> dict[str, Any]:
    """Every figure at the registry's current size."""
    out: dict[str, Any] = {}
    rps, lat = await callers(nc, "bench.echo", [b"{}"], n, seconds)
    out["echo"] = {"rps": rps, "p50": pct(lat, 0.5), "p99": pct(lat, 0.99)}
    rps, lat = await callers(nc, api("resolve"), RESOLVE, n, seconds)
    out["resolve"] = {"rps": rps, "p50": pct(lat, 0.5), "p99": pct(lat, 0.99)}
    rps, lat = await callers(nc, api("resolve"), cold_resolves(size), n, seconds)
    out["cold"] = {"rps": rps, "p50": pct(lat, 0.5), "p99": pct(lat, 0.99), "n": len(lat)}
    rps, lat = await callers(nc, api("resolve"), RESOLVE, 1, seconds / 2)
    out["resolve1"] = {"rps": rps, "p50": pct(lat, 0.5), "p99": pct(lat, 0.99)}
    _, lat = await callers(nc, api("assets"), [b"{}"], 1, seconds / 2)
    out["assets"] = {"n": len(lat), "p50": pct(lat, 0.5), "p99": pct(lat, 0.99)}
    out["lineage"] = await during_lineage(nc, url, n, seconds)
    return out


def report(size: int, fill_s: float, fill_rate: float, m: dict[str, Any],
           how: str = "registrations/s through the daemon") -> None:
    e, r, r1, a, lg = m["echo"], m["resolve"], m["resolve1"], m["assets"], m["lineage"]
    c = m["cold"]
    print(f"\n== {size:,} instances (filled in {fill_s:.0f} s, {fill_rate:,.0f} {how})",
          flush=True)
    print(f"reference, raw NATS echo: {e['rps']:,.0f} req/s  p50 {e['p50']:.2f} ms  "
          f"p99 {e['p99']:.2f} ms")
    print(f"resolve latest:           {r['rps']:,.0f} req/s  p50 {r['p50']:.2f} ms  "
          f"p99 {r['p99']:.2f} ms")
    print(f"resolve vN, all distinct: {c['rps']:,.0f} req/s  p50 {c['p50']:.2f} ms  "
          f"p99 {c['p99']:.2f} ms  ({c['n']:,} requests, {COLD:,} distinct: none from "
          f"the answer cache)")
    print(f"resolve, 1 caller:        {r1['rps']:,.0f} req/s  p50 {r1['p50']:.2f} ms  "
          f"p99 {r1['p99']:.2f} ms")
    print(f"assets, 1 caller:         p50 {a['p50']:.2f} ms  p99 {a['p99']:.2f} ms "
          f"({a['n']} calls)")
    print(f"resolve during lineage:   {lg['rps']:,.0f} req/s  p50 {lg['p50']:.2f} ms  "
          f"p99 {lg['p99']:.2f} ms  (lineage of {lg['lineage_nodes']:,} nodes, depth "
          f"{LEVELS}: {lg['lineage_ms']:.0f} ms each, {lg['lineage_n']} runs)", flush=True)


async def run(url: str, sizes: list[int], callers_n: int, seconds: float,
              window: int, bulk: tuple[str, int] | None) -> list[dict[str, Any]]:
    nc = await wait_ready(url, inbox_prefix=f"_INBOX.{PROJECT}")
    js = nc.jetstream()
    try:
        base = await publish(js, chain_events(LEVELS, WIDTH), window)
        await wait_count(nc, base, "lineage graph")
        done, results = 0, []
        for size in sizes:
            took, rate = await fill(nc, js, start=done, stop=size, assets=10, base=base,
                                    window=window)
            done = size
            m = await measure(nc, url, callers_n, seconds, size)
            report(size, took, rate, m)
            results.append({"instances": size, "fill_s": took, **m})
        if bulk:  # NOT through the apply path: see --bulk-to
            took = await asyncio.to_thread(bulk_fill, bulk[0], start=done, stop=bulk[1],
                                           assets=10)
            m = await measure(nc, url, callers_n, seconds, bulk[1])
            report(bulk[1], took, (bulk[1] - done) / took, m,
                   how=f"rows/s by bulk insert from {done:,}, NOT through the apply path")
            results.append({"instances": bulk[1], "fill_s": took, **m})
        return results
    finally:
        await nc.close()


@contextlib.contextmanager
def echo_responder(url: str) -> Iterator[None]:
    """The reference: a trivial responder on ``bench.echo``, a Python process of its own."""
    echo = subprocess.Popen([sys.executable, "-c", ECHO, url], stderr=subprocess.DEVNULL)
    try:
        yield
    finally:
        echo.terminate()
        echo.wait()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    p.add_argument("--pg-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres",
                   help="a PostgreSQL server to create the benchmark's database on")
    p.add_argument("--instances", default="10000,1000000",
                   help="registry sizes to measure at, ascending, comma-separated")
    p.add_argument("--callers", type=int, default=50, help="concurrent callers")
    p.add_argument("--seconds", type=float, default=10, help="per measurement")
    p.add_argument("--window", type=int, default=2000, help="unacked publishes in flight")
    p.add_argument("--bulk-to", type=int, default=0,
                   help="PostgreSQL: after the last size, insert instances directly (NOT "
                        "through the apply path) up to this many, and measure again")
    args = p.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # clean up on kill, too
    sizes = [int(s) for s in args.instances.split(",")]
    print(machine(), flush=True)
    print(f"database: {args.db}; {args.callers} callers, {args.seconds:g} s per figure",
          flush=True)
    with (scratch_database(args.db, args.pg_url) as db_url, running_daemon(db_url=db_url) as url,
          echo_responder(url)):
        bulk = (db_url, args.bulk_to) if args.bulk_to and db_url else None
        results = asyncio.run(run(url, sizes, args.callers, args.seconds, args.window, bulk))
    if len(results) > 1:
        first, last = results[0], results[-1]
        print(f"\nresolve p99 at {last['instances']:,} / at {first['instances']:,}: "
              f"{last['resolve']['p99'] / first['resolve']['p99']:.2f}x")
    print(machine())


if __name__ == "__main__":
    main()
