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
from assetd.schemas import wire

console = Console()
PROJECT = "fraud"
DEMO_RULES = """\
version: 1
rules:
  - asset: fraud_model
    gates:
      - {metric: f1_score, min: 0.75}
    promote:
      alias: champion
      metric: f1_score
      direction: maximize
      min_improvement: 0.02
  - asset: transactions
    drift:
      metric: psi
      max: 0.2
"""
# (f1_score, what the rules will say) for each training run
RUNS = [(0.81, "first model: no champion yet → promoted"),
        (0.84, "+0.03 over the champion → promoted"),
        (0.845, "+0.005 < min_improvement 0.02 → rejected"),
        (0.70, "f1_score < 0.75 → gate failed, rejected")]


async def run_demo(*, keep: bool = False) -> None:
    """Run the demo end to end; leaves nothing running (and nothing on disk unless ``keep``)."""
    tmp = Path(tempfile.mkdtemp(prefix="assetd-demo-"))
    (tmp / "rules.yaml").write_text(DEMO_RULES)
    settings = Settings(data_dir=tmp / ".assetd", embedded_nats_port=free_port(),
                        nats_url=None, db_url=None, http_port=0, rules=tmp / "rules.yaml")
    daemon = Daemon(settings)
    console.print(f"[bold]assetd demo[/] — daemon with embedded NATS on "
                  f"{settings.effective_nats_url}, SQLite and rules.yaml in {tmp}")
    await daemon.start()
    try:
        async with AssetClient(PROJECT, settings=settings, source="demo/pipeline") as client:
            seen: list[dict[str, Any]] = []

            async def show(msg: Any) -> None:
                _show(msg, seen)

            sub = await client.nc.subscribe(
                wire.project_filter(client.prefix, "out", PROJECT), cb=show)
            await pipeline(client)
            await _until(lambda: any(e["type"] == "retrain_required" for e in seen))
            await sub.unsubscribe()
            await _final_view(client)
    finally:
        await daemon.stop()
        if keep:
            console.print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    console.print("[green]demo done[/] — nothing left running")


async def pipeline(c: AssetClient) -> None:
    """The scripted pipeline (also used by tests of ``assetctl rules simulate``)."""
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
    step("[bold]3. four training runs register models; the rules decide each one[/]")
    for run, (f1, expect) in enumerate(RUNS, start=1):
        m = await c.register_model("fraud_model", annotations={"f1_score": f1, "run": run},
                                   inputs=["transactions@latest"],
                                   uri=f"s3://models/fraud/{run}", wait=True)
        step(f"   → fraud_model {m['instance']} f1_score={f1}: {expect}")
    step("[bold]4. the model server loads the champion[/]")
    used = await c.consume("fraud_model", "@champion", consumer={"name": "model-server"})
    step(f"   → serving fraud_model {used['instance']}")
    step("[bold]5. monitoring reports drift on the input data[/]")
    await c.report_drift("transactions", "psi", 0.31)
    step("   → psi 0.31 > 0.2: retrain_required goes to fraud_model's subscribers")


def _show(msg: Any, seen: list[dict[str, Any]]) -> None:
    ev = orjson.loads(msg.data)
    seen.append(ev)
    console.print(f"   [dim]event[/] {msg.subject}  {_summary(ev['type'], ev['data'])}")


def _summary(type_: str, d: dict[str, Any]) -> str:
    if type_ == "quality_gate_failed":
        return f"{d['instance']} {d['results'][0]['reason']}"
    if type_ == "asset_promoted":
        return f"{d['instance']} → {d['alias']} (was {d['previous']})"
    if type_ == "promotion_rejected":
        return f"{d['instance']} {d['reason']}"
    if type_ == "retrain_required":
        return str(d["reason"])
    return str(d.get("instance", ""))



async def _until(cond: Any, timeout: float = 15.0) -> None:
    async with asyncio.timeout(timeout):
        while not cond():
            await asyncio.sleep(0.05)


def _num(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


async def _final_view(c: AssetClient) -> None:
    t = Table(title="\nregistry: assets", title_justify="left")
    for col in ("asset", "kind", "latest", "aliases", "instances"):
        t.add_column(col)
    for a in await c.list_assets():
        aliases = ", ".join(f"{k}={v}" for k, v in a["aliases"].items())
        t.add_row(a["asset"], a["kind"], a["latest"], aliases, str(a["instances"]))
    console.print(t)
    t = Table(title="fraud_model decision log (assetctl history fraud_model)",
              title_justify="left")
    for col in ("instance", "outcome", "reason", "details"):
        t.add_column(col)
    for r in reversed(await c.request("decisions", asset="fraud_model", limit=50)):
        inp = r["inputs"]
        details = ", ".join(f"{k}={_num(inp[k])}" for k in ("champion", "candidate_value",
                                                            "champion_value", "improvement")
                            if k in inp)
        t.add_row(r["instance"], r["outcome"], inp.get("reason") or "", details)
    console.print(t)
    graph = await c.lineage("transactions", "v1", direction="downstream")
    console.print("[bold]lineage downstream of transactions v1[/]")
    for e in graph["edges"]:
        console.print(f"   {e['from']} --{e['relation']}--> {e['to']}")
