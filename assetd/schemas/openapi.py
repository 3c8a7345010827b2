"""The OpenAPI 3.1 document of the HTTP API (CONTRACT §10), built from the request models
(:data:`assetd.schemas.api.REQUESTS`) and the reply models
(:data:`assetd.schemas.replies.REPLIES`). Pure: the daemon serves what this returns, and
``assetd export-schemas`` writes it to docs/openapi.json.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from assetd.schemas.api import REQUESTS, ApiError
from assetd.schemas.asyncapi import CONTRACT_VERSION
from assetd.schemas.ids import BRANCH_RE, PROJECT_RE
from assetd.schemas.replies import REPLIES

OPENAPI_VERSION = "3.1.0"
REF = "#/components/schemas/{model}"
PREFIX = "/api/v1"
# Served over NATS only: it creates a JetStream stream, and the HTTP API is read-only.
NATS_ONLY = frozenset({"events_stream"})
HTTP_METHODS = [m for m in REQUESTS if m not in NATS_ONLY]
ERRORS = {"invalid": 400, "not_found": 404, "conflict": 409, "internal": 500}
_ERROR_TEXT = {400: "`invalid`: a bad request", 404: "`not_found`",
               409: "`conflict`", 500: "`internal`: the daemon failed", 401: "no or wrong token"}


def _schemas() -> tuple[dict[str, Any], dict[str, dict[str, str]]]:
    """Every model's schema keyed by name, and a ``$ref`` per request and reply model."""
    pairs: list[tuple[type[BaseModel], JsonSchemaMode]] = [(ApiError, "serialization")]
    pairs += [(REQUESTS[m], "validation") for m in HTTP_METHODS]
    pairs += [(REPLIES[m], "serialization") for m in HTTP_METHODS]
    refs, top = models_json_schema(pairs, ref_template=REF)
    named = {f"{m}.request": refs[(REQUESTS[m], "validation")] for m in HTTP_METHODS}
    named |= {f"{m}.reply": refs[(REPLIES[m], "serialization")] for m in HTTP_METHODS}
    named["error"] = refs[(ApiError, "serialization")]
    return top["$defs"], named


def _ok(result: dict[str, Any], description: str) -> dict[str, Any]:
    body = {"type": "object", "required": ["ok", "result"],
            "properties": {"ok": {"const": True}, "result": result}}
    return {"description": description, "content": {"application/json": {"schema": body}}}


def _responses(result: dict[str, Any], description: str) -> dict[str, Any]:
    out = {"200": _ok(result, description)}
    for status, text in _ERROR_TEXT.items():
        out[str(status)] = {"description": text, "content": {"application/json": {
            "schema": {"$ref": "#/components/schemas/ErrorReply"}}}}
    return out


def _query_parameters(request: dict[str, Any]) -> list[dict[str, Any]]:
    """Each request field as a query parameter; a map (``tags``) as ``tags[key]=value``."""
    params = []
    for name, schema in request.get("properties", {}).items():
        param: dict[str, Any] = {"name": name, "in": "query", "schema": schema,
                                 "required": name in request.get("required", [])}
        if _is_map(schema):
            param |= {"style": "deepObject", "explode": True}
        params.append(param)
    return params


def _is_map(schema: dict[str, Any]) -> bool:
    return schema.get("type") == "object" or any(_is_map(s) for s in schema.get("anyOf", []))


def _summary(model: type[BaseModel]) -> str:
    """A model's docstring as CommonMark (``x`` → `x`)."""
    return " ".join((model.__doc__ or "").replace("``", "`").split())


def _method_path(method: str, schemas: dict[str, Any], refs: dict[str, Any]) -> dict[str, Any]:
    request_ref = refs[f"{method}.request"]
    model = REQUESTS[method]
    request = schemas[request_ref["$ref"].rsplit("/", 1)[1]]
    responses = _responses(refs[f"{method}.reply"], f"the `{method}` result")
    common = {"tags": ["queries"], "summary": _summary(model), "responses": responses}
    return {
        "parameters": [{"$ref": "#/components/parameters/project"}],
        "get": {**common, "operationId": f"{method}_get",
                "parameters": _query_parameters(request)},
        "post": {**common, "operationId": f"{method}_post",
                 "requestBody": {"required": False, "content": {
                     "application/json": {"schema": request_ref}}}},
    }


def _get(operation: str, summary: str, result: dict[str, Any], description: str,
         parameters: list[dict[str, Any]]) -> dict[str, Any]:
    return {"get": {"tags": ["ui"], "operationId": operation, "summary": summary,
                    "parameters": parameters, "responses": _responses(result, description)}}


_PROJECT = {"$ref": "#/components/parameters/project"}
_NAMES = {"type": "array", "items": {"type": "string"}}
_LETTER = {"type": "object", "required": ["seq", "inbound_subject", "reason", "errors"],
           "properties": {
               "seq": {"type": "integer", "description": "its ASSETD_DLQ sequence"},
               "time": {"anyOf": [{"type": "string"}, {"type": "null"}]},
               "subject": {"type": "string"}, "inbound_subject": {"type": "string"},
               "event_id": {"anyOf": [{"type": "string"}, {"type": "null"}]},
               "reason": {"type": "string"}, "errors": {"type": "array"},
               "size": {"type": "integer", "description": "bytes of the original message"}}}


def _ui_paths() -> dict[str, Any]:
    """The routes the web UI reads besides the queries (assetd/daemon/http_live.py)."""
    branch = {"name": "branch", "in": "query", "required": False,
              "description": "only this branch's events (its real name: `user.alice`)",
              "schema": {"type": "string", "pattern": BRANCH_RE}}
    token = {"name": "token", "in": "query", "required": False,
             "description": "the bearer token, for an EventSource (it cannot send headers)",
             "schema": {"type": "string"}}
    limit = {"name": "limit", "in": "query", "required": False,
             "schema": {"type": "integer", "minimum": 1, "maximum": 200, "default": 50}}
    stream = {"get": {
        "tags": ["ui"], "operationId": "stream", "parameters": [branch, token],
        "summary": "Server-sent events: each outbound event of the project from now on "
                   "(`event: cloudevent`, `data:` its CloudEvent JSON), after an "
                   "`event: ready`; keep-alive comments every 15 s.",
        "responses": {**_responses({}, ""), "200": {
            "description": "an event stream", "content": {
                "text/event-stream": {"schema": {"type": "string"}}}}}}}
    return {
        f"{PREFIX}/projects": _get("projects", "The projects that define an asset.",
                                   _NAMES, "project names, in name order", []),
        f"{PREFIX}/{{project}}/branches": {"parameters": [_PROJECT], **_get(
            "branches", "The branches that hold an instance, exactly as named.", _NAMES,
            "branch names, in name order", [])},
        f"{PREFIX}/{{project}}/dlq": {"parameters": [_PROJECT], **_get(
            "dlq", "The project's dead letters (ASSETD_DLQ), oldest first, with their "
            "reasons; read-only.", {"type": "array", "items": _LETTER}, "dead letters",
            [limit])},
        f"{PREFIX}/{{project}}/stream": {"parameters": [_PROJECT], **stream},
    }


def openapi_document() -> dict[str, Any]:
    """The whole document: one path per query method, ``status`` and the document itself."""
    schemas, refs = _schemas()
    schemas["ErrorReply"] = {
        "type": "object", "required": ["ok", "error"],
        "properties": {"ok": {"const": False}, "error": refs["error"]}}
    paths = {f"{PREFIX}/{{project}}/{m}": _method_path(m, schemas, refs) for m in HTTP_METHODS}
    status = {"type": "object", "description": "version, uptime, rules, database, counters, "
              "DLQ depth (as the NATS `status` query)"}
    paths[f"{PREFIX}/status"] = {"get": {
        "tags": ["queries"], "operationId": "status", "summary": "The daemon's status.",
        "responses": _responses(status, "the daemon's status")}}
    paths |= _ui_paths()
    paths[f"{PREFIX}/openapi.json"] = {"get": {
        "tags": ["meta"], "operationId": "openapi", "summary": "This document.",
        "responses": {"200": {"description": "OpenAPI 3.1",
                              "content": {"application/json": {"schema": {"type": "object"}}}}}}}
    return {
        "openapi": OPENAPI_VERSION,
        "info": {"title": "assetd HTTP API", "version": CONTRACT_VERSION, "description": (
            "The queries of CONTRACT §7 over HTTP (§10), generated from the code by `assetd "
            "export-schemas`. Read-only. The same requests and `{ok, result|error}` replies "
            "as over NATS; `invalid` is HTTP 400, `not_found` 404, `conflict` 409, "
            "`internal` 500. A bearer token (ASSETD_HTTP_TOKEN) is required when one is set, "
            "and one must be set when the daemon binds beyond loopback. See docs/events.md.")},
        "servers": [{"url": "http://127.0.0.1:8080", "description": "the default bind"}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "parameters": {"project": {"name": "project", "in": "path", "required": True,
                                       "schema": {"type": "string", "pattern": PROJECT_RE}}},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{}, {"bearer": []}],
    }
