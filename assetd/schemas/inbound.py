"""The ``data`` of every inbound event type (CONTRACT §4)."""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, StringConstraints
from pydantic_core import PydanticCustomError

from assetd.schemas.ids import AliasName, AssetId, BranchId, Selector, Version

Kind = Literal["data", "model"]
Key = Annotated[str, StringConstraints(min_length=1, max_length=256)]
Text = Annotated[str, StringConstraints(max_length=262144)]
# Smart-mode union: a JSON float stays a float, an int an int, a bool a bool.
AnnotationValue = bool | int | float | str | None
SCALAR_ERROR = "{what} must be string, number, boolean or null"
NONFINITE_ERROR = ("{value} is not a number JSON can carry (no NaN or infinity); "
                   "send null or a string")


def scalar(value: Any, what: str = "annotations") -> AnnotationValue:
    """``value`` itself if it is a JSON scalar (kept typed); else one error that says what is
    allowed, instead of one per member of the union."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise PydanticCustomError("finite_number", NONFINITE_ERROR, {"value": str(value)})
        return value
    raise PydanticCustomError("scalar", SCALAR_ERROR, {"what": what})


ScalarAnnotation = Annotated[AnnotationValue, PlainValidator(
    scalar, json_schema_input_type=AnnotationValue)]
ConsumerValue = Annotated[AnnotationValue, PlainValidator(
    lambda v: scalar(v, "consumer values"), json_schema_input_type=AnnotationValue)]

# Absolute caps; the configurable, usually lower limits are in assetd.schemas.limits.
MAX_MAP_KEYS = 100_000
MAX_INPUTS = 100_000
Annotations = Annotated[dict[Key, ScalarAnnotation], Field(max_length=MAX_MAP_KEYS)]
StrMap = Annotated[dict[Key, Text], Field(max_length=MAX_MAP_KEYS)]
NumberMap = Annotated[dict[Key, float], Field(max_length=MAX_MAP_KEYS)]


class _Data(BaseModel):
    """Strict base: unknown fields are refused so a typo never silently drops data."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class Reference(_Data):
    """Where the asset's bytes live; assetd stores references, never bytes."""

    uri: Text | None = None
    blobs: Annotated[list[Text], Field(max_length=MAX_INPUTS)] = Field(default_factory=list)
    artifact: Text | None = None
    format: Text | None = None


class InputRef(_Data):
    """An instance this one was derived from; ``instance`` is any selector."""

    asset: AssetId
    instance: Selector = "latest"
    branch: BranchId | None = None


class AssetDefined(_Data):
    """Upsert the definition of an asset."""

    kind: Kind
    name: Text | None = None
    description: Text | None = None
    properties: StrMap = Field(default_factory=dict)


class AssetRegistered(_Data):
    """A new instance of an asset."""

    kind: Kind
    reference: Reference = Field(default_factory=Reference)
    annotations: Annotations = Field(default_factory=dict)
    tags: StrMap = Field(default_factory=dict)
    inputs: Annotated[list[InputRef], Field(max_length=MAX_INPUTS)] = Field(default_factory=list)
    state: Literal["ready", "pending"] = "ready"


class AssetConsumed(_Data):
    """A consumer read an instance."""

    instance: Selector = "latest"
    consumer: dict[Key, ConsumerValue] | None = None


class QualityReported(_Data):
    """A check's result for an instance."""

    instance: Selector = "latest"
    check: Key
    passed: bool
    severity: Literal["error", "warn"] = "error"
    metrics: NumberMap = Field(default_factory=dict)
    details: Text | None = None


class DriftReported(_Data):
    """A drift measurement for an instance."""

    instance: Selector = "latest"
    reference: Selector | None = None
    metric: Key
    score: float
    features: NumberMap = Field(default_factory=dict)


class PromotionRequested(_Data):
    """An operator's or CI's request to move an alias."""

    instance: Selector
    alias: AliasName = "champion"
    reason: Annotated[str, StringConstraints(min_length=1, max_length=4096)]
    requested_by: Text | None = None
    force: bool = False
    to_branch: BranchId | None = None


class InstanceUpdated(_Data):
    """A change of state or validity of one explicit instance."""

    instance: Version
    state: Literal["ready", "abandoned"] | None = None
    validity: Literal["valid", "deprecated", "invalidated"] | None = None
    reason: Annotated[str, StringConstraints(min_length=1, max_length=4096)]


class AliasRollbackRequested(_Data):
    """Move an alias back (``assetctl rollback``): to ``to``, else the previous valid holder."""

    alias: AliasName = "champion"
    to: Version | None = None
    reason: Annotated[str, StringConstraints(min_length=1, max_length=4096)]
    requested_by: Text | None = None


INBOUND: dict[str, type[_Data]] = {
    "asset_defined": AssetDefined,
    "asset_registered": AssetRegistered,
    "asset_consumed": AssetConsumed,
    "quality_reported": QualityReported,
    "drift_reported": DriftReported,
    "promotion_requested": PromotionRequested,
    "instance_updated": InstanceUpdated,
    "alias_rollback_requested": AliasRollbackRequested,
}
