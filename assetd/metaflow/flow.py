"""``ProjectFlow``: a Metaflow ``FlowSpec`` with obproject's ``self.prj``, on assetd.

As obproject's: the project comes from ``obproject.toml`` (``project = "..."``), here found
beside or above the flow file, read once when the run starts and carried to every task as
the ``project_config`` Config; a flow that has its own ``@project`` keeps it. ``project_spec``
(set by a deployment) names the deployed git branch.
"""

from __future__ import annotations

from typing import Any

from metaflow import Config, FlowMutator, FlowSpec, current, project

from assetd.metaflow.context import ProjectContext
from assetd.metaflow.scope import config_text, parse_config, resolve_scope

_contexts: dict[str, ProjectContext] = {}


class assetd_project(FlowMutator):  # type: ignore[misc]
    """Add ``@project(name=<obproject.toml's project>)`` unless the flow has a ``@project``."""

    def pre_mutate(self, mutable_flow: Any) -> None:
        """Runs when the flow's configs are known, in every process of the run."""
        if mutable_flow.has_decorator("project"):
            return
        config = dict(mutable_flow.configs).get("project_config") or {}
        name = config.get("project")
        if name:
            mutable_flow.add_decorator(project, deco_kwargs={"name": str(name)})


@assetd_project
class ProjectFlow(FlowSpec):  # type: ignore[misc]
    """Subclass this instead of ``FlowSpec``; ``self.prj`` inside a step."""

    project_config = Config("project_config", default_value=config_text, parser=parse_config)
    project_spec = Config("project_spec", default_value="{}")

    @property
    def prj(self) -> ProjectContext:
        """This task's project context (one per task, created on first use)."""
        pathspec = current.pathspec
        if not pathspec:
            raise RuntimeError("self.prj is available inside a step only")
        ctx = _contexts.get(pathspec)
        if ctx is None:
            scope = resolve_scope(dict(self.project_config or {}),
                                  dict(self.project_spec or {}),
                                  project=current.project_name,
                                  metaflow_branch=current.branch_name)
            ctx = _contexts[pathspec] = ProjectContext(self, scope, pathspec)
        return ctx
