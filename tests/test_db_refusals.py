"""What a registry database cannot store is refused at decode time, once, on every database.

NUL characters (PostgreSQL text cannot hold them), version numbers beyond the registry's
32-bit version column, and integers beyond 64 bits (orjson would read them as floats) are
bad input: dead-lettered with a reason after one delivery, never retried.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import pytest
from pydantic import TypeAdapter, ValidationError
from sqlalchemy import Integer

from assetd.client import AssetClient, QueryError
from assetd.daemon.app import Daemon
from assetd.errors import RejectedError
from assetd.handlers.decode import decode
from assetd.registry.tables import ALIAS_HISTORY, INSTANCE
from assetd.schemas import wire
from assetd.schemas.api import InstancesRequest, ResolveRequest
from assetd.schemas.ids import MAX_VERSION, Selector, Version, parse_selector
from assetd.schemas.inbound import AliasRollbackRequested, InstanceUpdated
from assetd.schemas.limits import unstorable
from tests.helpers import envelope, out_events, stream_messages, wait_for

BIG = 2**70


def _raw(ev: dict[str, Any]) -> bytes:
    """JSON bytes as any client would send them (the stdlib writes integers of any size)."""
    return json.dumps(ev).encode()


def _subject(ev: dict[str, Any]) -> str:
    return wire.in_subject("assetd", ev["project"], ev.get("branch", "main"), ev["subject"],
                           ev["type"])


def _decode(ev: dict[str, Any]) -> Any:
    return decode(_subject(ev), _raw(ev), prefix="assetd", max_bytes=262144)


# -- unit: the validators --------------------------------------------------------------------

def test_version_columns_are_32_bit_integers() -> None:
    """MAX_VERSION is what the registry's version columns hold (update it if they widen)."""
    for column in (INSTANCE.c.version, ALIAS_HISTORY.c.version):
        assert type(column.type) is Integer
    assert MAX_VERSION == 2**31 - 1


@pytest.mark.parametrize("selector", [f"v{MAX_VERSION}", "v1", "latest-999999999"])
def test_storable_selectors_parse(selector: str) -> None:
    """Selectors up to v2147483647 and latest-999999999 are accepted."""
    assert TypeAdapter(Selector).validate_python(selector) == selector
    parse_selector(selector)


@pytest.mark.parametrize("selector", [f"v{MAX_VERSION + 1}", "v9999999999", "latest-9999999999",
                                      "v99999999999"])
def test_out_of_range_selectors_are_refused(selector: str) -> None:
    """A version beyond the column (or latest-N beyond 9 digits) is refused by the schema."""
    with pytest.raises(ValidationError):
        TypeAdapter(Selector).validate_python(selector)
    with pytest.raises(ValueError, match="invalid selector"):
        parse_selector(selector)


def test_version_fields_are_bounded() -> None:
    """instance_updated.instance and alias_rollback_requested.to take vN up to MAX_VERSION."""
    assert TypeAdapter(Version).validate_python(f"v{MAX_VERSION}") == f"v{MAX_VERSION}"
    with pytest.raises(ValidationError, match="32-bit"):
        InstanceUpdated.model_validate({"instance": "v9999999999", "reason": "r"})
    with pytest.raises(ValidationError, match="32-bit"):
        AliasRollbackRequested.model_validate({"to": "v2147483648", "reason": "r"})


def test_query_requests_refuse_out_of_range_versions() -> None:
    """resolve(instance=v9999999999) and instances(before=2**40) are invalid requests."""
    with pytest.raises(ValidationError, match="32-bit"):
        ResolveRequest.model_validate({"asset": "a", "instance": "v9999999999"})
    with pytest.raises(ValidationError, match="32-bit"):
        InstancesRequest.model_validate({"asset": "a", "before": 2**40})
    assert InstancesRequest.model_validate({"asset": "a", "before": MAX_VERSION}).before


@pytest.mark.parametrize(("payload", "found"), [
    (b'{"a":"x\\u0000y"}', [("a", "contains a NUL character")]),
    (b'{"m":{"k\\u0000":1}}', [("m.k\\u0000", "key contains a NUL character")]),
    (b'{"l":["ok","\\u0000"]}', [("l[1]", "contains a NUL character")]),
    (b'{"d":{"n":123456789012345678901234567890}}', [("d.n", "integer beyond 64 bits")]),
    (b'{"d":[{"n":-9223372036854775809}]}', [("d[0].n", "integer beyond 64 bits")]),
    (b'{"d":{"n":9223372036854775808}}', [("d.n", "integer beyond 64 bits")]),
])
def test_unstorable_finds_the_path(payload: bytes, found: list[tuple[str, str]]) -> None:
    """Each NUL or over-wide integer is reported with its dotted path."""
    got = unstorable(payload, orjson.loads(payload))
    assert [loc for loc, _ in got] == [loc for loc, _ in found]
    for (_, want), (_, msg) in zip(found, got, strict=True):
        assert msg.startswith(want)


@pytest.mark.parametrize("payload", [
    b'{"a":"\\\\u0000"}',                                   # an escaped backslash, not a NUL
    b'{"n":9223372036854775807,"m":-9223372036854775808}',  # the 64-bit extremes
    b'{"s":"12345678901234567890123456789"}',               # digits inside a string
    b'{"f":0.12345678901234567890123,"g":1.5e300}',         # floats are floats
    b'{"a":"plain","n":[1,2,3]}',
])
def test_storable_payloads_pass(payload: bytes) -> None:
    """Look-alikes of the refused values are accepted."""
    assert unstorable(payload, orjson.loads(payload)) == []


@pytest.mark.parametrize(("ev", "reason"), [
    (envelope("asset_registered", "m", {"kind": "data", "annotations": {"note": "a\x00b"}}),
     "data.annotations.note: contains a NUL character"),
    (envelope("asset_registered", "m", {"kind": "data", "tags": {"t": "\x00"}}),
     "data.tags.t: contains a NUL character"),
    (envelope("asset_registered", "m", {"kind": "data"}, source="tests\x00"),
     "source: contains a NUL character"),
    (envelope("asset_registered", "m", {"kind": "data", "annotations": {"n": BIG}}),
     "data.annotations.n: integer beyond 64 bits"),
    (envelope("asset_consumed", "m", {"instance": "v9999999999"}),
     "invalid data for asset_consumed: instance: Value error, invalid selector 'v9999999999': "
     "version numbers go up to v2147483647 (the registry stores them as 32-bit integers)"),
    (envelope("asset_registered", "m", {"kind": "data",
                                        "inputs": [{"asset": "f", "instance": "v9999999999"}]}),
     "inputs.0.instance"),
])
def test_decode_refuses_with_a_reason(ev: dict[str, Any], reason: str) -> None:
    """decode() raises RejectedError whose one-line reason names the field."""
    with pytest.raises(RejectedError) as err:
        _decode(ev)
    assert reason in err.value.reason
    assert "\n" not in err.value.reason and "\x00" not in err.value.reason


def test_decode_keeps_wide_but_storable_integers() -> None:
    """An int64 annotation stays an int (not a float) through decode."""
    ev = envelope("asset_registered", "m", {"kind": "data",
                                            "annotations": {"n": 2**63 - 1, "s": "\\u0000"}})
    assert _decode(ev).data.annotations == {"n": 2**63 - 1, "s": "\\u0000"}


# -- integration: the real daemon on SQLite and PostgreSQL ----------------------------------

HOSTILE: list[tuple[str, dict[str, Any], str]] = [
    ("nul_annotation", envelope("asset_registered", "model",
                                {"kind": "model", "annotations": {"note": "bad\x00value"}}),
     "data.annotations.note: contains a NUL character"),
    ("nul_tag", envelope("asset_registered", "model",
                         {"kind": "model", "tags": {"team": "ri\x00sk"}}),
     "data.tags.team: contains a NUL character"),
    ("nul_source", envelope("asset_registered", "model", {"kind": "model"}, source="ci\x00"),
     "source: contains a NUL character"),
    ("nul_description", envelope("asset_defined", "model",
                                 {"kind": "model", "description": "\x00"}),
     "data.description: contains a NUL character"),
    ("nul_reason", envelope("promotion_requested", "features",
                            {"instance": "v1", "reason": "because\x00"}),
     "data.reason: contains a NUL character"),
    ("huge_consumed", envelope("asset_consumed", "features", {"instance": "v9999999999"}),
     "version numbers go up to v2147483647"),
    ("huge_input", envelope("asset_registered", "model",
                            {"kind": "model",
                             "inputs": [{"asset": "features", "instance": "v9999999999"}]}),
     "version numbers go up to v2147483647"),
    ("huge_quality", envelope("quality_reported", "features",
                              {"instance": "v9999999999", "check": "c", "passed": True}),
     "version numbers go up to v2147483647"),
    ("huge_updated", envelope("instance_updated", "features",
                              {"instance": "v9999999999", "state": "abandoned", "reason": "r"}),
     "version numbers go up to v2147483647"),
    ("big_int", envelope("asset_registered", "model",
                         {"kind": "model", "annotations": {"rows": BIG}}),
     "data.annotations.rows: integer beyond 64 bits"),
]


def _valid() -> list[dict[str, Any]]:
    return [
        envelope("asset_registered", "model",
                 {"kind": "model", "annotations": {"rows": 2**63 - 1, "note": "\\u0000 is text"},
                  "inputs": [{"asset": "features", "instance": "v1"}]}),
        envelope("asset_consumed", "features", {"instance": "v1", "consumer": {"name": "scorer"}}),
        envelope("asset_registered", "model", {"kind": "model", "tags": {"team": "risk"}}),
        envelope("asset_defined", "model", {"kind": "model", "description": "fraud model"}),
        envelope("asset_registered", "model", {"kind": "model",
                                               "annotations": {"f1": 0.9, "big": -(2**63)}}),
    ]


async def test_unstorable_input_is_refused_once_and_valid_traffic_applies(
    daemon: Daemon, client: AssetClient, js: Any
) -> None:
    """Each hostile event is dead-lettered after one delivery with its reason, the rest apply."""
    await client.register_data("features", wait=True)
    valid = _valid()
    hostile = [ev for _, ev, _ in HOSTILE]
    for i, ev in enumerate(hostile):  # interleaved, so they share batches with valid events
        for good in valid[i:i + 1]:
            await js.publish(_subject(good), _raw(good), headers={"Nats-Msg-Id": good["id"]})
        await js.publish(_subject(ev), _raw(ev), headers={"Nats-Msg-Id": ev["id"]})

    async def all_dead_lettered() -> list[Any]:
        msgs = await stream_messages(js, "ASSETD_DLQ")
        return msgs if len(msgs) >= len(HOSTILE) else []

    # Once, not after retries: with the tests' nak_delay of 0.1 s, ten tries take ~50 s.
    dlq = await wait_for(all_dead_lettered, timeout=20, what="every hostile event in the DLQ")
    assert len(dlq) == len(HOSTILE)
    by_id = {m.headers["Assetd-Event-Id"]: m for m in dlq}
    for name, ev, reason in HOSTILE:
        msg = by_id[ev["id"]]
        why = msg.headers["Assetd-Reason"]
        assert reason in why, (name, why)
        assert not why.startswith("failed "), (name, why)
        assert msg.data == _raw(ev), "the original bytes are kept"

    rejected = await wait_for(
        lambda: _at_least(out_events(js, "event_rejected"), len(HOSTILE)), what="event_rejected")
    assert {e["data"]["event_id"] for e in rejected} == {ev["id"] for ev in hostile}

    assert daemon.ingest.counters.get("retry", 0) == 0, daemon.ingest.counters
    info = await js.consumer_info("ASSETD_IN", "assetd")
    assert info.num_redelivered == 0, "no message was delivered twice"

    async def all_applied() -> dict[str, Any] | None:
        page = await client.list_instances("model")
        return page if len(page["items"]) == 3 else None

    page = await wait_for(all_applied, what="the three valid registrations")
    items = {i["instance"]: i for i in page["items"]}
    assert items["v1"]["annotations"] == {"rows": 2**63 - 1, "note": "\\u0000 is text"}
    assert isinstance(items["v1"]["annotations"]["rows"], int)
    assert items["v1"]["inputs"] == [{"asset": "features", "branch": "main", "instance": "v1"}]
    assert items["v2"]["tags"] == {"team": "risk"}
    assert items["v3"]["annotations"] == {"f1": 0.9, "big": -(2**63)}
    down = await client.lineage("features", "v1", direction="downstream", depth=1)
    assert len(down["edges"]) == 2, down  # model v1's input and the scorer's consumption
    assets = {a["asset"]: a for a in await client.list_assets()}
    assert assets["model"]["description"] == "fraud model"
    features = await client.peek("features")
    assert features["instance"] == "v1" and features["validity"] == "valid"


async def _at_least(events: Any, n: int) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = await events
    return got if len(got) >= n else []


async def test_queries_refuse_out_of_range_versions(client: AssetClient) -> None:
    """resolve/lineage with v9999999999 and instances before 2**40 answer invalid, not internal."""
    await client.register_data("features", wait=True)
    calls: list[Callable[[], Awaitable[Any]]] = [
        lambda: client.peek("features", "v9999999999"),
        lambda: client.lineage("features", "v9999999999"),
        lambda: client.list_instances("features", before=2**40),
    ]
    for call in calls:
        with pytest.raises(QueryError) as err:
            await call()
        assert err.value.code == "invalid", err.value.message
        assert "32-bit" in err.value.message
    with pytest.raises(QueryError) as err:
        await client.peek("features", "latest-999999999")
    assert err.value.code == "not_found"
    with pytest.raises(QueryError) as err:
        await client.peek("features", f"v{MAX_VERSION}")
    assert err.value.code == "not_found"
