"""Pieces of the ingest hot path made cheaper (issue 13) still say exactly what they said."""

from __future__ import annotations

import random
import string
import uuid

from assetd.daemon.relay import Marks
from assetd.handlers.tx import _NS, outbound_id
from assetd.schemas.inbound import AssetDefined, AssetRegistered
from assetd.schemas.limits import Limits


def test_outbound_id_is_uuid5_of_its_name() -> None:
    rng = random.Random(13)
    alphabet = string.printable + "éü漢\x1f"
    for _ in range(2000):
        parts = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
                 for _ in range(5)]
        assert outbound_id(*parts) == str(uuid.uuid5(_NS, "\x1f".join(parts)))


def test_limits_still_see_every_map_and_the_inputs() -> None:
    limits = Limits(max_map_keys=1, max_value_chars=3, max_inputs=0)
    reg = AssetRegistered.model_validate({
        "kind": "model", "annotations": {"a": 1, "b": 2}, "tags": {"t": "long"},
        "inputs": [{"asset": "x", "instance": "latest"}]})
    over = limits.violations(reg)
    assert any(m.startswith("annotations has 2 keys") for m in over)
    assert any(m.startswith("tags.t is 4 characters") for m in over)
    assert any(m.startswith("inputs has 1 entries") for m in over)
    defined = AssetDefined.model_validate({"kind": "model", "properties": {"p": "long"}})
    assert limits.violations(defined) == ["properties.p is 4 characters; the limit is 3"]
    assert limits.violations({"annotations": {}}) == []  # not a model: nothing to check


def test_marks_skip_published_rows_until_written_and_requeue_on_failure() -> None:
    marks = Marks()
    marks.published([1, 2])
    taken = marks.take()
    assert taken == [1, 2] and marks.queued == [] and marks.unmarked == {1, 2}
    marks.failed(taken)  # the batch that carried them rolled back
    assert marks.queued == [1, 2] and marks.unmarked == {1, 2}
    marks.written(marks.take())
    assert marks.unmarked == set() and marks.queued == []
