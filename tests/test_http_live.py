"""The web UI's routes beside the query API, against a real daemon: the page and its files,
the event stream (live, per branch, closed at shutdown), the dead letters, the pickers'
project and branch names, and the token on all of them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from assetd.client import AssetClient
from assetd.daemon.app import Daemon
from assetd.daemon.embedded import EmbeddedNats, free_port
from tests.conftest import daemon_settings, http_daemon_settings, running_daemon
from tests.helpers import wait_for

TOKEN = "ui-token"


@pytest.fixture
async def web(nc: Any, nats_server: EmbeddedNats, tmp_path: Path) -> AsyncIterator[Daemon]:
    async with running_daemon(http_daemon_settings(nats_server, tmp_path)) as d:
        yield d


def _root(daemon: Daemon) -> str:
    return f"http://127.0.0.1:{daemon.settings.http_port}"


async def _events(response: aiohttp.ClientResponse) -> AsyncIterator[tuple[str, Any]]:
    """(event name, data) of a server-sent event stream."""
    name, data = "message", b""
    async for raw in response.content:
        line = raw.rstrip(b"\n")
        if not line:
            if data:
                yield name, orjson.loads(data)
            name, data = "message", b""
        elif line.startswith(b"event: "):
            name = line[7:].decode()
        elif line.startswith(b"data: "):
            data += line[6:]


async def test_the_page_and_its_files_are_served(web: Daemon,
                                                 http: aiohttp.ClientSession) -> None:
    """``/`` is the UI's page and ``/ui/<file>`` its modules and styles, with their types,
    no-cache with an ETag (a 304 when unchanged) and a same-origin CSP; others are 404."""
    async with http.get(f"{_root(web)}/") as r:
        page = await r.text()
        assert r.status == 200 and r.content_type == "text/html"
        assert r.headers["Cache-Control"] == "no-cache"
        assert "script-src 'self'" in r.headers["Content-Security-Policy"]
    assert '<script type="module" src="/ui/app.js">' in page
    for name, kind in (("app.js", "text/javascript"), ("style.css", "text/css")):
        async with http.get(f"{_root(web)}/ui/{name}") as r:
            assert (r.status, r.content_type) == (200, kind)
            etag = r.headers["ETag"]
        async with http.get(f"{_root(web)}/ui/{name}", headers={"If-None-Match": etag}) as r:
            assert r.status == 304
    async with http.get(f"{_root(web)}/ui/nope.js") as r:
        assert r.status == 404


async def test_the_stream_sends_new_events_of_its_branch(web: Daemon,
                                                         http: aiohttp.ClientSession) -> None:
    """A stream opened on ``user.alice`` gets that branch's events as CloudEvents with the
    real branch name, and none of ``main``'s; the whole-project stream gets both."""
    base = f"{_root(web)}/api/v1/fraud/stream"
    async with AssetClient("fraud", settings=web.settings, timeout=15) as client, \
            http.get(base, params={"branch": "user.alice"}) as alice, http.get(base) as every:
        assert alice.headers["Content-Type"] == "text/event-stream"
        streams = [_events(alice), _events(every)]
        for s in streams:
            assert (await anext(s))[0] == "ready"
        await client.register_data("raw", wait=True)
        await client.register_data("raw", branch="user.alice", wait=True)
        name, event = await asyncio.wait_for(anext(streams[0]), 15)
        assert name == "cloudevent" and event["type"] == "instance_created"
        assert event["branch"] == "user.alice" and event["subject"] == "raw"
        seen = [(await asyncio.wait_for(anext(streams[1]), 15))[1]["branch"] for _ in "ab"]
        assert sorted(seen) == ["main", "user.alice"]


async def test_streams_end_when_the_daemon_stops(nc: Any, nats_server: EmbeddedNats,
                                                 tmp_path: Path,
                                                 http: aiohttp.ClientSession) -> None:
    """An open stream does not hold up the daemon's stop: it ends, and the stop is prompt."""
    daemon = Daemon(http_daemon_settings(nats_server, tmp_path))
    await daemon.start()
    try:
        async with http.get(f"{_root(daemon)}/api/v1/fraud/stream") as r:
            events = _events(r)
            assert (await anext(events))[0] == "ready"
            started = time.monotonic()
            await daemon.stop()
            assert time.monotonic() - started < 4
            with pytest.raises((StopAsyncIteration, aiohttp.ClientPayloadError)):
                await asyncio.wait_for(anext(events), 5)
    finally:
        await daemon.stop()


async def test_dead_letters_projects_and_branches(web: Daemon, js: Any,
                                                  http: aiohttp.ClientSession) -> None:
    """``dlq`` lists the project's dead letters with their reasons; ``projects`` and
    ``branches`` name what the registry holds, branches exactly as written."""
    await js.publish("assetd.in.fraud.main.junk.asset_registered", b"not json at all")
    await js.publish("assetd.in.other.main.junk.asset_registered", b"{}")
    async with AssetClient("fraud", settings=web.settings, timeout=15) as client:
        for branch in ("main", "user.alice", "feature/x"):
            await client.register_data("raw", branch=branch, wait=True)
    api = f"{_root(web)}/api/v1"

    async def letters() -> Any:
        async with http.get(f"{api}/fraud/dlq", params={"limit": "10"}) as r:
            body = await r.json()
        return body["result"] if r.status == 200 and body["result"] else None
    found = await wait_for(letters, what="a dead letter")
    assert [d["inbound_subject"] for d in found] == ["assetd.in.fraud.main.junk.asset_registered"]
    assert found[0]["reason"] and found[0]["seq"] >= 1
    async with http.get(f"{api}/fraud/dlq", params={"limit": "0"}) as r:
        assert r.status == 400
    async with http.get(f"{api}/projects") as r:
        assert (await r.json())["result"] == ["fraud"]
    async with http.get(f"{api}/fraud/branches") as r:
        assert (await r.json())["result"] == ["feature/x", "main", "user.alice"]
    async with http.get(f"{api}/nobody/branches") as r:
        assert (await r.json())["result"] == []


async def test_the_token_guards_them_and_the_stream_takes_it_as_a_parameter(
        nc: Any, nats_server: EmbeddedNats, tmp_path: Path,
        http: aiohttp.ClientSession) -> None:
    """With ASSETD_HTTP_TOKEN set the new routes answer 401 without it; the stream alone
    also takes ``?token=`` (an EventSource cannot send headers); the page needs none."""
    settings = http_daemon_settings(nats_server, tmp_path, http_token=TOKEN)
    async with running_daemon(settings) as daemon:
        api = f"{_root(daemon)}/api/v1"
        for path in ("/projects", "/fraud/branches", "/fraud/dlq", "/fraud/stream"):
            async with http.get(f"{api}{path}") as r:
                assert r.status == 401, path
            async with http.get(f"{api}{path}", params={"token": "wrong"}) as r:
                assert r.status == 401, path
        async with http.get(f"{api}/fraud/dlq", params={"token": TOKEN}) as r:
            assert r.status == 401  # only the stream takes the parameter
        async with http.get(f"{api}/fraud/dlq",
                            headers={"Authorization": f"Bearer {TOKEN}"}) as r:
            assert r.status == 200
        async with http.get(f"{api}/fraud/stream", params={"token": TOKEN}) as r:
            assert r.status == 200 and (await anext(_events(r)))[0] == "ready"
        async with http.get(f"{_root(daemon)}/") as r:
            assert r.status == 200


async def test_projects_and_branches_on_either_registry(nc: Any, nats_server: EmbeddedNats,
                                                        tmp_path: Path, db_url: str,
                                                        http: aiohttp.ClientSession) -> None:
    """The pickers' skip scans answer alike on SQLite and PostgreSQL: each name once, in
    name order, whatever the number of instances per branch."""
    settings = daemon_settings(nats_server.url, db_url, tmp_path).model_copy(
        update={"http_port": free_port()})
    async with running_daemon(settings) as daemon:
        for project, branches in (("fraud", ("main", "user.alice", "main", "release.2")),
                                  ("ads", ("main",))):
            async with AssetClient(project, settings=daemon.settings, timeout=15) as client:
                for branch in branches:
                    for asset in ("a", "b"):
                        await client.register_data(asset, branch=branch, wait=True)
        api = f"{_root(daemon)}/api/v1"
        async with http.get(f"{api}/projects") as r:
            assert (await r.json())["result"] == ["ads", "fraud"]
        async with http.get(f"{api}/fraud/branches") as r:
            assert (await r.json())["result"] == ["main", "release.2", "user.alice"]
