"""End-to-end registration benchmark: publish N registrations, wait for N instance_created.

Starts ``assetd run`` as a subprocess (one, on its embedded nats-server; or ``--replicas``
of them on one nats-server and one registry) in a temp dir; this process publishes and
observes, so the clock for every latency is one process's clock. In the same run and on the
same nats-server it measures the raw JetStream consume ceiling (nats-py fetch + ack of as
many identical messages on a scratch stream, no processing) just before and just after
assetd's run, prints assetd's throughput as a fraction of their mean, and reports the
daemons' resident memory afterwards.

    .venv/bin/python bench/bench_registrations.py --n 20000
    .venv/bin/python bench/bench_registrations.py --rate 1000 --seconds 30
    .venv/bin/python bench/bench_registrations.py --db postgres --replicas 2
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import signal
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import nats
import orjson
from _common import (
    children,
    cpu_seconds,
    limit_cpus,
    machine,
    processes,
    pss_mb,
    rss_mb,
    running_daemons,
    scratch_database,
    wait_ready,
)
from nats.js.api import StorageType, StreamConfig

from assetd.schemas import wire

RAW_STREAM, RAW_SUBJECT = "BENCH_RAW", "benchraw.x"


def registration(i: int, assets: int) -> tuple[str, str, bytes]:
    """``(event id, subject, payload)`` of the i-th registration."""
    eid = str(uuid.uuid4())
    asset = f"model_{i % assets}"
    body = orjson.dumps({
        "specversion": "1.0", "id": eid, "source": "bench", "type": "asset_registered",
        "subject": asset, "project": "bench", "data": {
            "kind": "model", "annotations": {"f1_score": 0.8, "i": i},
            "tags": {"run": str(i)}}})
    return eid, wire.in_subject("assetd", "bench", "main", asset, "asset_registered"), body


async def raw_ceiling(url: str, n: int, window: int, batch: int) -> float:
    """Messages/s of nats-py fetch + ack of ``n`` registration-sized messages, published
    beforehand to a scratch file stream on the same server; no processing."""
    nc = await wait_ready(url)  # (the first measurement may come before the daemon's start)
    js = nc.jetstream()
    await js.add_stream(StreamConfig(name=RAW_STREAM, subjects=[RAW_SUBJECT],
                                     storage=StorageType.FILE))
    try:
        _, _, body = registration(0, 1)
        pending = []
        for i in range(n):
            pending.append(await js.publish_async(RAW_SUBJECT, body,
                                                  headers={"Nats-Msg-Id": f"raw-{i}"}))
            if len(pending) >= window:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
        sub = await js.pull_subscribe(RAW_SUBJECT, durable="raw", stream=RAW_STREAM)
        got = 0
        first = time.perf_counter()
        while got < n:
            msgs = await sub.fetch(batch=batch, timeout=5)
            for m in msgs:
                await m.ack()
            got += len(msgs)
        await nc.flush()  # the last acks are on the wire
        return n / (time.perf_counter() - first)
    finally:
        await js.delete_stream(RAW_STREAM)
        await nc.close()


def _cmdline(pid: int) -> str:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    return ""


def percentile(lat: list[float], q: float) -> float:
    """The q-quantile (0..1) of sorted ``lat``, in ms (nearest rank)."""
    return 1000 * lat[min(len(lat) - 1, max(0, int(len(lat) * q + 0.5) - 1))]


def cpu_now(pids: dict[str, int]) -> dict[str, float]:
    return {name: cpu_seconds(pid) for name, pid in pids.items()}


async def run(n: int, assets: int, window: int, url: str, rate: float,
              procs: list[Any]) -> dict[str, Any]:
    nc = await wait_ready(url)
    pids = processes(procs)  # once ready: the embedded nats-server is running
    js = nc.jetstream()
    sent: dict[str, float] = {}
    latencies: list[float] = []
    events: list[tuple[float, float]] = []  # (publish time, latency), for --dump
    done = asyncio.Event()
    last_at = 0.0

    async def on_created(msg: nats.aio.msg.Msg) -> None:
        nonlocal last_at
        now = time.perf_counter()
        cause = orjson.loads(msg.data)["causeid"]
        if cause in sent:
            at = sent.pop(cause)
            latencies.append(now - at)
            events.append((at, now - at))
            last_at = now
            if len(latencies) == n:
                done.set()

    await nc.subscribe(wire.out_subject("assetd", "bench", "main", "*", "instance_created"),
                       cb=on_created)
    await nc.flush()
    cpu_first = cpu_now(pids)
    first = time.perf_counter()
    pending = []
    for i in range(n):
        eid, subject, body = registration(i, assets)
        if rate:  # paced: publish i at first + i/rate
            delay = first + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        sent[eid] = time.perf_counter()
        pending.append(await js.publish_async(subject, body, headers={"Nats-Msg-Id": eid}))
        if len(pending) >= window:
            await asyncio.gather(*pending)
            pending.clear()
    await asyncio.gather(*pending)
    published = time.perf_counter()
    await asyncio.wait_for(done.wait(), timeout=max(120, n / 100))
    cpu_last = cpu_now(pids)
    await nc.close()
    lat = sorted(latencies)
    return {
        "n": n,
        "publish_s": published - first,
        "elapsed_s": last_at - first,
        "events_per_s": n / (last_at - first),
        "p50_ms": percentile(lat, 0.50),
        "p99_ms": percentile(lat, 0.99),
        "p999_ms": percentile(lat, 0.999),
        "max_ms": 1000 * lat[-1],
        "mean_ms": 1000 * statistics.fmean(lat),
        "cpu_s": {name: cpu_last[name] - cpu_first[name] for name in pids},
        "events": [(round(at - first, 4), round(1000 * d, 2)) for at, d in events],
    }


BATCH_STAGES = ("queued", "to_thread", "decode", "lock", "apply", "commit", "ack")
RELAY_STAGES = ("woken", "read", "publish", "mark")


def stage_summary(tmp: Path) -> list[str]:
    """The daemons' ``ASSETD_TRACE_STAGES`` lines, summed up: per stage, mean, p50, p99 and
    the share of the batch's time, for the inbound batches and the relay's."""
    lines: dict[str, list[dict[str, Any]]] = {"batch stages": [], "relay stages": []}
    for log in sorted(tmp.glob("replica-*/assetd.log")):
        for line in log.read_text().splitlines():
            with contextlib.suppress(ValueError):
                rec = orjson.loads(line)
                if isinstance(rec, dict) and rec.get("event") in lines:
                    lines[rec["event"]].append(rec)
    out = []
    for event, names in (("batch stages", BATCH_STAGES), ("relay stages", RELAY_STAGES)):
        recs = lines[event]
        if not recs:
            continue
        sizes = sorted(r["size"] for r in recs)
        out.append(f"{event}: {len(recs)} batches, size p50 {sizes[len(sizes) // 2]} "
                   f"max {sizes[-1]}, mean {statistics.fmean(sizes):.0f}")
        total = sum(r.get(f"{n}_ms") or 0 for r in recs for n in names if n != "queued")
        for name in names:
            vals = sorted(float(r[f"{name}_ms"]) for r in recs if r.get(f"{name}_ms") is not None)
            if not vals:
                continue
            share = "" if name == "queued" else f"  {100 * sum(vals) / total:4.1f}% of busy"
            out.append(f"  {name:<10} mean {statistics.fmean(vals):8.2f} ms  p50 "
                       f"{vals[len(vals) // 2]:8.2f}  p99 {vals[int(len(vals) * 0.99)]:8.2f}"
                       f"{share}")
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=20_000, help="registrations to publish")
    p.add_argument("--assets", type=int, default=10, help="spread over this many assets")
    p.add_argument("--window", type=int, default=2000, help="unacked publishes in flight")
    p.add_argument("--rate", type=float, default=0,
                   help="publish at this many events/s (0: as fast as possible)")
    p.add_argument("--seconds", type=float, default=0,
                   help="with --rate: publish for this long (n = rate x seconds)")
    p.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    p.add_argument("--pg-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres",
                   help="a PostgreSQL server to create the benchmark's scratch database on")
    p.add_argument("--replicas", type=int, default=1, help="daemon processes")
    p.add_argument("--raw-batch", type=int, default=500, help="fetch size of the raw ceiling")
    p.add_argument("--no-raw", action="store_true", help="skip the raw ceiling")
    p.add_argument("--cpus", type=float, default=0,
                   help="limit this benchmark and everything it starts to this many cores "
                        "in all (a cgroup; needs root): a slower machine, reproducibly")
    p.add_argument("--trace", action="store_true",
                   help="ASSETD_TRACE_STAGES=1 in the daemons: print where the time went")
    p.add_argument("--keep", action="store_true", help="keep the temp dir")
    p.add_argument("--dump", type=Path, default=None,
                   help="write each event's publish time (s from the first) and latency (ms)")
    args = p.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # clean up on kill, too
    n = int(args.rate * args.seconds) if args.rate and args.seconds else args.n

    print(machine(), flush=True)
    if args.cpus:
        print(f"limited to:    {limit_cpus(args.cpus)}", flush=True)
    env = {"ASSETD_TRACE_STAGES": "1", "ASSETD_LOG_LEVEL": "INFO"} if args.trace else {}
    with (scratch_database(args.db, args.pg_url) as db_url,
          running_daemons(replicas=args.replicas, db_url=db_url, env=env,
                          keep=args.keep or args.trace) as group):
        # the ceiling just before and just after assetd's run: the machine's speed drifts
        # from one minute to the next (by a third on a shared host), so the fraction is
        # against the mean of the two, and both are printed
        raws = [] if args.no_raw else [asyncio.run(
            raw_ceiling(group.url, n, args.window, args.raw_batch))]
        result = asyncio.run(run(n, args.assets, args.window, group.url, args.rate,
                                 group.procs))
        rss = [rss_mb(proc.pid) for proc in group.procs]
        relays = [[c for c in children(proc.pid) if "assetd.daemon.relay_child" in _cmdline(c)]
                  for proc in group.procs]  # each daemon's relay child, if it runs one
        memory = [(sum(rss_mb(c)[0] for c in kids), pss_mb(proc.pid) + sum(map(pss_mb, kids)))
                  for proc, kids in zip(group.procs, relays, strict=True)]
        if raws:
            raws.append(asyncio.run(raw_ceiling(group.url, n, args.window, args.raw_batch)))
    if args.dump is not None:
        args.dump.write_bytes(orjson.dumps(result["events"]))
    pace = f"paced at {args.rate:,.0f}/s" if args.rate else "published as fast as possible"
    print(f"registrations: {result['n']} over {args.assets} assets, {pace} "
          f"({args.db}, {args.replicas} daemon{'s' if args.replicas > 1 else ''}, "
          f"{'embedded NATS' if args.replicas == 1 else 'one nats-server'})")
    print(f"publish time:  {result['publish_s']:.2f} s")
    print(f"end to end:    {result['elapsed_s']:.2f} s  ->  {result['events_per_s']:,.0f} "
          "registrations/s (first publish to last instance_created)")
    if raws:
        raw = statistics.fmean(raws)
        print(f"raw ceiling:   {raw:,.0f} msg/s (nats-py fetch {args.raw_batch} + ack, same "
              f"server, {n} messages; {raws[0]:,.0f} before and {raws[1]:,.0f} after)  ->  "
              f"assetd at {result['events_per_s'] / raw:.2f} of it"
              + (" (paced: bound by the rate)" if args.rate else ""))
    print(f"latency:       p50 {result['p50_ms']:.1f} ms  p99 {result['p99_ms']:.1f} ms  "
          f"p99.9 {result['p999_ms']:.1f} ms  max {result['max_ms']:.1f} ms  "
          f"mean {result['mean_ms']:.1f} ms (publish to instance_created)")
    busy = ", ".join(f"{name} {1e6 * s / n:,.0f} µs ({100 * s / result['elapsed_s']:.0f} %)"
                     for name, s in result["cpu_s"].items())
    print(f"CPU per registration (share of a core): {busy}")
    for i, ((now, peak), (child, pss)) in enumerate(zip(rss, memory, strict=True)):
        print(f"daemon {i} RSS: {now:,.0f} MiB after the run (peak {peak:,.0f} MiB)"
              + (f"; its relay child {child:,.0f} MiB; together {pss:,.0f} MiB PSS (pages "
                 "they share counted once)" if child else ""))
    if args.trace:
        print(*stage_summary(group.tmp), sep="\n")
        if not args.keep:
            shutil.rmtree(group.tmp, ignore_errors=True)
    print(machine())


if __name__ == "__main__":
    main()
