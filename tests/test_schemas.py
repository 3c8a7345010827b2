"""Schemas: identifier patterns, typed annotations, selectors, and the checked-in exports."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import TypeAdapter, ValidationError

from assetd.schemas.envelope import CloudEvent
from assetd.schemas.export import expected_files
from assetd.schemas.ids import AliasName, AssetId, BranchId, EventId, ProjectId, parse_selector
from assetd.schemas.inbound import AssetRegistered

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
    """docs/schemas/*.json and docs/asyncapi.json match the code (run `assetd export-schemas`)."""
    stale = [str(p.relative_to(DOCS.parent)) for p, content in expected_files(DOCS).items()
             if not p.exists() or p.read_bytes() != content]
    assert not stale, f"stale generated docs, run `assetd export-schemas`: {stale}"
    extra = {p.name for p in (DOCS / "schemas").glob("*.json")} - {
        p.name for p in expected_files(DOCS) if p.parent.name == "schemas"}
    assert not extra, f"schemas for types that no longer exist: {extra}"
