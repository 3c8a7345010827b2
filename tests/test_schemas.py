"""Schemas: identifier patterns, typed annotations, selectors, and the checked-in exports."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from assetd.schemas.envelope import CloudEvent
from assetd.schemas.export import expected_files
from assetd.schemas.ids import AliasName, AssetId, BranchId, EventId, ProjectId, parse_selector
from assetd.schemas.inbound import AssetRegistered
from assetd.schemas.openapi import HTTP_METHODS, openapi_document

DOCS = Path(__file__).resolve().parent.parent / "docs"


@pytest.mark.parametrize(("typ", "good", "bad"), [
    (ProjectId, ["fraud", "a-b_C9", "x" * 64], ["", "a.b", "a*", "a>", "$sys", "a b", "x" * 65]),
    (AssetId, ["fraud_model", "x" * 128], ["a.b", "a*b", ">", "$x", "x" * 129]),
    (BranchId, ["main", "user.alice", "feature/x", "a@b+c"], ["", ".x", "-x", "a b", "a*"]),
    (AliasName, ["champion", "c-1"], ["1st", "", "a.b"]),
    (EventId, ["abc", "run/1:step~2", "x" * 128], ["", "a b", "x" * 129, "é"]),
])
def test_identifier_patterns(typ: object, good: list[str], bad: list[str]) -> None:
    """Identifiers of CONTRACT §1 accept exactly their pattern; nothing is sanitized."""
    adapter = TypeAdapter(typ)
    for value in good:
        assert adapter.validate_python(value) == value
    for value in bad:
        with pytest.raises(ValidationError):
            adapter.validate_python(value)


@pytest.mark.parametrize(("selector", "parsed"), [
    ("latest", ("latest", 0)), ("latest-2", ("latest", 2)), ("v12", ("version", 12)),
    ("@champion", ("alias", "champion")), ("staging", ("alias", "staging")),
])
def test_selectors_parse(selector: str, parsed: tuple[str, object]) -> None:
    """Every selector form of CONTRACT §7 parses to its meaning."""
    assert parse_selector(selector) == parsed


@pytest.mark.parametrize("selector", ["v0", "latest-x", "@latest", "@v3", "@", "a.b", "latest-"])
def test_bad_selectors_are_refused(selector: str) -> None:
    """Malformed or reserved selectors raise instead of being guessed at."""
    with pytest.raises(ValueError):
        parse_selector(selector)


def test_annotations_keep_json_types() -> None:
    """A float stays a float, an int an int, a bool a bool (no lossy coercion)."""
    data = AssetRegistered.model_validate_json(
        '{"kind": "model", "annotations": {"f": 1.0, "i": 2, "b": true, "s": "3", "n": null}}')
    assert data.annotations == {"f": 1.0, "i": 2, "b": True, "s": "3", "n": None}
    assert [type(data.annotations[k]) for k in "fibs"] == [float, int, bool, str]


def test_envelope_defaults_and_extensions() -> None:
    """``branch`` defaults to main; CloudEvents extensions are allowed on the envelope."""
    ev = CloudEvent.model_validate({"specversion": "1.0", "id": "1", "source": "s",
                                    "type": "asset_registered", "subject": "a", "project": "p",
                                    "data": {}, "traceparent": "00-abc"})
    assert ev.branch == "main" and ev.model_extra == {"traceparent": "00-abc"}


def test_checked_in_schemas_and_asyncapi_are_current() -> None:
    """docs/schemas/*.json, docs/asyncapi.json and docs/openapi.json match the code (run
    `assetd export-schemas`)."""
    assert DOCS / "openapi.json" in expected_files(DOCS)
    stale = [str(p.relative_to(DOCS.parent)) for p, content in expected_files(DOCS).items()
             if not p.exists() or p.read_bytes() != content]
    assert not stale, f"stale generated docs, run `assetd export-schemas`: {stale}"
    extra = {p.name for p in (DOCS / "schemas").glob("*.json")} - {
        p.name for p in expected_files(DOCS) if p.parent.name == "schemas"}
    assert not extra, f"schemas for types that no longer exist: {extra}"


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [r for v in node.values() for r in _refs(v)]
    return [r for v in node for r in _refs(v)] if isinstance(node, list) else []


def test_openapi_document_is_complete_and_self_contained() -> None:
    """The OpenAPI 3.1 document has a GET and a POST per HTTP method, status, and every
    ``$ref`` in it points at something inside it."""
    doc = openapi_document()
    assert doc["openapi"] == "3.1.0"
    for method in HTTP_METHODS:
        assert {"get", "post"} <= set(doc["paths"][f"/api/v1/{{project}}/{method}"])
    assert "get" in doc["paths"]["/api/v1/status"]
    for ref in _refs(doc):
        node: Any = doc
        for part in ref.removeprefix("#/").split("/"):
            node = node[part]
