"""Read ``rules.yaml``: ``yaml.safe_load`` semantics, pydantic validation, ``FILE:LINE`` errors.

A rules file is bounded before it can cost much: its size is checked before it is read, the
YAML document is measured while it is composed (every node, an alias counted as the whole
node it names, and the nesting depth) before anything is constructed or validated, and the
number of rules is checked before the rules are validated. Each refusal is one
``FILE:LINE: …`` line naming the limit. A mapping that repeats a key is refused (YAML would
keep the last value silently), and a rule that an earlier rule shadows is a warning.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from yaml.composer import ComposerError
from yaml.constructor import ConstructorError

from assetd.rules.coverage import dead_rules
from assetd.schemas.rules import RulesFile

MAX_BYTES = 1024 * 1024
"""Largest rules file read, in bytes (checked before reading)."""
MAX_NODES = 100_000
"""Most YAML nodes in the document, each use of an alias counted as the whole node it names
(a ``billion laughs`` document is refused while it is composed, before any expansion)."""
MAX_DEPTH = 64
"""Deepest nesting of YAML collections, through aliases too (a valid file needs 6)."""
MAX_RULES = 1_000
"""Most rules in one file (rules are matched first-match, one after the other)."""
MAX_ERRORS = 100
"""Most validation errors reported for one file; a last line counts the others."""


class RulesError(ValueError):
    """The rules file is invalid; ``errors`` holds one ``FILE:LINE: what is wrong`` per problem."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


@dataclass(frozen=True)
class LoadedRules:
    """Validated rules with where they came from, and ``FILE:LINE: warning: …`` lines (a rule
    that can never match)."""

    rules: RulesFile
    path: str
    sha256: str
    warnings: tuple[str, ...] = ()


def load_rules(path: Path | str, *, max_bytes: int = MAX_BYTES, max_nodes: int = MAX_NODES,
               max_depth: int = MAX_DEPTH, max_rules: int = MAX_RULES) -> LoadedRules:
    """Read and validate a rules file; raise RulesError with every problem found."""
    name = str(path)
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size > max_bytes:
                raise RulesError([_too_big(name, size, max_bytes)])
            text = fh.read(max_bytes + 1)  # a file that grows, or a device, stops here
    except OSError as exc:
        raise RulesError([f"{name}:0: cannot read: {exc.strerror or exc}"]) from None
    return parse_rules(text, name, max_bytes=max_bytes, max_nodes=max_nodes,
                       max_depth=max_depth, max_rules=max_rules)


def parse_rules(text: bytes, name: str = "<rules>", *, max_bytes: int = MAX_BYTES,
                max_nodes: int = MAX_NODES, max_depth: int = MAX_DEPTH,
                max_rules: int = MAX_RULES) -> LoadedRules:
    """Validate rules from bytes (see :func:`load_rules`)."""
    if len(text) > max_bytes:
        raise RulesError([_too_big(name, len(text), max_bytes, more=True)])
    loader = _BoundedLoader(text.decode("utf-8", errors="replace"), max_nodes, max_depth)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else 0
        problem = getattr(exc, "problem", None) or str(exc)
        raise RulesError([f"{name}:{line}: YAML: {problem}"]) from None
    except RecursionError:  # not expected within max_depth; never a traceback though
        raise RulesError([f"{name}:0: YAML: nested too deeply for a rules file"]) from None
    finally:
        loader.dispose()
    if data is None or node is None:
        raise RulesError([f"{name}:1: the file is empty; it needs `version: 1` and `rules:`"])
    lines: dict[tuple[Any, ...], int] = {}
    _index(node, (), lines)
    rules = data.get("rules") if isinstance(data, dict) else None
    if isinstance(rules, list) and len(rules) > max_rules:
        line = lines.get(("rules", max_rules), lines.get(("rules",), 1))
        raise RulesError([f"{name}:{line}: rules: {len(rules)} rules, over the limit of "
                          f"{max_rules} rules in a rules file"])
    try:
        validated = RulesFile.model_validate(data)
    except ValidationError as exc:
        errs = exc.errors(include_url=False)
        out = [_located(name, err, lines) for err in errs[:MAX_ERRORS]]
        if len(errs) > MAX_ERRORS:
            out.append(f"{name}:{_line(errs[MAX_ERRORS], lines)}: and "
                       f"{len(errs) - MAX_ERRORS} more errors (at most {MAX_ERRORS} are listed)")
        raise RulesError(out) from None
    return LoadedRules(rules=validated, path=name, sha256=hashlib.sha256(text).hexdigest(),
                       warnings=_dead_warnings(name, validated, lines))


def _dead_warnings(name: str, rules: RulesFile, lines: dict[tuple[Any, ...], int]
                   ) -> tuple[str, ...]:
    """One warning per rule an earlier rule shadows (see :mod:`assetd.rules.coverage`)."""
    out = []
    for dead, by in dead_rules(rules.rules):
        line, by_line = lines.get(("rules", dead), 1), lines.get(("rules", by), 1)
        out.append(f"{name}:{line}: warning: rule {rules.rules[dead].asset} (rules[{dead}]) "
                   f'can never match: rules[{by}] ("{rules.rules[by].asset}", line {by_line}) '
                   "matches every asset and branch it matches")
    return tuple(out)


def _too_big(name: str, size: int, limit: int, more: bool = False) -> str:
    return (f"{name}:0: the file is {'over ' if more else ''}{size} bytes, over the limit "
            f"of {limit} bytes for a rules file")


class _BoundedLoader(yaml.SafeLoader):
    """``SafeLoader`` that refuses, while composing, a document over ``max_nodes`` nodes
    (an alias counts as every node of what it names, at each use) or nested deeper than
    ``max_depth`` (through aliases too), and a self-referencing alias.

    PyYAML composes an alias as a shared reference, so a few hundred bytes of nested
    aliases compose fine; the blow-up comes later, from everything that walks the data as a
    tree (the line index, pydantic). Measuring the tree here bounds all of them.
    """

    def __init__(self, stream: str, max_nodes: int, max_depth: int) -> None:
        super().__init__(stream)
        self.max_nodes, self.max_depth = max_nodes, max_depth
        self.nodes = 0
        self.depth = 0
        self.deepest = 0
        self.measured: dict[str, tuple[int, int]] = {}  # anchor → (nodes, depth below it)
        self.unique: set[int] = set()  # ids of the mappings whose keys were checked

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        event: Any = self.peek_event()  # type: ignore[no-untyped-call]
        if isinstance(event, yaml.AliasEvent):
            anchor = event.anchor
            if anchor in self.anchors:
                if anchor not in self.measured:
                    raise _refused(f"alias *{anchor} is used inside the node it names; a "
                                   "rules file cannot refer to itself", event)
                nodes, below = self.measured[anchor]
                self._count(nodes, self.depth + below, event)
            return super().compose_node(parent, index)
        self._count(1, self.depth, event)
        start, outer_deepest = self.nodes - 1, self.deepest
        self.deepest = self.depth
        self.depth += 1
        try:
            node = super().compose_node(parent, index)
        finally:
            self.depth -= 1
        if event.anchor is not None:
            self.measured[event.anchor] = (self.nodes - start, self.deepest - self.depth)
        self.deepest = max(self.deepest, outer_deepest)
        return node

    def _count(self, nodes: int, depth: int, event: Any) -> None:
        self.nodes += nodes
        self.deepest = max(self.deepest, depth)
        if self.nodes > self.max_nodes:
            raise _refused(f"more than {self.max_nodes} nodes (each use of an alias counts "
                           "every node it names), over the limit for a rules file", event)
        if depth >= self.max_depth:
            raise _refused(f"nested deeper than {self.max_depth} levels (through aliases "
                           "too), over the limit for a rules file", event)

    def flatten_mapping(self, node: yaml.MappingNode) -> None:
        """Refuse a key given twice in one mapping (``<<`` merges may still be overridden)."""
        if id(node) not in self.unique:  # flattening rewrites the node: check it once
            self.unique.add(id(node))
            first: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node)
                try:
                    if key in first:
                        raise ConstructorError(None, None, f"duplicate key {key!r} (first at "
                                               f"line {first[key]})", key_node.start_mark)
                    first[key] = key_node.start_mark.line + 1
                except TypeError:  # an unhashable key: construct_mapping refuses it
                    continue
        super().flatten_mapping(node)

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except (ValueError, OverflowError) as exc:  # e.g. an integer of 5,000 digits
            raise ConstructorError(None, None, f"cannot read this value: {exc}",
                                   node.start_mark) from None


def _refused(problem: str, event: Any) -> ComposerError:
    return ComposerError(None, None, problem, event.start_mark)


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


def _line(err: Any, lines: dict[tuple[Any, ...], int]) -> int:
    loc = tuple(err["loc"])
    for n in range(len(loc), -1, -1):
        if loc[:n] in lines:
            return lines[loc[:n]]
    return 1


def _located(name: str, err: Any, lines: dict[tuple[Any, ...], int]) -> str:
    loc = tuple(err["loc"])
    line = _line(err, lines)
    where = ".".join(str(p) for p in loc)
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        msg = f"unknown key {loc[-1]!r}"
    return f"{name}:{line}: {where}: {msg}" if where else f"{name}:{line}: {msg}"
