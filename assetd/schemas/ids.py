"""Identifier and selector types of CONTRACT §1 and §7, enforced by pydantic."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, StringConstraints

PROJECT_RE = r"^[A-Za-z0-9_-]{1,64}$"
ASSET_RE = r"^[A-Za-z0-9_-]{1,128}$"
BRANCH_RE = r"^[A-Za-z0-9][A-Za-z0-9_./@+-]{0,127}$"
ALIAS_RE = r"^[A-Za-z][A-Za-z0-9_-]{0,63}$"
EVENT_ID_RE = r"^[\x21-\x7e]{1,128}$"
SELECTOR_RE = r"^(latest(-[0-9]{1,9})?|v[1-9][0-9]{0,9}|@?[A-Za-z][A-Za-z0-9_-]{0,63})$"
VERSION_RE = r"^v[1-9][0-9]{0,9}$"
# The registry's version columns (instance.version, alias_history.version) are INTEGER:
# 32-bit signed on PostgreSQL, so v2147483648 and above could never name an instance there
# and would fail the query instead. Refused everywhere, SQLite too, so both behave alike.
MAX_VERSION = 2**31 - 1

ProjectId = Annotated[str, StringConstraints(pattern=PROJECT_RE)]
AssetId = Annotated[str, StringConstraints(pattern=ASSET_RE)]
BranchId = Annotated[str, StringConstraints(pattern=BRANCH_RE)]
AliasName = Annotated[str, StringConstraints(pattern=ALIAS_RE)]
EventId = Annotated[str, StringConstraints(pattern=EVENT_ID_RE)]

_PROJECT = re.compile(PROJECT_RE)
_ASSET = re.compile(ASSET_RE)
_SELECTOR = re.compile(SELECTOR_RE)
_LATEST_N = re.compile(r"^latest-([0-9]{1,9})$")
_VERSION = re.compile(r"^v([1-9][0-9]{0,9})$")
_TOO_BIG = (f"version numbers go up to v{MAX_VERSION} (the registry stores them as "
            "32-bit integers)")


def is_project(value: str) -> bool:
    """Tell whether ``value`` is a valid project id (usable as a subject token)."""
    return bool(_PROJECT.match(value))


def is_asset(value: str) -> bool:
    """Tell whether ``value`` is a valid asset id (usable as a subject token)."""
    return bool(_ASSET.match(value))


def parse_selector(selector: str) -> tuple[str, int | str]:
    """Split a selector into ``("latest", back)``, ``("version", n)`` or ``("alias", name)``.

    Names starting with ``latest`` or shaped like ``v<digits>`` are never aliases.
    """
    bad = ValueError(f"invalid selector {selector!r}: use latest, latest-N, vN (N ≥ 1), @alias")
    if not _SELECTOR.match(selector):
        raise bad
    if selector == "latest":
        return ("latest", 0)
    if m := _LATEST_N.match(selector):
        return ("latest", int(m.group(1)))
    if m := _VERSION.match(selector):
        if (n := int(m.group(1))) > MAX_VERSION:
            raise ValueError(f"invalid selector {selector!r}: {_TOO_BIG}")
        return ("version", n)
    name = selector.removeprefix("@")
    if name.startswith("latest") or re.match(r"^v[0-9]+$", name):
        raise bad
    return ("alias", name)


def _check_selector(value: str) -> str:
    parse_selector(value)
    return value


def _check_version(value: str) -> str:
    if int(value[1:]) > MAX_VERSION:
        raise ValueError(f"invalid instance {value!r}: {_TOO_BIG}")
    return value


Selector = Annotated[str, StringConstraints(pattern=SELECTOR_RE), AfterValidator(_check_selector)]
# An explicit ``vN``, 1 ≤ N ≤ MAX_VERSION.
Version = Annotated[str, StringConstraints(pattern=VERSION_RE), AfterValidator(_check_version)]
