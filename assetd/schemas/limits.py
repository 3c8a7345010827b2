"""Size limits on inbound data beyond the schema's hard caps; each refusal says which.

Also what no registry database can store (:func:`unstorable`), refused at decode time on
every database alike instead of failing, and being retried, at the INSERT.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

MAPS = ("annotations", "tags", "properties", "metrics", "features")

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_NUL = b"\\u0000"  # the only way a NUL can be in valid JSON (a raw one is refused)
# Any run of 19 digits (a 64-bit integer has at most 19) shows as zeros after _DIGITS.
_DIGITS, _RUN = bytes.maketrans(b"123456789", b"0" * 9), b"0" * 19
MAX_REPORTED = 3


@dataclass(frozen=True)
class Limits:
    """Configurable limits (``ASSETD_MAX_*``); the pydantic models hold the absolute caps."""

    max_map_keys: int = 1000
    max_value_chars: int = 16384
    max_inputs: int = 256

    @functools.cached_property
    def safe_size(self) -> int:
        """A JSON payload of at most this many bytes cannot exceed any of these limits, so
        :meth:`violations` need not look (~0.7 µs a registration): a string of more than
        ``max_value_chars`` characters takes more bytes than that, every key of a map at
        least four (``"":0,``), every input at least eight (``{"a":""}``)."""
        return min(self.max_value_chars, 4 * self.max_map_keys, 8 * self.max_inputs)

    def violations(self, data: Any) -> list[str]:
        """What in ``data`` (an inbound ``data`` model) exceeds a limit."""
        out: list[str] = []
        for name in _maps_of(type(data)):
            mapping = getattr(data, name, None)
            if not isinstance(mapping, dict):
                continue
            if len(mapping) > self.max_map_keys:
                out.append(f"{name} has {len(mapping)} keys; the limit is {self.max_map_keys}")
            for key, value in mapping.items():  # the first value too long (no generator:
                if isinstance(value, str) and len(value) > self.max_value_chars:  # cheaper)
                    out.append(f"{name}.{key} is {len(value)} characters; the limit is "
                               f"{self.max_value_chars}")
                    break
        inputs = getattr(data, "inputs", None) if _maps_of(type(data), "inputs") else None
        if isinstance(inputs, list) and len(inputs) > self.max_inputs:
            out.append(f"inputs has {len(inputs)} entries; the limit is {self.max_inputs}")
        return out


_FIELDS_OF: dict[tuple[type, tuple[str, ...]], tuple[str, ...]] = {}


def _maps_of(cls: type, *names: str) -> tuple[str, ...]:
    """Which of ``names`` (default: MAPS) a model class has (every one for a non-model):
    getattr of a missing field raises inside pydantic's ``__getattr__`` (~15 µs each), and
    reading ``model_fields`` goes through a deprecation-checking descriptor (~2 % of the
    daemon's time under load), so it is read once per class."""
    found = _FIELDS_OF.get((cls, names))
    if found is None:
        fields = getattr(cls, "__pydantic_fields__", None)
        found = _FIELDS_OF[(cls, names)] = tuple(n for n in names or MAPS
                                                 if fields is None or n in fields)
    return found


def unstorable(payload: bytes, obj: Any) -> list[tuple[str, str]]:
    """``(path, problem)`` for what no registry database can store in a parsed JSON payload.

    NUL in a string or key (PostgreSQL text cannot hold ``\\u0000``) and integers beyond
    64 bits (orjson reads them as floats, so a typed annotation would silently change).
    Cheap on the hot path: two substring searches of the bytes (about orjson's parse time);
    the value is walked (and, for integers, re-read exactly) only when one of them hits.
    """
    out: list[tuple[str, str]] = []
    if _NUL in payload:
        out += [(path, f"{'key ' if key else ''}contains a NUL character (\\u0000), which "
                       "the registry cannot store")
                for path, key in _find(obj, _has_nul)]
    if _RUN in payload.translate(_DIGITS):  # 10x faster than a regex scan
        try:
            exact = json.loads(payload, parse_int=_int64)
        except RecursionError:
            return [*out, ("payload", "nested too deeply to check its integers")]
        except ValueError:  # orjson read it, so this should not happen; refuse, never retry
            return [*out, ("payload", "could not be re-read to check its integers")]
        out += [(path, "integer beyond 64 bits (the registry keeps -2^63 to 2^63-1); send it "
                       "as a string or a float")
                for path, _ in _find(exact, lambda v: isinstance(v, _BigInt))]
    return out[:MAX_REPORTED]


class _BigInt:
    """Stands for an integer literal beyond 64 bits in the exact re-read."""


def _int64(literal: str) -> int | _BigInt:
    if len(literal.lstrip("-")) > 19:  # also keeps int() off huge literals (str-digits limit)
        return _BigInt()
    value = int(literal)
    return value if INT64_MIN <= value <= INT64_MAX else _BigInt()


def _has_nul(value: Any) -> bool:
    return isinstance(value, str) and "\x00" in value


def _find(obj: Any, bad: Callable[[Any], bool]) -> list[tuple[str, bool]]:
    """``(dotted path, is a key)`` of the first few values or keys that are ``bad``."""
    found: list[tuple[str, bool]] = []
    stack: list[tuple[str, Any]] = [("", obj)]  # iterative: nesting depth is not bounded here
    while stack and len(found) < MAX_REPORTED:
        path, value = stack.pop()
        if isinstance(value, dict):
            for k, v in reversed(value.items()):
                sub = f"{path}.{_show(k)}" if path else _show(k)
                if bad(k):
                    found.append((sub, True))
                else:
                    stack.append((sub, v))
        elif isinstance(value, list):
            stack.extend((f"{path}[{i}]", v) for i, v in reversed(list(enumerate(value))))
        elif bad(value):
            found.append((path or "payload", False))
    return found


def _show(key: str) -> str:
    """A key as printable text for a one-line reason."""
    return key.replace("\x00", "\\u0000").replace("\r", " ").replace("\n", " ")[:64]
