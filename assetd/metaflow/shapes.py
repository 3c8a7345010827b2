"""assetd's instances in obproject's shapes, and the Metaflow artifact an instance points at.

obproject's asset API answers an instance as ``{id, created_at, created_by: {entity_kind,
entity_id}, asset: {id, kind}, data_properties|model_properties: {data_kind|model_kind,
blobs, annotations}, tags: [{key, value}]}``; code written against it reads these keys.
assetd's own fields (``instance``, ``branch``, ``reference``, ``aliases`` …) ride along.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

SCHEME = "metaflow://"
_PATHSPEC = re.compile(r"^[^/\s]+/[^/\s]+/[^/\s]+/[^/\s]+$")  # flow/run/step/task
MAX_ID = 128


def artifact_uri(pathspec: str, artifact: str) -> str:
    """``metaflow://<task pathspec>/<artifact>``: where a registered artifact lives."""
    return f"{SCHEME}{pathspec}/{artifact}"


def is_task(entity: str | None) -> bool:
    """Whether a producer or consumer names a Metaflow task (flow/run/step/task)."""
    return bool(entity) and _PATHSPEC.match(entity or "") is not None


def event_id(action: str, pathspec: str, *parts: object) -> str:
    """A deterministic event id for what a task does: the same on every attempt (a task's
    pathspec has no attempt number), so a retried attempt gets the first outcome back."""
    readable = ":".join([f"mf-{action}", pathspec, *map(str, parts)])
    if len(readable) <= MAX_ID and readable.isascii() and readable.isprintable() \
            and " " not in readable:
        return readable
    return f"mf-{action}:{hashlib.sha256(readable.encode()).hexdigest()[:48]}"


def reference(inst: dict[str, Any]) -> dict[str, Any]:
    """An instance (as ``resolve`` answers it) in obproject's reference shape."""
    kind = inst.get("kind", "data")
    ref = inst.get("reference") or {}
    artifact = ref.get("artifact")
    annotations = dict(inst.get("annotations") or {})
    if artifact:  # obproject keeps the artifact name among the annotations
        annotations = {"artifact": artifact, **annotations}
    blobs = list(ref.get("blobs") or []) or ([ref["uri"]] if ref.get("uri") else [])
    props = {f"{kind}_kind": "artifact" if artifact else (ref.get("format") or "external"),
             "blobs": blobs, "annotations": annotations}
    producer = inst.get("producer") or ""
    return {
        "id": inst.get("instance"),
        "created_at": inst.get("created_at"),
        "created_by": {"entity_kind": "task" if is_task(producer) else "user",
                       "entity_id": producer},
        "asset": {"id": inst.get("asset"), "kind": kind},
        "data_properties" if kind == "data" else "model_properties": props,
        "tags": [{"key": k, "value": v} for k, v in (inst.get("tags") or {}).items()],
        **{k: inst[k] for k in ("instance", "version", "branch", "state", "validity",
                                "aliases", "reference", "inputs") if k in inst},
    }


def listing(kind: str, summaries: list[dict[str, Any]]) -> dict[str, Any]:
    """An ``assets`` result as obproject's ``list_data_assets`` / ``list_model_assets``:
    ``{"data": [...]}`` or ``{"models": [...]}``."""
    items = [{"id": s["asset"], "name": s.get("name") or s["asset"],
              "asset": {"id": s["asset"], "kind": s["kind"]},
              **{k: v for k, v in s.items() if k != "asset"}} for s in summaries]
    return {"data" if kind == "data" else "models": items}


def artifact_location(inst: dict[str, Any]) -> tuple[str, str] | None:
    """``(task pathspec, artifact name)`` of an instance that points at a Metaflow artifact."""
    ref = inst.get("reference") or {}
    uri = ref.get("uri") or ""
    if uri.startswith(SCHEME):
        pathspec, _, name = uri[len(SCHEME):].rpartition("/")
        if is_task(pathspec) and name:
            return pathspec, name
    producer = inst.get("producer") or (inst.get("created_by") or {}).get("entity_id")
    if ref.get("artifact") and is_task(producer):
        return str(producer), str(ref["artifact"])
    return None


def load_artifact(inst: dict[str, Any]) -> Any:
    """The artifact object an instance points at (as assetd answers it, or in obproject's
    shape), read with the Metaflow client in any namespace; AttributeError for an instance
    that is no Metaflow artifact."""
    found = artifact_location(inst)
    name = f"{inst.get('asset')} {inst.get('instance')}"
    if found is None:
        raise AttributeError(
            f"{name} is not a Metaflow artifact (reference {inst.get('reference') or {}}); "
            "read its blobs with prj.asset.consume_data_asset()/consume_model_asset()")
    pathspec, artifact = found
    from metaflow import Task

    task = Task(pathspec, _namespace_check=False)
    try:
        return task[artifact].data
    except KeyError:
        raise AttributeError(f"{name}: task {pathspec} has no artifact {artifact!r} (did the "
                             "task fail after registering it?)") from None
