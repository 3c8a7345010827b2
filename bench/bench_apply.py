"""The write path alone: decode + apply N registrations into SQLite, no NATS.

    .venv/bin/python bench/bench_apply.py --n 10000
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
import uuid
from pathlib import Path

import orjson

from assetd.handlers.batch import Received, apply_batch
from assetd.handlers.decode import decode
from assetd.registry.engine import make_engine
from assetd.registry.migrate import upgrade
from assetd.schemas import wire


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=10_000)
    p.add_argument("--batch", type=int, default=500)
    p.add_argument("--db", default=None, help="database URL (default: SQLite in a temp dir)")
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="assetd-bench-apply-"))
    url = args.db or f"sqlite:///{tmp / 'registry.db'}"
    upgrade(url)
    engine = make_engine(url)
    msgs = []
    for i in range(args.n):
        asset = f"model_{i % 10}"
        msgs.append((f"assetd.in.bench.main.{asset}.asset_registered", orjson.dumps({
            "specversion": "1.0", "id": str(uuid.uuid4()), "source": "bench",
            "type": "asset_registered", "subject": asset, "project": "bench",
            "data": {"kind": "model", "annotations": {"f1_score": 0.8, "i": i},
                     "tags": {"run": str(i)}}})))
    t0 = time.perf_counter()
    recs = []
    for subject, payload in msgs:
        rec = Received(tokens=wire.parse_in(subject, "assetd"), seq=1, delivered=1)
        rec.item = decode(subject, payload, prefix="assetd", max_bytes=262144)
        recs.append(rec)
    t1 = time.perf_counter()
    for i in range(0, len(recs), args.batch):
        apply_batch(engine, recs[i:i + args.batch], prefix="assetd", max_deliver=5)
    t2 = time.perf_counter()
    engine.dispose()
    shutil.rmtree(tmp, ignore_errors=True)
    assert all(r.outcome == "applied" for r in recs)
    print(f"decode: {args.n / (t1 - t0):,.0f}/s   apply: {args.n / (t2 - t1):,.0f}/s "
          f"(batches of {args.batch}, {url.split(':')[0]})")


if __name__ == "__main__":
    main()
