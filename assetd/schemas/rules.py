"""The rules file (CONTRACT §6): ``version: 1`` and a list of rules; unknown keys refused."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PrivateAttr, model_validator

from assetd.schemas.ids import AliasName, AssetId

_DURATION = re.compile(r"^([0-9]+(?:\.[0-9]+)?)([smhd])$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}
Glob = Annotated[str, Field(min_length=1, max_length=256, pattern=r"^[A-Za-z0-9_.*?\[\]/@+!-]+$")]


def parse_duration(value: object) -> float:
    """``90s``, ``15m``, ``26h``, ``7d`` → seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        raise ValueError("give a duration with a unit: 90s, 15m, 26h, 7d")
    m = _DURATION.match(str(value).strip())
    if not m:
        raise ValueError(f"{value!r} is not a duration: use a number and s, m, h or d (26h)")
    return float(m.group(1)) * _UNIT[m.group(2)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class Gate(_Strict):
    """A bound on a numeric annotation; ``min`` and ``max`` are inclusive."""

    metric: str = Field(min_length=1, max_length=256)
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _bounded(self) -> Gate:
        if self.min is None and self.max is None:
            raise ValueError("a gate needs min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is above max {self.max}")
        return self


class Promote(_Strict):
    """Champion/challenger on one metric."""

    alias: AliasName = "champion"
    metric: str = Field(min_length=1, max_length=256)
    direction: Literal["maximize", "minimize"] = "maximize"
    min_improvement: float = Field(default=0.0, ge=0)


class Drift(_Strict):
    """``score > max`` → ``retrain_required`` to each target."""

    metric: str = Field(min_length=1, max_length=256)
    max: float
    retrain: list[AssetId] | None = None


class Freshness(_Strict):
    """A new ready instance is due within ``max_age``."""

    max_age: Annotated[float, BeforeValidator(parse_duration), Field(gt=0)]


class Rule(_Strict):
    """One rule: which instances it matches and what it decides for them."""

    asset: Glob
    branches: list[Glob] | None = None
    gates: list[Gate] = Field(default_factory=list)
    require_checks: list[str] = Field(default_factory=list)
    promote: Promote | None = None
    drift: Drift | None = None
    freshness: Freshness | None = None

    @model_validator(mode="after")
    def _does_something(self) -> Rule:
        if not (self.gates or self.require_checks or self.promote or self.drift
                or self.freshness):
            raise ValueError("a rule needs at least one of gates, require_checks, promote, "
                             "drift, freshness")
        if self.require_checks and not self.promote:
            raise ValueError("require_checks only take effect with promote")
        return self


class RulesFile(_Strict):
    """The whole file (treated as immutable once validated: a reload builds a new one)."""

    version: Literal[1]
    rules: list[Rule] = Field(default_factory=list)
    # (asset, branch) → the first matching (index, rule) or None; filled by
    # assetd.rules.engine.match_rule, so a new file (a reload) starts with an empty cache.
    _matches: dict[tuple[str, str], tuple[int, Rule] | None] = PrivateAttr(
        default_factory=dict)
