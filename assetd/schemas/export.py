"""Export JSON Schemas of every event, the AsyncAPI document (NATS) and the OpenAPI
document (HTTP) into ``docs/``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from assetd.schemas.api import REQUESTS, ApiReply
from assetd.schemas.asyncapi import asyncapi_document
from assetd.schemas.envelope import CloudEvent
from assetd.schemas.inbound import INBOUND
from assetd.schemas.openapi import openapi_document
from assetd.schemas.outbound import OUTBOUND

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_ID = "https://assetd.dev/schemas/{name}"


def schema_documents() -> dict[str, dict[str, Any]]:
    """File name → JSON Schema, for the envelope, every event's data and every query; each
    names its dialect (``$schema``) and a stable ``$id``."""
    docs: dict[str, dict[str, Any]] = {"envelope.json": CloudEvent.model_json_schema()}
    for name, model in INBOUND.items():
        docs[f"in.{name}.json"] = model.model_json_schema()
    for name, out_model in OUTBOUND.items():
        docs[f"out.{name}.json"] = out_model.model_json_schema(by_alias=True)
    for name, req in REQUESTS.items():
        docs[f"api.{name}.request.json"] = req.model_json_schema()
    docs["api.reply.json"] = ApiReply.model_json_schema()
    return {name: {"$schema": SCHEMA_DIALECT, "$id": SCHEMA_ID.format(name=name), **schema}
            for name, schema in docs.items()}


def render(doc: dict[str, Any]) -> bytes:
    """Stable, diff-friendly JSON."""
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"


def expected_files(docs_dir: Path) -> dict[Path, bytes]:
    """Every generated file and its content."""
    files = {docs_dir / "schemas" / n: render(d) for n, d in schema_documents().items()}
    files[docs_dir / "asyncapi.json"] = render(asyncapi_document())
    files[docs_dir / "openapi.json"] = render(openapi_document())
    return files


def write_all(docs_dir: Path) -> list[Path]:
    """Write the generated files; return their paths."""
    files = expected_files(docs_dir)
    for path, content in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    return sorted(files)
