"""Project and branches as obproject resolves them (CONTRACT §9), with exact branch names.

- local run: write the ``@project`` branch (``user.<name>``; ``test.x`` with ``--branch x``,
  ``prod`` with ``--production``);
- deployed with a ``project_spec``: write its git branch (``project_branch``);
- read: ``[dev-assets] branch`` when set and the write branch is not ``main``, else the
  write branch.

obproject lowercases branch names and replaces ``.``, ``@`` and ``/`` with ``_`` (its API
allows no more); assetd keeps them as they are (``user.alice``), as CONTRACT §1 allows them.
"""

from __future__ import annotations

import os
import sys
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CONFIG_FILE = "obproject.toml"


@dataclass(frozen=True)
class Scope:
    """Where a task's assets are read and written."""

    project: str
    write_branch: str
    read_branch: str


def find_config(start: Path) -> Path | None:
    """``obproject.toml`` in ``start`` or the nearest directory above it."""
    start = start.resolve()
    for folder in (start, *start.parents):
        candidate = folder / CONFIG_FILE
        if candidate.is_file():
            return candidate
    return None


def config_text(_ctx: Any = None) -> str:
    """The text of the ``obproject.toml`` beside or above the flow file (else the working
    directory); empty when there is none. A Metaflow ``Config`` default: read once when the
    run starts, then carried to every task, also remote ones."""
    main = sys.argv[0] if sys.argv and sys.argv[0] else ""
    for start in (Path(main).parent if main.endswith(".py") else None, Path(os.getcwd())):
        if start is not None and (found := find_config(start)) is not None:
            return found.read_text()
    return ""


def parse_config(text: str) -> dict[str, Any]:
    """``obproject.toml`` → dict (empty text → empty dict)."""
    return tomllib.loads(text)


def deployed_branch(project_spec: Mapping[str, Any] | None) -> str | None:
    """The git branch a deployment recorded in its ``project_spec``, as obproject reads it."""
    if not project_spec:
        return None
    spec = project_spec.get("spec", project_spec)
    branch = (spec.get("project_branch") if isinstance(spec, Mapping) else None) \
        or project_spec.get("branch")
    return str(branch) if branch else None


def read_branch(write_branch: str, project_config: Mapping[str, Any]) -> str:
    """``[dev-assets] branch`` when set and the write branch is not ``main``, else the write
    branch itself."""
    dev = project_config.get("dev-assets") or {}
    wanted = dev.get("branch") if isinstance(dev, Mapping) else None
    if wanted and write_branch != "main":
        return str(wanted)
    return write_branch


def resolve_scope(project_config: Mapping[str, Any], project_spec: Mapping[str, Any] | None,
                  *, project: str | None, metaflow_branch: str | None) -> Scope:
    """The scope of a task: ``project`` and ``metaflow_branch`` come from ``@project``
    (``current.project_name``/``branch_name``), which ProjectFlow sets from obproject.toml
    unless the flow has its own ``@project``."""
    name = project or project_config.get("project")
    if not name:
        raise ValueError("no project: put obproject.toml (project = \"...\") beside or above "
                         "the flow, or decorate the flow with @project(name=...)")
    write = deployed_branch(project_spec) or metaflow_branch
    if not write:
        raise ValueError("no branch: run the flow with @project (ProjectFlow adds it from "
                         "obproject.toml)")
    return Scope(str(name), write, read_branch(write, project_config))
