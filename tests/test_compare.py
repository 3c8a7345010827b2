"""The ``compare`` query and ``assetctl diff``: two instances side by side, with what was
added, removed or changed in annotations and tags, and their lineage differences."""

from __future__ import annotations

import orjson
import pytest

from assetd.client import AssetClient
from assetd.daemon.app import Daemon
from assetd.errors import QueryError
from assetd.registry.compare import diff_inputs, diff_maps
from tests.test_cli import ctl


def test_diff_maps_marks_each_key() -> None:
    """Added, removed, changed and same keys, by key; a delta only between two numbers."""
    rows = diff_maps({"f1": 0.8, "n": 3, "algo": "gbm", "gone": 1, "flag": True, "z": 1},
                     {"f1": 0.9, "n": 5, "algo": "xgb", "new": 2, "flag": 1, "z": 1})
    got = {r["key"]: (r["change"], r["delta"]) for r in rows}
    assert [r["key"] for r in rows] == sorted(got)
    assert got == {"f1": ("changed", 0.1), "n": ("changed", 2), "algo": ("changed", None),
                   "gone": ("removed", None), "new": ("added", None),
                   "flag": ("changed", None), "z": ("same", 0)}


def test_diff_inputs_splits_only_a_only_b_common() -> None:
    """Inputs are the same when asset, branch and instance all are."""
    raw1 = {"asset": "raw", "branch": "main", "instance": "v1"}
    raw2 = {**raw1, "instance": "v2"}
    feat = {"asset": "feat", "branch": "dev", "instance": "v1"}
    assert diff_inputs([raw1, feat], [feat, raw2]) == {
        "only_a": [raw1], "only_b": [raw2], "common": [feat]}


async def _fill(client: AssetClient) -> None:
    await client.register_data("raw", wait=True)
    await client.register_data("raw", wait=True)
    await client.register_data("labels", wait=True)
    await client.register_model("m", annotations={"f1": 0.8, "algo": "gbm", "rows": 10},
                                tags={"seed": "1"}, inputs=["raw@v1", "labels"], wait=True)
    await client.register_model("m", annotations={"f1": 0.85, "algo": "gbm", "auc": 0.9},
                                tags={"seed": "2"}, inputs=["raw@v2", "labels"], wait=True)


async def test_compare_two_instances(client: AssetClient) -> None:
    """The client's ``compare`` returns both sides, annotation and tag changes with deltas,
    and the inputs only in a, only in b and common; selectors of any form work."""
    await _fill(client)
    got = await client.compare("m", "v1", "latest")
    assert (got["a"]["instance"], got["b"]["instance"]) == ("v1", "v2")
    ann = {r["key"]: (r["a"], r["b"], r["change"], r["delta"]) for r in got["annotations"]}
    assert ann == {"f1": (0.8, 0.85, "changed", 0.05), "algo": ("gbm", "gbm", "same", None),
                   "rows": (10, None, "removed", None), "auc": (None, 0.9, "added", None)}
    assert got["tags"] == [{"key": "seed", "a": "1", "b": "2", "change": "changed",
                            "delta": None}]
    labels = {"asset": "labels", "branch": "main", "instance": "v1"}
    assert got["inputs"] == {
        "only_a": [{"asset": "raw", "branch": "main", "instance": "v1"}],
        "only_b": [{"asset": "raw", "branch": "main", "instance": "v2"}],
        "common": [labels]}
    with pytest.raises(QueryError) as err:
        await client.compare("m", "v1", "v7")
    assert err.value.code == "not_found"


async def test_compare_sees_invalidated_unless_told_not_to(client: AssetClient) -> None:
    """An invalidated instance is compared (its validity shown); ``allow_invalid: false``
    refuses it like ``resolve``."""
    await _fill(client)
    await client.update_instance("m", "v1", validity="invalidated", reason="leak")
    got = await client.compare("m", "v1", "v2")
    assert got["a"]["validity"] == "invalidated"
    with pytest.raises(QueryError) as err:
        await client.request("compare", asset="m", a="v1", b="v2", allow_invalid=False)
    assert err.value.code == "invalid"


async def test_assetctl_diff(client: AssetClient, daemon: Daemon) -> None:
    """``assetctl diff ASSET vA vB`` prints the changes as TSV when piped, user data as text;
    ``--json`` prints the query's result; ``--changed`` leaves out what is the same."""
    await _fill(client)
    await client.register_model("m", annotations={"note": "[bold]x[/bold]\tq"}, wait=True)
    code, out, err = await ctl(daemon, "diff", "m", "v1", "v2")
    assert code == 0, err
    lines = out.splitlines()
    assert "f1\t0.8\t0.85\tchanged\t0.05" in lines
    assert "rows\t10\t(absent)\tremoved\t-" in lines
    assert "raw@main:v1\tv1" in lines and "labels@main:v1\tboth" in lines
    code, out, _ = await ctl(daemon, "diff", "m", "v2", "v3", "--changed")
    assert "note\t(absent)\t[bold]x[/bold]\\tq\tadded\t-" in out.splitlines()
    code, out, _ = await ctl(daemon, "diff", "m", "v1", "v2", "--changed")
    assert not any(line.startswith("algo\t") for line in out.splitlines())
    assert "f1\t0.8\t0.85\tchanged\t0.05" in out.splitlines()
    code, out, _ = await ctl(daemon, "--json", "diff", "m", "v1", "v2")
    assert orjson.loads(out) == await client.compare("m", "v1", "v2")
    code, out, err = await ctl(daemon, "diff", "m", "v1", "v9")
    assert code == 1 and len(err.strip().splitlines()) == 1
