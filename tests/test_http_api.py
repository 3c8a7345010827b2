"""The HTTP API of CONTRACT §10 against a real daemon: each method answers like its NATS twin,
errors map onto HTTP statuses, the token guards it, and it stays read-only."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from assetd.client import AssetClient
from assetd.daemon.app import Daemon
from assetd.daemon.embedded import EmbeddedNats
from assetd.schemas.export import render
from assetd.schemas.openapi import HTTP_METHODS, openapi_document
from tests.conftest import http_daemon_settings, running_daemon
from tests.helpers import relayed

DOCS = Path(__file__).resolve().parent.parent / "docs"
TOKEN = "s3cret-token"


@pytest.fixture
async def api(nc: Any, nats_server: EmbeddedNats, tmp_path: Path) -> AsyncIterator[Daemon]:
    """A daemon with its HTTP server (and so the API) on a free loopback port."""
    async with running_daemon(http_daemon_settings(nats_server, tmp_path)) as d:
        yield d


def _base(daemon: Daemon) -> str:
    return f"http://127.0.0.1:{daemon.settings.http_port}/api/v1"


async def _fill(daemon: Daemon) -> AssetClient:
    client = AssetClient("fraud", settings=daemon.settings, timeout=15)
    await client.connect()
    await client.register_data("raw", tags={"team": "risk"}, wait=True)
    for f1 in (0.8, 0.9):
        await client.register_model("fraud_model", annotations={"f1_score": f1},
                                    inputs=["raw"], wait=True)
    return client


REQUESTS: dict[str, dict[str, Any]] = {
    "resolve": {"asset": "fraud_model", "instance": "v1", "allow_invalid": True},
    "assets": {"tags": {"team": "risk"}},
    "instances": {"asset": "fraud_model", "limit": 1, "before": 2},
    "lineage": {"asset": "fraud_model", "direction": "upstream", "depth": 2},
    "compare": {"asset": "fraud_model", "a": "v1", "b": "v2"},
    "decisions": {"asset": "fraud_model", "limit": 5},
    "timeline": {"asset": "fraud_model"},
    "event": {"id": "never-published"},
}


def _params(fields: dict[str, Any]) -> dict[str, str]:
    """A request as GET parameters: maps as ``key[sub]=value``, booleans as true/false."""
    out: dict[str, str] = {}
    for key, value in fields.items():
        if isinstance(value, dict):
            out |= {f"{key}[{k}]": str(v) for k, v in value.items()}
        else:
            out[key] = str(value).lower() if isinstance(value, bool) else str(value)
    return out


async def test_every_method_answers_like_its_nats_twin(api: Daemon, js: Any,
                                                       http: aiohttp.ClientSession) -> None:
    """GET with parameters and POST with JSON answer each method with the NATS query's
    result, and publish nothing."""
    assert set(REQUESTS) == set(HTTP_METHODS)
    client = await _fill(api)
    try:  # an outcome is visible at commit; its outbound events follow through the relay
        await relayed(client)
        published = (await js.stream_info("ASSETD_OUT")).state.messages
        for method, fields in REQUESTS.items():
            nats = await client.request(method, **fields)
            url = f"{_base(api)}/fraud/{method}"
            async with http.get(url, params=_params(fields)) as r:
                assert (r.status, await r.json()) == (200, {"ok": True, "result": nats}), method
            async with http.post(url, json=fields) as r:
                assert (r.status, await r.json()) == (200, {"ok": True, "result": nats}), method
        async with http.get(f"{_base(api)}/status") as r:
            body = await r.json()
        assert r.status == 200 and body["ok"] is True
        assert set(body["result"]) == set(await client.status())
        assert (await js.stream_info("ASSETD_OUT")).state.messages == published
    finally:
        await client.close()


@pytest.mark.parametrize(("method", "how", "status", "code"), [
    ("resolve", {"params": {"asset": "fraud_model", "instance": "v9"}}, 404, "not_found"),
    ("resolve", {"params": {"asset": "nobody"}}, 404, "not_found"),
    ("resolve", {"params": {"asset": "fraud_model", "instance": "v0"}}, 400, "invalid"),
    ("instances", {"params": {"asset": "fraud_model", "limit": "501"}}, 400, "invalid"),
    ("resolve", {"params": {"asset": "fraud_model", "extra": "1"}}, 400, "invalid"),
    ("resolve", {"params": [("asset", "a"), ("asset", "b")]}, 400, "invalid"),
    ("resolve", {"data": b"{oops"}, 400, "invalid"),
    ("explode", {"params": {}}, 404, "not_found"),
    ("events_stream", {"params": {}}, 404, "not_found"),
])
async def test_errors_map_to_http_statuses(api: Daemon, http: aiohttp.ClientSession,
                                           method: str, how: dict[str, Any], status: int,
                                           code: str) -> None:
    """not_found is 404 and invalid 400, with the query's ``{ok: false, error}`` body; an
    unknown or NATS-only method is 404."""
    verb = http.post if "data" in how else http.get
    async with verb(f"{_base(api)}/fraud/{method}", **how) as r:
        body = await r.json()
    assert (r.status, body["ok"], body["error"]["code"]) == (status, False, code), body


async def test_a_bad_project_name_is_invalid(api: Daemon, http: aiohttp.ClientSession) -> None:
    """A project that is no project name answers 400."""
    async with http.get(f"{_base(api)}/a%2Ab/assets") as r:
        assert r.status == 400 and (await r.json())["error"]["code"] == "invalid"


async def test_openapi_is_served_and_matches_docs(api: Daemon,
                                                  http: aiohttp.ClientSession) -> None:
    """/api/v1/openapi.json serves the generated document, the one in docs/openapi.json."""
    async with http.get(f"{_base(api)}/openapi.json") as r:
        served = await r.read()
    assert r.status == 200 and served == render(openapi_document())
    assert served == (DOCS / "openapi.json").read_bytes()


async def test_the_token_is_required_once_set(nc: Any, nats_server: EmbeddedNats,
                                              tmp_path: Path,
                                              http: aiohttp.ClientSession) -> None:
    """With ASSETD_HTTP_TOKEN set, /api/v1 answers 401 without it or with another token and
    200 with it; the probes and metrics stay open."""
    settings = http_daemon_settings(nats_server, tmp_path, http_token=TOKEN)
    async with running_daemon(settings) as daemon:
        url = f"{_base(daemon)}/fraud/assets"
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN},
                        {"Authorization": f"Basic {TOKEN}"}):
            async with http.get(url, headers=headers) as r:
                assert r.status == 401 and r.headers["WWW-Authenticate"].startswith("Bearer")
        for path in ("/fraud/assets", "/status", "/openapi.json"):
            async with http.get(f"{_base(daemon)}{path}",
                                headers={"Authorization": f"Bearer {TOKEN}"}) as r:
                assert r.status == 200, path
        async with http.get(f"{_base(daemon)}/status") as r:
            assert r.status == 401
        port = daemon.settings.http_port
        for path in ("/healthz", "/readyz", "/metrics"):
            async with http.get(f"http://127.0.0.1:{port}{path}") as r:
                assert r.status == 200, path


async def test_a_list_is_the_field_repeated(api: Daemon, http: aiohttp.ClientSession) -> None:
    """``where`` given once or repeated over GET filters as the JSON list does over POST."""
    client = await _fill(api)
    await client.close()
    url = f"{_base(api)}/fraud/instances"
    for params, versions in ([("asset", "fraud_model"), ("where", "f1_score>=0.85")], [2]), \
            ([("asset", "fraud_model"), ("where", "f1_score>0"), ("where", "f1_score<0.85")],
             [1]):
        async with http.get(url, params=params) as r:
            body = await r.json()
        assert r.status == 200 and [i["version"] for i in body["result"]["items"]] == versions
