"""CloudEvents 1.0 conformance, checked with the CloudEvents Python SDK: structured and
binary inbound events are accepted, outbound events parse, bad attributes are refused."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from cloudevents.v1.conversion import to_binary, to_structured
from cloudevents.v1.http import CloudEvent as SdkEvent
from cloudevents.v1.http import from_http

from assetd.client import AssetClient
from assetd.daemon.app import Daemon
from assetd.errors import RejectedError
from assetd.handlers.decode import decode
from assetd.schemas import wire
from tests.helpers import envelope, out_events, relayed, stream_messages, wait_for

TRACE = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def _sdk_event(asset: str, **extra: Any) -> SdkEvent:
    attrs = {"type": "asset_registered", "source": "sdk/test", "subject": asset,
             "project": "fraud", "branch": "main", **extra}
    return SdkEvent(attrs, {"kind": "data", "annotations": {"rows": 3}})


async def _instance(client: AssetClient, asset: str) -> Any:
    try:
        return await client.peek(asset)
    except Exception:
        return None


async def test_sdk_events_in_both_modes_are_applied_and_outbound_ones_parse(
        daemon: Daemon, js: Any, client: AssetClient) -> None:
    """An SDK-built event in binary mode (``ce-*`` headers) and one in structured mode with
    ``datacontenttype`` parameters both register; outbound events carry
    ``application/cloudevents+json``, parse with the SDK and keep the cause's traceparent."""
    headers, body = to_binary(_sdk_event("binary"))
    await js.publish(wire.in_subject("assetd", "fraud", "main", "binary", "asset_registered"),
                     body, headers={**headers, "content-type": "application/json"})
    _, body = to_structured(_sdk_event("structured", traceparent=TRACE,
                                       datacontenttype="application/json; charset=utf-8"))
    await js.publish(wire.in_subject("assetd", "fraud", "main", "structured",
                                     "asset_registered"), body)
    for asset in ("binary", "structured"):
        got = await wait_for(lambda a=asset: _instance(client, a), what=f"{asset} applied")
        assert got["annotations"] == {"rows": 3}
    msgs = await stream_messages(js, "ASSETD_OUT")
    assert msgs
    for msg in msgs:
        assert msg.headers["Content-Type"] == "application/cloudevents+json"
        parsed = from_http({"content-type": msg.headers["Content-Type"]}, msg.data)
        assert parsed["source"] == "assetd" and parsed["type"] == "instance_created"
        assert parsed.data["instance"] == "v1"
        trace = parsed.get("traceparent")
        assert trace == (TRACE if parsed["subject"] == "structured" else None), \
            "the inbound trace context goes on to what it causes"


@pytest.mark.parametrize(("extra", "reason"), [
    ({"My_Ext": "x"}, "extension attribute 'My_Ext'"),
    ({"time": "2026-11-22 10:00:00"}, "time must be RFC 3339"),
    ({"time": "yesterday"}, "time must be RFC 3339"),
    ({"datacontenttype": "text/plain"}, "datacontenttype"),
])
def test_attributes_outside_the_spec_are_refused(extra: dict[str, Any], reason: str) -> None:
    """Illegal extension names, non-RFC 3339 times and non-JSON content are refused."""
    ev = envelope("asset_registered", "m", {"kind": "data"}, **extra)
    subject = wire.in_subject("assetd", "fraud", "main", "m", "asset_registered")
    with pytest.raises(RejectedError, match=reason):
        decode(subject, orjson.dumps(ev), prefix="assetd", max_bytes=1 << 20)


def test_valid_attributes_are_accepted() -> None:
    """RFC 3339 times with offsets and fractions, lower-case extensions, JSON with params."""
    ev = envelope("asset_registered", "m", {"kind": "data"}, time="2026-11-22T10:00:00.5+02:00",
                  traceparent=TRACE, datacontenttype="application/json;charset=utf-8")
    subject = wire.in_subject("assetd", "fraud", "main", "m", "asset_registered")
    item = decode(subject, orjson.dumps(ev), prefix="assetd", max_bytes=1 << 20)
    assert item.event.trace() == {"traceparent": TRACE}


async def test_out_events_helper_still_sees_outbound(daemon: Daemon, js: Any,
                                                     client: AssetClient) -> None:
    """Outbound JSON is unchanged by the content-type header (regression guard)."""
    await client.register_data("plain", wait=True)
    await relayed(client)
    assert [e["data"]["instance"] for e in await out_events(js, "instance_created")] == ["v1"]
