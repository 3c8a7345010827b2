"""Read ``models/*/asset_config.toml`` and ``data/*/asset_config.toml`` (obproject layout)."""

from __future__ import annotations

import hashlib
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from assetd.schemas.ids import is_asset

FOLDERS: dict[str, Literal["data", "model"]] = {"models": "model", "data": "data"}


@dataclass(frozen=True)
class Definition:
    """One asset definition read from a file."""

    asset: str
    kind: Literal["data", "model"]
    name: str | None
    description: str | None
    properties: dict[str, str]
    file: str

    def event_id(self, project: str) -> str:
        """Content-derived id: syncing an unchanged file again has no effect."""
        body = repr(sorted(asdict(self).items())).encode()
        return f"def-{project}-{self.asset}-{hashlib.sha256(body).hexdigest()[:24]}"

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


def read_definitions(root: Path) -> list[Definition]:
    """Every definition under ``root``; ValueError names the file and what is wrong."""
    found: list[Definition] = []
    for folder, kind in FOLDERS.items():
        for path in sorted(root.glob(f"{folder}/*/asset_config.toml")):
            found.append(_read(path, kind))
    return found


def _read(path: Path, kind: Literal["data", "model"]) -> Definition:
    try:
        doc = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"{path}: {exc}") from None
    asset = doc.get("id") or path.parent.name
    if not isinstance(asset, str) or not is_asset(asset):
        raise ValueError(f"{path}: id {asset!r} is not a valid asset id ([A-Za-z0-9_-]{{1,128}})")
    props = doc.get("properties", {})
    if not isinstance(props, dict):
        raise ValueError(f"{path}: [properties] must be a table")
    return Definition(
        asset=asset, kind=kind, name=_opt_str(doc.get("name")),
        description=_opt_str(doc.get("description")),
        properties={str(k): str(v) for k, v in props.items()}, file=str(path),
    )


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)
