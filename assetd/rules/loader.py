"""Read ``rules.yaml``: ``yaml.safe_load`` semantics, pydantic validation, ``FILE:LINE`` errors."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from assetd.schemas.rules import RulesFile


class RulesError(ValueError):
    """The rules file is invalid; ``errors`` holds one ``FILE:LINE: what is wrong`` per problem."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


@dataclass(frozen=True)
class LoadedRules:
    """Validated rules with where they came from."""

    rules: RulesFile
    path: str
    sha256: str


def load_rules(path: Path | str) -> LoadedRules:
    """Read and validate a rules file; raise RulesError with every problem found."""
    name = str(path)
    try:
        text = Path(path).read_bytes()
    except OSError as exc:
        raise RulesError([f"{name}:0: cannot read: {exc.strerror or exc}"]) from None
    return parse_rules(text, name)


def parse_rules(text: bytes, name: str = "<rules>") -> LoadedRules:
    """Validate rules from bytes (see :func:`load_rules`)."""
    loader = yaml.SafeLoader(text.decode("utf-8", errors="replace"))
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else 0
        problem = getattr(exc, "problem", None) or str(exc)
        raise RulesError([f"{name}:{line}: YAML: {problem}"]) from None
    finally:
        loader.dispose()
    if data is None or node is None:
        raise RulesError([f"{name}:1: the file is empty; it needs `version: 1` and `rules:`"])
    lines: dict[tuple[Any, ...], int] = {}
    _index(node, (), lines)
    try:
        rules = RulesFile.model_validate(data)
    except ValidationError as exc:
        raise RulesError([_located(name, err, lines) for err in exc.errors(include_url=False)]) \
            from None
    return LoadedRules(rules=rules, path=name, sha256=hashlib.sha256(text).hexdigest())


def _index(node: yaml.Node, path: tuple[Any, ...], lines: dict[tuple[Any, ...], int]) -> None:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            k = key.value if isinstance(key, yaml.ScalarNode) else str(key)
            lines[(*path, k)] = key.start_mark.line + 1
            _index(value, (*path, k), lines)
            lines[(*path, k)] = key.start_mark.line + 1  # the key's line names the field
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _index(item, (*path, i), lines)


def _located(name: str, err: Any, lines: dict[tuple[Any, ...], int]) -> str:
    loc = tuple(err["loc"])
    line = 1
    for n in range(len(loc), -1, -1):
        if loc[:n] in lines:
            line = lines[loc[:n]]
            break
    where = ".".join(str(p) for p in loc)
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        msg = f"unknown key {loc[-1]!r}"
    return f"{name}:{line}: {where}: {msg}" if where else f"{name}:{line}: {msg}"
