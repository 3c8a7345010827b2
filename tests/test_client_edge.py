"""The data model at the edge: what JSON cannot carry is refused by name, scalar tag values
are stored as their text, and a non-scalar annotation gets one plain error."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from assetd.client import AssetClient
from tests.helpers import envelope, publish, wait_for

OFFLINE = "nats://127.0.0.1:1"  # the client refuses before it connects


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """SQLite is enough here."""
    return f"sqlite:///{tmp_path / 'registry.db'}"


@pytest.mark.parametrize(("call", "where"), [
    (lambda c: c.register_model("m", annotations={"f1_score": math.nan}),
     "annotations.f1_score: nan"),
    (lambda c: c.register_data("d", annotations={"rows": 3, "skew": -math.inf}),
     "annotations.skew: -inf"),
    (lambda c: c.report_quality("m", "holdout", True, metrics={"auc": math.inf}),
     "metrics.auc: inf"),
    (lambda c: c.report_drift("d", "psi", math.nan), "score: nan"),
])
async def test_nan_and_infinity_are_refused_by_name(call: Any, where: str) -> None:
    """NaN and ±inf never leave the client (orjson would send null): the error names the
    field and says what to send instead."""
    client = AssetClient("fraud", nats_url=OFFLINE)
    with pytest.raises(ValueError, match="no NaN or infinity") as err:
        await call(client)
    assert where in str(err.value)


async def test_non_scalar_annotation_is_refused_in_one_sentence() -> None:
    """A list annotation is refused by the client with the rule, not with one error per
    member of a union."""
    client = AssetClient("fraud", nats_url=OFFLINE)
    with pytest.raises(ValueError, match=r"annotations\.lst is a list; annotations must be "
                                         "string, number, boolean or null"):
        await client.register_data("d", annotations={"lst": [1, 2]})
    with pytest.raises(ValueError, match=r"tags\.seeds is a list"):
        await client.register_data("d", tags={"seeds": [1, 2]})


async def test_daemon_rejects_non_scalar_annotation_with_the_rule(client: AssetClient,
                                                                  js: Any) -> None:
    """A raw NATS publisher's list annotation is dead-lettered; the rejection's errors say
    "annotations must be string, number, boolean or null" for that key."""
    ev = envelope("asset_registered", "d", {"kind": "data", "annotations": {"lst": [1]}})
    await publish(js, ev)

    async def rejected() -> dict[str, Any] | None:
        got = await client.event(ev["id"])
        return got if got["status"] == "rejected" else None

    got = await wait_for(rejected, what="rejection")
    assert [(e["loc"], e["msg"]) for e in got["outcome"]["errors"]] == [
        ("annotations.lst", "annotations must be string, number, boolean or null")]


async def test_scalar_tag_values_are_stored_as_their_text(client: AssetClient) -> None:
    """int, float and bool tag values (Metaflow parameters) are accepted and stored as
    str() of the value, as obproject stores them; annotations keep their JSON types."""
    await client.register_model("m", annotations={"epochs": 3, "f1": 0.5, "ok": True},
                                tags={"seed": 42, "lr": 0.1, "tuned": True, "team": "risk"})
    got = await client.peek("m", "latest")
    assert got["tags"] == {"seed": "42", "lr": "0.1", "tuned": "True", "team": "risk"}
    assert got["annotations"] == {"epochs": 3, "f1": 0.5, "ok": True}
    assert [type(got["annotations"][k]) for k in ("epochs", "f1", "ok")] == [int, float, bool]
