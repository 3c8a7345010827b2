"""The ``compare`` query: two instances of one asset side by side — their annotations and
tags with what was added, removed or changed (numeric changes with their delta), and their
lineage differences (inputs only in one, or in both)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection

from assetd.registry import repo
from assetd.registry.reads import instance_view

SIDE_FIELDS = ("instance", "version", "state", "validity", "created_at", "producer",
               "aliases")


def compare(conn: Connection, *, project: str, branch: str, asset: str, a: str, b: str,
            allow_invalid: bool) -> dict[str, Any]:
    """``a`` and ``b`` (selectors) of ``asset`` on ``branch``; two primary-key reads."""
    rows = [repo.resolve(conn, project=project, branch=branch, asset=asset, selector=s,
                         allow_invalid=allow_invalid) for s in (a, b)]
    va, vb = instance_view(conn, rows)
    return {
        "asset": asset, "branch": branch,
        "a": {f: va[f] for f in SIDE_FIELDS}, "b": {f: vb[f] for f in SIDE_FIELDS},
        "annotations": diff_maps(va["annotations"], vb["annotations"]),
        "tags": diff_maps(va["tags"], vb["tags"]),
        "inputs": diff_inputs(va["inputs"], vb["inputs"]),
    }


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def diff_maps(a: dict[str, Any], b: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per key of either map, by key: ``a``, ``b``, ``change`` (``added`` in b,
    ``removed`` from a, ``changed`` or ``same``) and ``delta`` = b - a when both are
    numbers (booleans are not), else null."""
    out = []
    for key in sorted(a.keys() | b.keys()):
        va, vb = a.get(key), b.get(key)
        if key not in a:
            change = "added"
        elif key not in b:
            change = "removed"
        else:
            same = va == vb and type(va) is type(vb)  # 1 and True differ, 1 and 1.0 too
            change = "same" if same else "changed"
        delta = _delta(va, vb) if change != "added" and _number(va) and _number(vb) else None
        out.append({"key": key, "a": va, "b": vb, "change": change, "delta": delta})
    return out


def _delta(a: Any, b: Any) -> float:
    """b - a; a float difference rounded to 12 places (0.9 - 0.8 is 0.1, not 0.0999…)."""
    d = b - a
    return d if isinstance(d, int) else round(d, 12)


def _ref_key(ref: dict[str, str]) -> tuple[str, str, str]:
    return ref["asset"], ref["branch"], ref["instance"]


def diff_inputs(a: list[dict[str, str]], b: list[dict[str, str]]) -> dict[str, Any]:
    """Inputs only in ``a``, only in ``b``, and in both (each list in input order)."""
    ka, kb = {_ref_key(r) for r in a}, {_ref_key(r) for r in b}
    return {"only_a": [r for r in a if _ref_key(r) not in kb],
            "only_b": [r for r in b if _ref_key(r) not in ka],
            "common": [r for r in a if _ref_key(r) in kb]}
