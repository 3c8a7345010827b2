"""Nothing a client sends takes the daemon off the bus: sizes with headers, header keys NATS
cannot carry, replies of any size, reply subjects outside the requester's inbox, ids that
another project used first."""

from __future__ import annotations

import asyncio
import hashlib
import socket
import uuid
from pathlib import Path
from typing import Any

import nats
import orjson
import pytest

from assetd.client import AssetClient
from assetd.daemon.app import Daemon
from assetd.errors import RejectedError
from assetd.handlers.deadletter import dead_letter_copy, headers_size
from assetd.handlers.tx import OUTBOUND_MAX_BYTES, Tx
from assetd.schemas.outbound import EventRejected
from tests.conftest import daemon_settings, running_daemon
from tests.helpers import (
    envelope,
    out_events,
    publish,
    relayed,
    stream_messages,
    wait_for,
)


async def _applied(client: AssetClient, asset: str, n: int) -> bool:
    try:
        page = await client.list_instances(asset, limit=500)
    except Exception:
        return False
    return len(page["items"]) >= n


async def _serving(daemon: Daemon, client: AssetClient) -> None:
    assert daemon.broker.connection.is_connected, "the daemon is still on the bus"
    assert (await client.status())["version"], "queries are answered"
    assert all((await daemon.ready()).values()), await daemon.ready()


async def test_one_megabyte_message_is_dead_lettered_truncated(daemon: Daemon, js: Any,
                                                              client: AssetClient) -> None:
    """A message at NATS' size limit is dead-lettered as a truncated copy (size and hash
    kept), acked once, and the 50 valid events behind it are applied."""
    limit = daemon.broker.connection.max_payload
    headers = {"Nats-Msg-Id": "big-1", "X-Trace": "t" * 100}
    big = b"x" * (limit - headers_size(headers) - 64)
    await js.publish("assetd.in.fraud.main.big.asset_registered", big, headers=headers)
    for i in range(50):
        await publish(js, envelope("asset_registered", "after", {"kind": "data"},
                                   event_id=f"after-{i}"))
    await wait_for(lambda: _applied(client, "after", 50), timeout=60, what="50 later events")
    letters = await stream_messages(js, "ASSETD_DLQ")
    assert len(letters) == 1
    h = letters[0].headers
    assert h["Assetd-Truncated"] == "true"
    assert h["Assetd-Original-Size"] == str(len(big))
    assert h["Assetd-Original-Sha256"] == hashlib.sha256(big).hexdigest()
    assert "the limit is" in h["Assetd-Reason"] and h["X-Trace"] == "t" * 100
    assert len(letters[0].data) + headers_size(letters[0].headers) <= limit
    await relayed(client)
    rejected = await out_events(js, "event_rejected")
    assert len(rejected) == 1 and rejected[0]["data"]["inbound_subject"].endswith(".big."
                                                                                  "asset_registered")
    await _serving(daemon, client)
    print(f"\n1 MB message: published 51, applied 50, dead-lettered 1 (truncated to "
          f"{len(letters[0].data)} of {len(big)} bytes), lost 0")


def _raw_hpub(url: str, subject: str, header_block: bytes, payload: bytes) -> None:
    """Publish with headers nats-py refuses to write (a key like ``X/Trace``)."""
    host, port = url.removeprefix("nats://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.recv(4096)  # INFO
        s.sendall(b'CONNECT {"verbose":false,"headers":true,"pedantic":false}\r\n')
        hdr = b"NATS/1.0\r\n" + header_block + b"\r\n"
        s.sendall(f"HPUB {subject} {len(hdr)} {len(hdr) + len(payload)}\r\n".encode()
                  + hdr + payload + b"\r\nPING\r\n")
        got = b""
        while b"PONG" not in got:
            got += s.recv(4096)
        assert b"-ERR" not in got, got


async def test_header_key_nats_cannot_carry_is_dropped_with_a_note(
        daemon: Daemon, js: Any, client: AssetClient) -> None:
    """A bad message whose header key is ``X/Trace`` is dead-lettered once, the key dropped
    and named, instead of being redelivered for ever."""
    _raw_hpub(daemon.settings.nats_url or "", "assetd.in.fraud.main.m.asset_registered",
              b"X/Trace: abc\r\nGood-Key: kept\r\n", b"{not json")
    await publish(js, envelope("asset_registered", "m", {"kind": "data"}))
    await wait_for(lambda: _applied(client, "m", 1), what="the valid event")
    letters = await wait_for(lambda: stream_messages(js, "ASSETD_DLQ"), what="the dead letter")
    h = letters[0].headers
    assert "X/Trace" not in h and h["Good-Key"] == "kept"
    assert orjson.loads(h["Assetd-Dropped-Headers"]) == ["X/Trace"]
    assert h["Assetd-Reason"].startswith("payload is not JSON")
    assert daemon.ingest.counters["retry"] == 0, "never redelivered"
    await _serving(daemon, client)


async def test_a_page_of_instances_over_the_nats_limit_is_cut_and_continues(
        daemon: Daemon, client: AssetClient) -> None:
    """An ``instances`` page whose reply would pass NATS' limit comes back shorter, with
    ``next`` to go on; paging returns every instance and the daemon stays connected."""
    annotations = {f"k{i}": "v" * 16000 for i in range(12)}  # ~190 KB per instance
    for _ in range(8):
        await client.register_data("wide", annotations=annotations, wait=True)
    page = await client.list_instances("wide", limit=500)
    assert 0 < len(page["items"]) < 8 and page["next"] == page["items"][-1]["version"]
    seen = [i["version"] for i in page["items"]]
    while page["next"] is not None:
        page = await client.list_instances("wide", limit=500, before=page["next"])
        seen += [i["version"] for i in page["items"]]
    assert seen == list(range(8, 0, -1))
    await _serving(daemon, client)


@pytest.fixture
async def tight_daemon(nc: Any, nats_server: Any, tmp_path: Path) -> Any:
    """A daemon with small lineage limits."""
    settings = daemon_settings(nats_server.url, f"sqlite:///{tmp_path / 'r.db'}", tmp_path,
                               max_lineage_nodes=50, max_lineage_edges=5)
    async with running_daemon(settings) as d:
        yield d


async def test_lineage_caps_edges_and_says_it_cut(tight_daemon: Daemon) -> None:
    """A lineage walk stops at ``max_lineage_edges`` edges and answers ``truncated``."""
    async with AssetClient("fraud", settings=tight_daemon.settings, timeout=15) as c:
        await c.register_data("src", wait=True)
        for i in range(8):
            await c.consume("src", consumer={"name": f"reader-{i}"})
        await c.register_data("tail", inputs=["src"], wait=True)
        graph = await wait_for(lambda: _lineage_with(c, 6), what="the consumptions")
        assert len(graph["edges"]) == 5 and graph["truncated"] is True
        small = await c.lineage("tail", depth=1)
        assert small["truncated"] is False and len(small["edges"]) == 1


async def _lineage_with(c: AssetClient, edges: int) -> Any:
    graph = await c.lineage("src", direction="downstream", depth=2)
    return graph if graph["truncated"] else None


async def test_replies_go_only_to_the_requesters_inbox(daemon: Daemon, js: Any,
                                                       client: AssetClient) -> None:
    """A query whose reply subject is another project's outbound subject, or another
    project's inbox, gets no answer there; one from the project's own inbox does."""
    await client.register_model("m", wait=True)
    nc = client.nc
    spy = await nc.subscribe("_INBOX.other.>")
    body = orjson.dumps({"asset": "m"})
    await nc.publish("assetd.api.fraud.resolve", body,
                     reply="assetd.out.other.main.m.asset_promoted")
    await nc.publish("assetd.api.fraud.resolve", body, reply="_INBOX.other.x.1")
    await nc.publish("assetd.api.fraud.resolve", body, reply="_INBOX.fraud.>")
    assert (await client.peek("m"))["instance"] == "v1", "a proper request is answered"
    with pytest.raises(nats.errors.TimeoutError):
        await spy.next_msg(timeout=0.5)
    assert await out_events(js, "asset_promoted") == []
    await spy.unsubscribe()


async def test_one_projects_event_id_never_swallows_anothers(daemon: Daemon, js: Any) -> None:
    """Two projects using the same event id at the same moment both get their instance."""
    settings = daemon.settings
    async with AssetClient("fraud", settings=settings, timeout=15) as a, \
            AssetClient("other", settings=settings, timeout=15) as b:
        eid = f"shared-{uuid.uuid4()}"
        first, second = await asyncio.gather(
            a.register_data("d", event_id=eid, wait=True),
            b.register_data("d", event_id=eid, wait=True))
        assert first["instance"] == second["instance"] == "v1"
        again = await a.register_data("d", event_id=eid)  # a retry: the first outcome, at once
        assert (again["instance"], again["event_id"]) == ("v1", eid)
    info = await js.stream_info("ASSETD_IN")
    assert info.config.duplicate_window <= 0.1


def test_dead_letter_copy_fits_whatever_the_headers() -> None:
    """A copy with many long original headers and a payload at the limit still fits."""
    headers = {f"H{i}": "v" * 5000 for i in range(40)} | {"bad key": "x", "Nats-Expected": "1"}
    copy = dead_letter_copy(subject="assetd.dlq.p.a.t", data=b"y" * (1024 * 1024 - 100),
                            headers=headers, reason="r" * 10_000, errors=[{"m": "e" * 9000}],
                            inbound_subject="assetd.in.p.a.t", seq=7, event_id=None,
                            max_payload=1024 * 1024)
    assert len(copy.payload) + headers_size(copy.headers) + 1024 <= 1024 * 1024
    assert copy.truncated and "Nats-Expected" not in copy.headers
    assert "bad key" in orjson.loads(copy.headers["Assetd-Dropped-Headers"])


def test_an_outbound_event_over_the_limit_refuses_its_cause() -> None:
    """An outbound event that NATS might refuse is never queued: its cause is rejected."""
    tx = Tx(conn=None, now=__import__("datetime").datetime.now(), prefix="assetd",  # type: ignore[arg-type]
            rules=None)
    with pytest.raises(RejectedError, match="its event_rejected event would be"):
        tx.emit(project="p", branch="main", asset="a", cause="c",
                data=EventRejected(event_id=None, inbound_subject="x",
                                   reason="z" * OUTBOUND_MAX_BYTES))


async def test_a_subscriber_skips_what_is_not_an_event(daemon: Daemon, js: Any,
                                                       client: AssetClient) -> None:
    """A message on an outbound subject that is not an assetd event (as a hostile reply used
    to make) is acknowledged and skipped; the next real event arrives."""
    stream = client.events(asset="m", durable="server", deliver="all")
    first = asyncio.ensure_future(stream.__anext__())
    await asyncio.sleep(0.5)
    await js.publish("assetd.out.fraud.main.m.asset_promoted", b'{"ok": true, "result": []}')
    await client.register_model("m", wait=True)
    event = await asyncio.wait_for(first, 15)
    assert event["type"] == "instance_created" and event["data"]["instance"] == "v1"
    await stream.aclose()
