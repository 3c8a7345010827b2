"""``self.prj``: obproject's project calls for one task, on assetd (CONTRACT §9).

The producer of everything a task registers is its pathspec; its ``inputs`` are the
instances the task read; the event ids derive from the pathspec and the asset (never the
attempt), so a ``@retry`` attempt that registers again gets the first attempt's instance.
"""

from __future__ import annotations

import collections
from typing import TYPE_CHECKING, Any, Literal

from assetd.metaflow import shapes
from assetd.metaflow.asset import Asset, Kind, new_client
from assetd.metaflow.scope import Scope
from assetd.metaflow.verdict import verdict

if TYPE_CHECKING:
    from assetd.client import SyncAssetClient

Wait = bool | Literal["decision"]


class ProjectContext:
    """The project, branches and asset calls of one running task."""

    def __init__(self, flow: Any, scope: Scope, pathspec: str, *,
                 client: SyncAssetClient | None = None) -> None:
        self.flow = flow
        self.project = scope.project
        self.write_branch, self.read_branch = scope.write_branch, scope.read_branch
        self.branch = self.read_branch  # as obproject's ProjectContext.branch
        self.pathspec = pathspec
        self.client = client or new_client(self.project, self.write_branch, source=pathspec)
        task = {"entity_kind": "task", "entity_id": pathspec}
        self.asset = Asset(self.project, self.read_branch, entity_ref=task, client=self.client)
        self._counts: collections.Counter[tuple[str, str]] = collections.Counter()
        where = (f"{self.project}/{self.write_branch} (read-write)"
                 if self.read_branch == self.write_branch else
                 f"read {self.project}/{self.read_branch}, write {self.project}/"
                 f"{self.write_branch}")
        print(f"assetd: {where}", flush=True)

    # -- registration -----------------------------------------------------------------------

    def register_data(self, name: str, artifact: str, annotations: dict[str, Any] | None = None,
                      tags: dict[str, Any] | None = None, description: str | None = None, *,
                      wait: Wait = True) -> Any:
        """Register the step's artifact ``self.<artifact>`` as a data instance."""
        return self._register_artifact(name, "data", artifact, annotations, tags,
                                       description, wait)

    def register_model(self, name: str, artifact: str,
                       annotations: dict[str, Any] | None = None,
                       tags: dict[str, Any] | None = None, description: str | None = None, *,
                       wait: Wait = True) -> Any:
        """Register the step's artifact ``self.<artifact>`` as a model instance; with
        ``wait="decision"`` return the rules' :class:`Verdict`."""
        return self._register_artifact(name, "model", artifact, annotations, tags,
                                       description, wait)

    def register_external_data(self, name: str, blobs: list[str], kind: str,
                               annotations: dict[str, Any] | None = None,
                               tags: dict[str, Any] | None = None,
                               description: str | None = None, *, wait: Wait = True) -> Any:
        """Register data outside Metaflow (S3 paths, tables …); ``kind`` as obproject's."""
        return self._register(name, "data", annotations, tags, description, wait,
                              blobs=list(blobs), format=kind)

    def register_external_model(self, name: str, blobs: list[str], kind: str,
                                annotations: dict[str, Any] | None = None,
                                tags: dict[str, Any] | None = None,
                                description: str | None = None, *, wait: Wait = True) -> Any:
        """Register a model outside Metaflow (a checkpoint, a Hugging Face id …)."""
        return self._register(name, "model", annotations, tags, description, wait,
                              blobs=list(blobs), format=kind)

    def _register_artifact(self, name: str, kind: Kind, artifact: str,
                           annotations: dict[str, Any] | None, tags: dict[str, Any] | None,
                           description: str | None, wait: Wait) -> Any:
        if not hasattr(self.flow, artifact):
            raise AttributeError(f"The flow doesn't have an artifact '{artifact}'. "
                                 f"Is self.{artifact} set?")
        return self._register(name, kind, annotations, tags, description, wait,
                              uri=shapes.artifact_uri(self.pathspec, artifact),
                              artifact=artifact)

    def _register(self, name: str, kind: Kind, annotations: dict[str, Any] | None,
                  tags: dict[str, Any] | None, description: str | None, wait: Wait,
                  **reference: Any) -> Any:
        n = self._next("registered", name)
        if description is not None:
            self.client.define(name, kind, description=description,
                               event_id=shapes.event_id("defined", self.pathspec, name, n))
        outcome = self.client.register(
            name, kind, annotations=annotations, tags=tags, inputs=self.asset.inputs(),
            branch=self.write_branch, event_id=shapes.event_id("registered", self.pathspec,
                                                                name, n),
            wait=bool(wait), **reference)
        if not wait:
            return outcome
        print(f"assetd: registered {kind} {name} {outcome['instance']} on "
              f"{self.project}/{self.write_branch}", flush=True)
        return verdict(outcome) if wait == "decision" else outcome

    # -- reads ------------------------------------------------------------------------------

    def get_data(self, name: str, instance: str = "latest") -> Any:
        """The artifact object of a data instance on the read branch; the task is recorded
        as its consumer and the instance becomes an input of what the task registers."""
        return self.asset.get_data(name, instance)

    def get_model(self, name: str, instance: str = "latest") -> Any:
        """The artifact object of a model instance on the read branch (as :meth:`get_data`)."""
        return self.asset.get_model(name, instance)

    # -- reports (assetd's, beyond obproject) -----------------------------------------------

    def report_quality(self, name: str, check: str, passed: bool, *,
                       instance: str = "latest", severity: str = "error",
                       metrics: dict[str, float] | None = None, details: str | None = None,
                       wait: Wait = True) -> Any:
        """Report a check's result on the write branch (``instance``: a selector this task
        read stands for the ``vN`` it got); ``wait="decision"`` returns the verdict on a
        candidate that was waiting for it."""
        outcome = self.client.report_quality(
            name, check, passed, instance=self._instance(name, instance), severity=severity,
            metrics=metrics, details=details, branch=self.write_branch, wait=bool(wait),
            event_id=shapes.event_id("quality", self.pathspec, name, check,
                                     self._next("quality", f"{name}/{check}")))
        return verdict(outcome) if wait == "decision" else outcome

    def report_drift(self, name: str, metric: str, score: float, *, instance: str = "latest",
                     reference: str | None = None, features: dict[str, float] | None = None,
                     wait: bool = True) -> Any:
        """Report a drift measurement on the write branch; over the rule's ``max`` the
        outcome's ``events`` list the ``retrain_required`` it caused."""
        return self.client.report_drift(
            name, metric, score, instance=self._instance(name, instance),
            reference=self._instance(name, reference) if reference else None,
            features=features, branch=self.write_branch, wait=wait,
            event_id=shapes.event_id("drift", self.pathspec, name, metric,
                                     self._next("drift", f"{name}/{metric}")))

    def _instance(self, name: str, selector: str) -> str:
        """A selector this task read on the write branch → the ``vN`` it got (the task then
        reports on what it saw, even if a newer instance arrived meanwhile)."""
        if self.read_branch != self.write_branch:
            return selector
        return self.asset.read_as(name, selector)

    def _next(self, action: str, key: str) -> int:
        self._counts[(action, key)] += 1
        return self._counts[(action, key)]
