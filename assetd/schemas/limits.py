"""Size limits on inbound data beyond the schema's hard caps; each refusal says which."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

MAPS = ("annotations", "tags", "properties", "metrics", "features")


@dataclass(frozen=True)
class Limits:
    """Configurable limits (``ASSETD_MAX_*``); the pydantic models hold the absolute caps."""

    max_map_keys: int = 1000
    max_value_chars: int = 16384
    max_inputs: int = 256

    def violations(self, data: Any) -> list[str]:
        """What in ``data`` (an inbound ``data`` model) exceeds a limit."""
        out: list[str] = []
        for name in MAPS:
            mapping = getattr(data, name, None)
            if not isinstance(mapping, dict):
                continue
            if len(mapping) > self.max_map_keys:
                out.append(f"{name} has {len(mapping)} keys; the limit is {self.max_map_keys}")
            long = next((k for k, v in mapping.items()
                         if isinstance(v, str) and len(v) > self.max_value_chars), None)
            if long is not None:
                out.append(f"{name}.{long} is {len(mapping[long])} characters; the limit is "
                           f"{self.max_value_chars}")
        inputs = getattr(data, "inputs", None)
        if isinstance(inputs, list) and len(inputs) > self.max_inputs:
            out.append(f"inputs has {len(inputs)} entries; the limit is {self.max_inputs}")
        return out
