"""``assetd demo``: a daemon on embedded defaults in a temp dir, and a scripted pipeline."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console
from rich.table import Table

from assetd.client import AssetClient
from assetd.config import Settings
from assetd.daemon.app import Daemon
from assetd.daemon.embedded import free_port

console = Console()
PROJECT = "fraud"


async def run_demo(*, keep: bool = False) -> None:
    """Run the demo end to end; leaves nothing running (and nothing on disk unless ``keep``)."""
    tmp = Path(tempfile.mkdtemp(prefix="assetd-demo-"))
    settings = Settings(data_dir=tmp / ".assetd", embedded_nats_port=free_port(),
                        nats_url=None, db_url=None, http_port=0, rules=None)
    daemon = Daemon(settings)
    console.print(f"[bold]assetd demo[/] — daemon with embedded NATS on "
                  f"{settings.effective_nats_url}, SQLite in {tmp}")
    await daemon.start()
    try:
        async with AssetClient(PROJECT, settings=settings, source="demo/pipeline") as client:
            seen: list[dict[str, Any]] = []
            async def show(msg: Any) -> None:
                _show(msg, seen)

            sub = await client.nc.subscribe(f"assetd.out.{PROJECT}.>", cb=show)
            await _pipeline(client)
            await _until(lambda: len(seen) >= 4)  # one instance_created per registration
            await sub.unsubscribe()
            await _final_view(client)
    finally:
        await daemon.stop()
        if keep:
            console.print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    console.print("[green]demo done[/] — nothing left running")


async def _pipeline(c: AssetClient) -> None:
    step = console.print
    step("\n[bold]1. define assets[/] (what definitions sync does with asset_config.toml)")
    await c.define("transactions", "data", name="Card transactions",
                   description="Daily card transactions", properties={"owner": "data-eng"})
    await c.define("fraud_model", "model", name="Fraud classifier",
                   description="Gradient-boosted fraud model", properties={"owner": "ml"})
    step("[bold]2. a data pipeline registers a new data instance[/]")
    data = await c.register_data("transactions", annotations={"rows": 1_204_332},
                                 tags={"source": "warehouse"}, uri="s3://lake/tx/2026-11-22",
                                 wait=True)
    step(f"   → transactions {data['instance']}")
    step("[bold]3. three training runs register models with their input[/]")
    for run, f1 in enumerate((0.81, 0.84, 0.83), start=1):
        m = await c.register_model("fraud_model", annotations={"f1_score": f1, "run": run},
                                   inputs=["transactions@latest"],
                                   uri=f"s3://models/fraud/{run}", wait=True)
        step(f"   → fraud_model {m['instance']} (f1_score={f1}) from transactions "
             f"{m['inputs'][0]['instance']}")
    step("[bold]4. a batch scoring job consumes the model[/]")
    used = await c.consume("fraud_model", "v2", consumer={"name": "scoring/nightly"})
    step(f"   → consumed fraud_model {used['instance']}")


def _show(msg: Any, seen: list[dict[str, Any]]) -> None:
    ev = orjson.loads(msg.data)
    seen.append(ev)
    console.print(f"   [dim]event[/] {msg.subject}  data.instance={ev['data'].get('instance')}")


async def _until(cond: Any, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not cond():
            await asyncio.sleep(0.05)


async def _final_view(c: AssetClient) -> None:
    t = Table(title="\nregistry: assets", title_justify="left")
    for col in ("asset", "kind", "latest", "instances", "description"):
        t.add_column(col)
    for a in await c.list_assets():
        t.add_row(a["asset"], a["kind"], a["latest"], str(a["instances"]), a["description"])
    console.print(t)
    page = await c.list_instances("fraud_model")
    t = Table(title="fraud_model instances", title_justify="left")
    for col in ("instance", "f1_score", "inputs", "producer"):
        t.add_column(col)
    for i in page["items"]:
        ins = ", ".join(f"{x['asset']} {x['instance']}" for x in i["inputs"])
        t.add_row(i["instance"], str(i["annotations"]["f1_score"]), ins, i["producer"])
    console.print(t)
    graph: dict[str, Any] = {}
    for _ in range(100):  # the consumption event is asynchronous: wait until it is applied
        graph = await c.lineage("transactions", "v1", direction="downstream")
        if any(e["relation"] == "consumed_by" for e in graph["edges"]):
            break
        await asyncio.sleep(0.05)
    console.print("[bold]lineage downstream of transactions v1[/]")
    for e in graph["edges"]:
        console.print(f"   {e['from']} --{e['relation']}--> {e['to']}")
