"""``Asset``: obproject's asset class (``prj.asset``, or standalone in a deployment).

Reads answer obproject's reference shape (:mod:`assetd.metaflow.shapes`); a consumption is
recorded as the entity's (a task's pathspec) with a deterministic event id, and remembered
so that what the task registers next lists it among its ``inputs``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from assetd.metaflow import shapes
from assetd.metaflow.scope import config_text, parse_config

if TYPE_CHECKING:
    from assetd.client import SyncAssetClient

Kind = Literal["data", "model"]


def new_client(project: str | None, branch: str, *, source: str | None) -> SyncAssetClient:
    """A blocking client, imported on first use: a task that never calls ``self.prj``
    (an ``end`` step) does not pay for loading it."""
    from assetd.client import SyncAssetClient

    return SyncAssetClient(project, branch, source=source)


@dataclass(frozen=True)
class Read:
    """One instance an entity read: the selector it asked for, the ``vN`` it got."""

    asset: str
    branch: str
    selector: str
    instance: str


class Asset:
    """Read, list and register the assets of one project branch (obproject's names)."""

    def __init__(self, project: str | None = None, branch: str | None = None,
                 entity_ref: dict[str, str] | None = None, read_only: bool = False, *,
                 client: SyncAssetClient | None = None) -> None:
        entity = (entity_ref or {}).get("entity_id")
        self.project = project or _project_from_files() or os.environ.get("ASSETD_PROJECT")
        self.branch = branch or os.environ.get("ASSETD_BRANCH") or "main"
        self.entity_ref = entity_ref or {"entity_kind": "user", "entity_id": entity or ""}
        self.read_only = read_only
        self.client = client or new_client(self.project, self.branch, source=entity)
        self.reads: list[Read] = []
        self._registered: dict[str, int] = {}

    # -- reads ------------------------------------------------------------------------------

    def consume_data_asset(self, name: str, instance: str = "latest") -> dict[str, Any]:
        """Resolve a data instance, record the consumption, return obproject's shape."""
        return shapes.reference(self.resolve(name, "data", instance, record=True))

    def consume_model_asset(self, name: str, instance: str = "latest") -> dict[str, Any]:
        """Resolve a model instance, record the consumption, return obproject's shape."""
        return shapes.reference(self.resolve(name, "model", instance, record=True))

    def peek_data_asset(self, name: str, instance: str = "latest") -> dict[str, Any]:
        """Resolve a data instance without recording a consumption."""
        return shapes.reference(self.resolve(name, "data", instance, record=False))

    def peek_model_asset(self, name: str, instance: str = "latest") -> dict[str, Any]:
        """Resolve a model instance without recording a consumption."""
        return shapes.reference(self.resolve(name, "model", instance, record=False))

    def get_data(self, name: str, instance: str = "latest") -> Any:
        """The artifact object of a data instance (consumption recorded)."""
        return shapes.load_artifact(self.resolve(name, "data", instance, record=True))

    def get_model(self, name: str, instance: str = "latest") -> Any:
        """The artifact object of a model instance (consumption recorded)."""
        return shapes.load_artifact(self.resolve(name, "model", instance, record=True))

    def resolve(self, name: str, kind: Kind, instance: str = "latest", *,
                record: bool = True) -> dict[str, Any]:
        """The instance as assetd answers it; a consumption is recorded unless ``read_only``
        or ``record=False``."""
        found: dict[str, Any] = self.client.peek(name, instance, branch=self.branch)
        if found.get("kind") != kind:
            other = "consume_model_asset" if kind == "data" else "consume_data_asset"
            raise ValueError(f"{name} is a {found.get('kind')} asset, not {kind}: use {other}")
        if record and not self.read_only:
            self._record(name, instance, found["instance"])
        return found

    def _record(self, name: str, selector: str, vn: str) -> None:
        entity = self.entity_ref.get("entity_id") or ""
        eid = (shapes.event_id("consumed", entity, self.branch, f"{name}@{vn}")
               if shapes.is_task(entity) else None)
        # Waits for the outcome, as obproject's consume is synchronous: lineage is recorded
        # (or the refusal raised) before the task goes on.
        self.client.send("asset_consumed", name, {"instance": vn}, branch=self.branch,
                         event_id=eid)
        self.reads.append(Read(name, self.branch, selector, vn))

    def inputs(self) -> list[dict[str, str]]:
        """Every instance read so far, once each, as ``inputs`` entries."""
        seen: dict[tuple[str, str, str], None] = {}
        for r in self.reads:
            seen.setdefault((r.asset, r.instance, r.branch))
        return [{"asset": a, "instance": i, "branch": b} for a, i, b in seen]

    def read_as(self, name: str, selector: str) -> str:
        """The ``vN`` this entity got for ``selector`` of ``name``, else the selector."""
        return next((r.instance for r in reversed(self.reads)
                     if r.asset == name and r.selector == selector), selector)

    # -- listings ---------------------------------------------------------------------------

    def list_data_assets(self, tags: dict[str, Any] | None = None) -> dict[str, Any]:
        """``{"data": [...]}``, filtered by the latest instance's tags (exact match)."""
        return shapes.listing("data", self._list("data", tags))

    def list_model_assets(self, tags: dict[str, Any] | None = None) -> dict[str, Any]:
        """``{"models": [...]}``, filtered by the latest instance's tags (exact match)."""
        return shapes.listing("model", self._list("model", tags))

    def list_data_asset_instances(self, name: str) -> Iterator[dict[str, Any]]:
        """Instances of a data asset, newest first, in obproject's shape."""
        return self._instances(name)

    def list_model_asset_instances(self, name: str) -> Iterator[dict[str, Any]]:
        """Instances of a model asset, newest first, in obproject's shape."""
        return self._instances(name)

    def _list(self, kind: Kind, tags: dict[str, Any] | None) -> list[dict[str, Any]]:
        wanted = {k: str(v) for k, v in (tags or {}).items()} or None
        found: list[dict[str, Any]] = self.client.list_assets(kind=kind, tags=wanted,
                                                              branch=self.branch)
        return found

    def _instances(self, name: str) -> Iterator[dict[str, Any]]:
        before: int | None = None
        while True:
            page = self.client.list_instances(name, limit=100, before=before, branch=self.branch)
            yield from (shapes.reference(i) for i in page["items"])
            if page.get("next") is None:
                return
            before = page["next"]

    # -- registration (obproject's low-level calls) -----------------------------------------

    def register_data_asset(self, name: str, description: str | None = None,
                            kind: str | None = None, blobs: list[str] | None = None,
                            annotations: dict[str, Any] | None = None,
                            tags: dict[str, Any] | None = None) -> Any:
        """Register an external data instance (``kind`` becomes the reference's format)."""
        return self._register_external(name, "data", description, kind, blobs, annotations,
                                       tags)

    def register_model_asset(self, name: str, description: str | None = None,
                             kind: str | None = None, blobs: list[str] | None = None,
                             annotations: dict[str, Any] | None = None,
                             tags: dict[str, Any] | None = None) -> Any:
        """Register an external model instance (``kind`` becomes the reference's format)."""
        return self._register_external(name, "model", description, kind, blobs, annotations,
                                       tags)

    def _register_external(self, name: str, asset_kind: Kind, description: str | None,
                           kind: str | None, blobs: list[str] | None,
                           annotations: dict[str, Any] | None,
                           tags: dict[str, Any] | None) -> Any:
        if self.read_only:
            return None
        if description is not None:
            self.client.define(name, asset_kind, description=description)
        entity = self.entity_ref.get("entity_id") or ""
        self._registered[name] = n = self._registered.get(name, 0) + 1
        eid = shapes.event_id("asset-registered", entity, name, n) \
            if shapes.is_task(entity) else None  # a task's retry gets the first outcome
        return self.client.register(name, asset_kind, annotations=annotations, tags=tags,
                                    blobs=blobs, format=kind, inputs=self.inputs(),
                                    branch=self.branch, event_id=eid)

    def close(self) -> None:
        """Close the connection to NATS."""
        self.client.close()


def _project_from_files() -> str | None:
    """``project`` of the obproject.toml beside or above the program (or the working
    directory), as a deployment finds it."""
    project = parse_config(config_text()).get("project")
    return str(project) if project else None
