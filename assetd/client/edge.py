"""What the client checks or converts in an event's ``data`` before it publishes it.

Only what JSON cannot carry or what the registry would refuse with a worse message later:
NaN and ±infinity (orjson would write them as ``null``, silently), annotations that are not
scalars, and tag values that are scalars but not strings (stored as their string form, as
obproject does: Metaflow parameters are often ints). Everything else is the daemon's to judge.
"""

from __future__ import annotations

import math
from typing import Any

from assetd.schemas.inbound import NONFINITE_ERROR, SCALAR_ERROR

_SCALARS = (bool, int, float, str)


def prepare(type_: str, asset: str, data: dict[str, Any]) -> dict[str, Any]:
    """``data`` ready to publish (tags as strings), or ValueError naming the field."""
    if isinstance(data.get("tags"), dict):
        data = {**data, "tags": _tags(asset, data["tags"])}
    for name in ("annotations", "consumer"):
        values = data.get(name)
        if isinstance(values, dict):
            bad = next((k for k, v in values.items()
                        if v is not None and not isinstance(v, _SCALARS)), None)
            if bad is not None:
                what = "annotations" if name == "annotations" else "consumer values"
                raise ValueError(f"{asset} {type_}: {name}.{bad} is a "
                                 f"{type(values[bad]).__name__}; {SCALAR_ERROR.format(what=what)}")
    found = nonfinite(data)
    if found is not None:
        path, value = found
        raise ValueError(f"{asset} {type_}: {path}: "
                         f"{NONFINITE_ERROR.format(value=value)}")
    return data


def _tags(asset: str, tags: dict[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in tags.items():
        if isinstance(value, str):
            out[key] = value
        elif isinstance(value, _SCALARS):
            out[key] = str(value)
        else:
            raise ValueError(f"{asset}: tags.{key} is a {type(value).__name__}; tag values "
                             "must be strings (numbers and booleans are stored as their text)")
    return out


def nonfinite(value: Any, path: str = "") -> tuple[str, float] | None:
    """``(dotted path, value)`` of the first NaN or infinity in ``value``, else None."""
    if isinstance(value, float):
        return None if math.isfinite(value) else (path or "value", value)
    if isinstance(value, dict):
        items: Any = value.items()
    elif isinstance(value, list | tuple):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        sub = f"{path}[{key}]" if isinstance(key, int) else (f"{path}.{key}" if path else key)
        if (found := nonfinite(item, sub)) is not None:
            return found
    return None
