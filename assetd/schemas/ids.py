"""Identifier and selector types of CONTRACT §1 and §7, enforced by pydantic."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import StringConstraints

PROJECT_RE = r"^[A-Za-z0-9_-]{1,64}$"
ASSET_RE = r"^[A-Za-z0-9_-]{1,128}$"
BRANCH_RE = r"^[A-Za-z0-9][A-Za-z0-9_./@+-]{0,127}$"
ALIAS_RE = r"^[A-Za-z][A-Za-z0-9_-]{0,63}$"
EVENT_ID_RE = r"^[\x21-\x7e]{1,128}$"
SELECTOR_RE = r"^(latest(-[0-9]{1,9})?|v[1-9][0-9]{0,9}|@?[A-Za-z][A-Za-z0-9_-]{0,63})$"

ProjectId = Annotated[str, StringConstraints(pattern=PROJECT_RE)]
AssetId = Annotated[str, StringConstraints(pattern=ASSET_RE)]
BranchId = Annotated[str, StringConstraints(pattern=BRANCH_RE)]
AliasName = Annotated[str, StringConstraints(pattern=ALIAS_RE)]
EventId = Annotated[str, StringConstraints(pattern=EVENT_ID_RE)]
Selector = Annotated[str, StringConstraints(pattern=SELECTOR_RE)]

_PROJECT = re.compile(PROJECT_RE)
_ASSET = re.compile(ASSET_RE)
_SELECTOR = re.compile(SELECTOR_RE)


def is_project(value: str) -> bool:
    """Tell whether ``value`` is a valid project id (usable as a subject token)."""
    return bool(_PROJECT.match(value))


def is_asset(value: str) -> bool:
    """Tell whether ``value`` is a valid asset id (usable as a subject token)."""
    return bool(_ASSET.match(value))


def parse_selector(selector: str) -> tuple[str, int | str]:
    """Split a selector into ``("latest", back)``, ``("version", n)`` or ``("alias", name)``."""
    if not _SELECTOR.match(selector):
        raise ValueError(f"invalid selector {selector!r}: use latest, latest-N, vN, @alias")
    if selector == "latest":
        return ("latest", 0)
    if selector.startswith("latest-"):
        return ("latest", int(selector[len("latest-") :]))
    if selector[0] == "v" and selector[1:].isdigit():
        return ("version", int(selector[1:]))
    return ("alias", selector.removeprefix("@"))
