"""The ``data`` of every outbound event type (CONTRACT §5)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from assetd.schemas.inbound import AnnotationValue, Kind


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ResolvedInput(_Out):
    """An input as stored: the selector already resolved to ``vN``."""

    asset: str
    branch: str
    instance: str


class InstanceCreated(_Out):
    """Published for every registration."""

    instance: str
    version: int
    kind: Kind
    annotations: dict[str, AnnotationValue]
    tags: dict[str, str]
    reference: dict[str, Any]
    inputs: list[ResolvedInput]
    state: Literal["ready", "pending"]
    producer: str


class GateResult(_Out):
    """One gate's comparison."""

    metric: str
    op: Literal["min", "max"]
    threshold: float
    value: AnnotationValue
    passed: bool
    reason: str | None = None


class QualityGateOutcome(_Out):
    """``quality_gate_passed`` and ``quality_gate_failed``."""

    instance: str
    results: list[GateResult]


class AssetPromoted(_Out):
    """An alias moved forward."""

    instance: str
    alias: str
    previous: str | None
    metric: str | None = None
    candidate_value: float | None = None
    champion_value: float | None = None
    improvement: float | None = None
    rule: str | None = None
    manual: bool = False
    reason: str | None = None


class PromotionRejected(_Out):
    """A candidate lost."""

    model_config = ConfigDict(extra="allow")

    instance: str
    alias: str
    champion: str | None
    reason: Literal[
        "gates_failed", "check_failed", "insufficient_improvement", "missing_metric",
        "invalid_instance",
    ]


class RetrainRequired(_Out):
    """Drift over a threshold; one per target asset, on that target's subject."""

    trigger_asset: str
    trigger_instance: str
    metric: str
    score: float
    threshold: float
    reason: str


class AssetStale(_Out):
    """No new ready instance within ``freshness.max_age``."""

    last_instance: str | None
    last_refreshed_at: str | None
    max_age_seconds: float


class AliasRolledBack(_Out):
    """An alias moved back."""

    alias: str
    from_: str | None = Field(alias="from")
    to: str | None
    reason: str


class InstanceAbandoned(_Out):
    """A pending instance was never finalized within ``ASSETD_PENDING_TIMEOUT``."""

    instance: str
    pending_since: str
    reason: str


class EventRejected(_Out):
    """An inbound message could not be applied."""

    event_id: str | None
    inbound_subject: str
    reason: str
    errors: list[dict[str, Any]] = Field(default_factory=list)


OUTBOUND: dict[str, type[BaseModel]] = {
    "instance_created": InstanceCreated,
    "quality_gate_passed": QualityGateOutcome,
    "quality_gate_failed": QualityGateOutcome,
    "asset_promoted": AssetPromoted,
    "promotion_rejected": PromotionRejected,
    "retrain_required": RetrainRequired,
    "asset_stale": AssetStale,
    "alias_rolled_back": AliasRolledBack,
    "event_rejected": EventRejected,
    "instance_abandoned": InstanceAbandoned,
}
