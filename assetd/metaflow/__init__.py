"""Metaflow integration (extra ``assetd[metaflow]``): obproject's project calls on assetd.

    from assetd.metaflow import ProjectFlow      # instead of: from obproject import ProjectFlow

See docs/metaflow.md. ``ProjectFlow`` imports Metaflow; the shapes, scope and verdict
helpers do not need it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from assetd.metaflow.shapes import load_artifact
from assetd.metaflow.verdict import Verdict

if TYPE_CHECKING:
    from assetd.metaflow.asset import Asset
    from assetd.metaflow.context import ProjectContext
    from assetd.metaflow.flow import ProjectFlow

__all__ = ["Asset", "ProjectContext", "ProjectFlow", "Verdict", "load_artifact"]


def __getattr__(name: str) -> Any:
    """Import Metaflow (and the client) only when a name that needs it is asked for."""
    if name == "ProjectFlow":
        from assetd.metaflow.flow import ProjectFlow

        return ProjectFlow
    if name == "ProjectContext":
        from assetd.metaflow.context import ProjectContext

        return ProjectContext
    if name == "Asset":
        from assetd.metaflow.asset import Asset

        return Asset
    raise AttributeError(f"module 'assetd.metaflow' has no attribute {name!r}")
