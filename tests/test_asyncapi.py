"""docs/asyncapi.json: valid for the official AsyncAPI parser, complete (a channel per event type
and query method), typed (``data`` per type), self-contained, and usable by a code generator.

The Node side lives in tests/asyncapi (pinned @asyncapi/parser and @asyncapi/modelina); it is
installed with ``npm ci`` on first use. Node and npm are required: CI has them, and a missing
tool fails these tests rather than skipping them.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from assetd.schemas import wire
from assetd.schemas.api import REQUESTS
from assetd.schemas.asyncapi import PREFIX
from assetd.schemas.export import SCHEMA_DIALECT, schema_documents
from assetd.schemas.inbound import INBOUND
from assetd.schemas.outbound import OUTBOUND
from assetd.schemas.replies import REPLIES

ROOT = Path(__file__).resolve().parent.parent
DOC_PATH = ROOT / "docs" / "asyncapi.json"
NODE_DIR = Path(__file__).resolve().parent / "asyncapi"
STAMP = NODE_DIR / "node_modules" / ".assetd-package-lock.sha256"
EVENT_PARAMS = {"project", "branch", "asset"}


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"`{name}` not found on PATH: tests/test_asyncapi.py needs Node.js ≥ 18 "
                    "and npm to validate docs/asyncapi.json with the official AsyncAPI tools "
                    "(install Node.js; CI has it)", pytrace=False)
    return path


@pytest.fixture(scope="module")
def node() -> str:
    """The node binary, with tests/asyncapi/node_modules installed from package-lock.json."""
    node, npm = _tool("node"), _tool("npm")
    lock = hashlib.sha256((NODE_DIR / "package-lock.json").read_bytes()).hexdigest()
    with open(Path(tempfile.gettempdir()) / "assetd-asyncapi-npm.lock", "w") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)  # one npm ci at a time
        if not STAMP.exists() or STAMP.read_text() != lock:
            started = time.monotonic()
            # --ignore-scripts: nothing in the tree needs one (one is a telemetry ping).
            done = subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts"],
                                  cwd=NODE_DIR, capture_output=True, text=True, timeout=600,
                                  check=False)
            if done.returncode != 0:
                pytest.fail(f"npm ci in {NODE_DIR} failed ({done.returncode}):\n"
                            f"{done.stdout}\n{done.stderr}", pytrace=False)
            STAMP.write_text(lock)
            print(f"npm ci in tests/asyncapi: {time.monotonic() - started:.1f} s")
    return node


def _node(node: str, script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([node, script, str(DOC_PATH)], cwd=NODE_DIR, capture_output=True,
                          text=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DOC_PATH.read_text())
    return loaded


def _resolve(doc: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), f"not a local $ref: {ref}"
    node: Any = doc
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def _walk(value: Any) -> Any:
    if isinstance(value, dict):
        yield value
        for item in value.values():
            yield from _walk(item)
    elif isinstance(value, list):
        for item in value:
            yield from _walk(item)


def _payload(doc: dict[str, Any], channel: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The one message of a channel and its payload schema."""
    (msg_ref,) = doc["channels"][channel]["messages"].values()
    message = _resolve(doc, msg_ref["$ref"])
    return message, _resolve(doc, message["payload"]["$ref"])


def test_official_parser_accepts_the_document(node: str) -> None:
    """@asyncapi/parser parses docs/asyncapi.json with no diagnostic of severity error."""
    done = _node(node, "validate.mjs")
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    assert "valid AsyncAPI 3.0.0" in done.stdout


def test_a_channel_per_event_type_and_query(doc: dict[str, Any]) -> None:
    """In and out per type, the dead letters, a query per method and status; addresses are
    wire's subjects with {placeholders}, and every placeholder is a declared parameter."""
    channels, ops = doc["channels"], doc["operations"]
    assert doc["asyncapi"] == "3.0.0"
    assert set(doc["components"]["parameters"]) >= EVENT_PARAMS
    expected = {f"in_{t}": wire.in_subject(PREFIX, "{project}", "{branch}", "{asset}", t)
                for t in INBOUND}
    expected |= {f"out_{t}": wire.out_subject(PREFIX, "{project}", "{branch}", "{asset}", t)
                 for t in OUTBOUND}
    expected["dlq"] = wire.dlq_subject(PREFIX, "{project}", "{branch}", "{asset}", "{type}")
    expected |= {f"api_{m}": wire.api_subject(PREFIX, "{project}", m) for m in [*REQUESTS]}
    expected["api_status"] = f"{PREFIX}.api.status"
    for cid, address in expected.items():
        assert channels[cid]["address"] == address, cid
        params = set(channels[cid].get("parameters", {}))
        assert params == {p.strip("{}") for p in address.split(".") if p.startswith("{")}, cid
        if cid.startswith(("in_", "out_", "dlq")):
            assert params >= EVENT_PARAMS, cid
    assert channels["api_reply"]["address"] is None
    for t in INBOUND:
        assert ops[f"receive_{t}"]["action"] == "receive"
    for t in OUTBOUND:
        assert ops[f"send_{t}"]["action"] == "send"
    assert ops["send_dead_letter"]["action"] == "send"
    assert "daemon's point of view" in doc["info"]["description"]
    server = doc["servers"]["embedded"]
    assert (server["host"], server["protocol"]) == ("127.0.0.1:4223", "nats")
    assert "ASSETD_NATS_URL" in server["description"]


@pytest.mark.parametrize(("channel", "data_schema"), [
    ("in_asset_registered", "AssetRegistered"), ("out_asset_promoted", "AssetPromoted"),
    ("out_instance_created", "InstanceCreated"), ("in_promotion_requested", "PromotionRequested"),
    ("out_quality_gate_failed", "QualityGateFailed"),
])
def test_event_data_is_typed(doc: dict[str, Any], channel: str, data_schema: str) -> None:
    """An event's payload is the envelope with ``type`` fixed and ``data`` a $ref to the
    type's model, not ``object``."""
    message, payload = _payload(doc, channel)
    type_ = channel.split("_", 1)[1]
    assert payload["properties"]["type"]["const"] == type_
    data = payload["properties"]["data"]
    assert data["$ref"] == f"#/components/schemas/{data_schema}"
    assert _resolve(doc, data["$ref"])["title"] == data_schema
    assert message["contentType"] == wire.CLOUDEVENTS_JSON


def test_every_event_has_typed_data_and_headers(doc: dict[str, Any]) -> None:
    """Every in/out message: typed data; outbound ones carry wire.outbound_headers and
    ``source: assetd``."""
    for kind, types in (("in", INBOUND), ("out", OUTBOUND)):
        for type_, model in types.items():
            message, payload = _payload(doc, f"{kind}_{type_}")
            data = _resolve(doc, payload["properties"]["data"]["$ref"])
            assert data["title"] == model.__name__ and data["type"] == "object"
            headers = _resolve(doc, message["headers"]["$ref"])
            if kind == "out":
                assert set(headers["required"]) == set(wire.outbound_headers("x"))
                assert headers["properties"][wire.Header.CONTENT_TYPE]["const"] == \
                    wire.CLOUDEVENTS_JSON
                assert payload["properties"]["source"]["const"] == "assetd"
    message, _ = _payload(doc, "dlq")
    dlq_headers = _resolve(doc, message["headers"]["$ref"])["properties"]
    assert {wire.Header.REASON, wire.Header.ERRORS, wire.Header.INBOUND_SUBJECT,
            wire.Header.INBOUND_SEQ, wire.Header.EVENT_ID} <= set(dlq_headers)


def test_queries_are_request_reply(doc: dict[str, Any]) -> None:
    """Each query is a receive operation with its request model and a reply whose ``result``
    is that method's reply model (status: the generic ApiReply)."""
    for method in [*REQUESTS, "status"]:
        op = doc["operations"][f"answer_{method}"]
        assert op["action"] == "receive"
        assert op["reply"]["channel"] == {"$ref": "#/channels/api_reply"}
        (reply_ref,) = op["reply"]["messages"]
        reply = _resolve(doc, _resolve(doc, reply_ref["$ref"])["$ref"])
        if method in REPLIES:
            typed = _resolve(doc, reply["payload"]["$ref"])
            assert typed["properties"]["result"] == {
                "$ref": f"#/components/schemas/{REPLIES[method].__name__}"}
        else:
            assert reply["payload"] == {"$ref": "#/components/schemas/ApiReply"}
        _, request = _payload(doc, f"api_{method}")
        if method in REQUESTS:
            assert request["title"] == REQUESTS[method].__name__
        assert op["bindings"]["nats"]["queue"] == wire.API_QUEUE


def test_document_is_self_contained(doc: dict[str, Any]) -> None:
    """Every $ref is local and resolves; pydantic's $defs were hoisted into components."""
    for obj in _walk(doc):
        assert "$defs" not in obj
        assert not {"prefixItems", "unevaluatedProperties", "$dynamicRef"} & set(obj)
        if "$ref" in obj:
            _resolve(doc, obj["$ref"])


def test_json_schema_files_name_dialect_and_id() -> None:
    """Every docs/schemas file says it is draft 2020-12 and has a stable $id."""
    for name, schema in schema_documents().items():
        assert schema["$schema"] == SCHEMA_DIALECT
        assert schema["$id"] == f"https://assetd.dev/schemas/{name}"


def test_a_code_generator_makes_typed_models(node: str) -> None:
    """@asyncapi/modelina turns the document into TypeScript classes, an event's data typed."""
    done = _node(node, "models.mjs")
    assert done.returncode == 0, done.stderr
    models: dict[str, str] = json.loads(done.stdout)
    for name in ("InstanceCreated", "AssetPromoted", "AssetRegistered", "ResolveRequest",
                 "ApiReply"):
        assert f"class {name} " in models.get(name, ""), sorted(models)
    for event, data in (("InstanceCreatedEvent", "InstanceCreated"),
                        ("AssetPromotedEvent", "AssetPromoted"),
                        ("AssetRegisteredEvent", "AssetRegistered")):  # inbound: data optional
        assert re.search(rf"private _data\??: {data};", models[event]), models[event]
