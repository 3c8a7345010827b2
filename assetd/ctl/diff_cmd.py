"""``assetctl diff ASSET vA vB``: two instances side by side (the ``compare`` query)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from assetd.ctl import render
from assetd.ctl.common import app, call, is_json


@app.command()
def diff(
    ctx: typer.Context,
    asset: str,
    a: Annotated[str, typer.Argument(help="the first instance: vN, latest-N, @alias")],
    b: Annotated[str, typer.Argument(help="the second instance")],
    changed: Annotated[bool, typer.Option("--changed", help="only what differs")] = False,
) -> None:
    """What changed between two instances: annotations (with deltas), tags and inputs."""
    result = call(ctx, lambda c: c.compare(asset, a, b))
    if is_json(ctx):
        render.emit_json(result)
        return
    va, vb = result["a"]["instance"], result["b"]["instance"]
    render.table(f"{asset}: {va} vs {vb}", ["", va, vb],
                 [[f, result["a"][f], result["b"][f]] for f in
                  ("state", "validity", "aliases", "created_at", "producer")])
    for what in ("annotations", "tags"):
        rows = [r for r in result[what] if not changed or r["change"] != "same"]
        render.table(what, ["key", va, vb, "change", "delta"], [_row(r) for r in rows])
    inputs = result["inputs"]
    render.table("inputs", ["input", "in"],
                 [[_ref(r), side] for side, key in ((va, "only_a"), (vb, "only_b"),
                                                    ("both", "common"))
                  for r in inputs[key]])


def _row(r: dict[str, Any]) -> list[Any]:
    absent = {"added": "a", "removed": "b"}.get(r["change"])
    return [r["key"], "(absent)" if absent == "a" else _shown(r["a"]),
            "(absent)" if absent == "b" else _shown(r["b"]), r["change"], r["delta"]]


def _shown(value: Any) -> str:
    return "null" if value is None else render.cell(value)


def _ref(r: dict[str, str]) -> str:
    return f"{r['asset']}@{r['branch']}:{r['instance']}"
