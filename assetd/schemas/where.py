"""Annotation conditions of the ``instances`` query (``f1_score>=0.9``): parsed and tested
here, purely, so that the request model refuses a bad one and the registry applies it.

A condition is ``KEY OP VALUE`` with OP one of ``= == != > >= < <=``. VALUE is JSON when it
parses as JSON (``0.9``, ``true``, ``null``, ``"1"``), a plain string otherwise
(``stage=prod``; quote it as JSON when it starts with one of ``<>=!``). ``=``/``==``/``!=``
compare JSON values exactly (``1`` equals ``1.0``, never ``true`` or ``"1"``); the order
comparisons need two numbers or two strings. A condition on a key the instance does not
have never matches, ``!=`` included.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from typing import Any

import orjson

_COND = re.compile(r"\s*(?P<key>[^<>=!\s](?:[^<>=!]*[^<>=!\s])?)\s*"
                   r"(?P<op>==|!=|>=|<=|=|>|<)\s*(?P<value>.*?)\s*")
_ORDER: dict[str, Callable[[Any, Any], bool]] = {
    ">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}
MAX_CONDITIONS = 16


class Condition:
    """One parsed condition."""

    __slots__ = ("key", "op", "value")

    def __init__(self, key: str, op: str, value: Any) -> None:
        self.key, self.op, self.value = key, "=" if op == "==" else op, value

    def matches(self, annotations: dict[str, Any]) -> bool:
        """Whether an instance with these annotations meets the condition."""
        if self.key not in annotations:
            return False
        have = annotations[self.key]
        if self.op == "=":
            return _same(have, self.value)
        if self.op == "!=":
            return not _same(have, self.value)
        if (_number(have) and _number(self.value)) or \
                (isinstance(have, str) and isinstance(self.value, str)):
            return _ORDER[self.op](have, self.value)
        return False


def parse_condition(text: str) -> Condition:
    """``"f1_score>=0.9"`` → a :class:`Condition`; ValueError says what is wrong."""
    m = _COND.fullmatch(text)
    if m is None:
        raise ValueError(f"{text[:100]!r} is not KEY OP VALUE (OP one of = != > >= < <=)")
    raw = m["value"]
    if raw[:1] in ("<", ">", "=", "!"):
        raise ValueError(f"{text[:100]!r}: the value starts with an operator; write one "
                         "operator, or quote the value as JSON")
    try:
        value: Any = orjson.loads(raw) if raw else raw
    except orjson.JSONDecodeError:
        value = raw
    if isinstance(value, (dict, list)):
        raise ValueError(f"{text[:100]!r}: compare with a number, a string, true, false or null")
    return Condition(m["key"], m["op"], value)


def check_conditions(texts: list[str]) -> list[str]:
    """The request model's validator: every condition parses; at most 16 of them."""
    if len(texts) > MAX_CONDITIONS:
        raise ValueError(f"at most {MAX_CONDITIONS} conditions")
    for text in texts:
        parse_condition(text)
    return texts


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if _number(a) and _number(b):
        return bool(a == b)
    return type(a) is type(b) and bool(a == b)
