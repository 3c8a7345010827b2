"""The ``data`` of every outbound event type (CONTRACT §5); each model names its type
(``TYPE``), so an event is emitted from its model and declares every field it carries."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from assetd.schemas.inbound import AnnotationValue, Kind


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OutboundData(_Out):
    """The ``data`` of one outbound event type; ``TYPE`` is that type."""

    TYPE: ClassVar[str]


class ResolvedInput(_Out):
    """An input as stored: the selector already resolved to ``vN``."""

    asset: str
    branch: str
    instance: str


class InstanceData(_Out):
    """What every view of an instance carries (``instance_created``, the ``resolve`` reply)."""

    instance: str
    version: int
    kind: Kind
    annotations: dict[str, AnnotationValue]
    tags: dict[str, str]
    reference: dict[str, Any]
    inputs: list[ResolvedInput]
    producer: str


class InstanceCreated(OutboundData, InstanceData):
    """Published for every registration."""

    TYPE = "instance_created"
    state: Literal["ready", "pending"]


class GateResult(_Out):
    """One gate's comparison."""

    metric: str
    op: Literal["min", "max"]
    threshold: float
    value: AnnotationValue
    passed: bool
    reason: str | None = None


class QualityGateOutcome(OutboundData):
    """``quality_gate_passed`` and ``quality_gate_failed``."""

    instance: str
    results: list[GateResult]


class QualityGatePassed(QualityGateOutcome):
    """Every gate of the rule held."""

    TYPE = "quality_gate_passed"


class QualityGateFailed(QualityGateOutcome):
    """A gate of the rule did not hold."""

    TYPE = "quality_gate_failed"


class AssetPromoted(OutboundData):
    """An alias moved forward."""

    TYPE = "asset_promoted"
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


class PromotionRejected(OutboundData):
    """A candidate lost; with the values compared and what decided it."""

    TYPE = "promotion_rejected"
    instance: str
    alias: str
    champion: str | None
    reason: Literal[
        "gates_failed", "check_failed", "insufficient_improvement", "missing_metric",
        "invalid_instance",
    ]
    rule: str | None = None
    manual: bool = False
    metric: str | None = None
    candidate_value: float | None = None
    champion_value: float | None = None
    improvement: float | None = None
    min_improvement: float | None = None
    gates: list[GateResult] = Field(default_factory=list)
    failed_checks: list[str] = Field(default_factory=list)
    not_reported: list[str] = Field(default_factory=list)
    why: str | None = None


class RetrainRequired(OutboundData):
    """Drift over a threshold; one per target asset, on that target's subject."""

    TYPE = "retrain_required"
    trigger_asset: str
    trigger_instance: str
    metric: str
    score: float
    threshold: float
    reason: str


class AssetStale(OutboundData):
    """No new ready instance within ``freshness.max_age``."""

    TYPE = "asset_stale"
    last_instance: str | None
    last_refreshed_at: str | None
    max_age_seconds: float


class AliasRolledBack(OutboundData):
    """An alias moved back."""

    TYPE = "alias_rolled_back"
    alias: str
    from_: str | None = Field(alias="from")
    to: str | None
    reason: str


class InstanceAbandoned(OutboundData):
    """A pending instance was never finalized within ``ASSETD_PENDING_TIMEOUT``."""

    TYPE = "instance_abandoned"
    instance: str
    pending_since: str
    reason: str


class EventRejected(OutboundData):
    """An inbound message could not be applied."""

    TYPE = "event_rejected"
    event_id: str | None
    inbound_subject: str
    reason: str
    errors: list[dict[str, Any]] = Field(default_factory=list)


OUTBOUND: dict[str, type[OutboundData]] = {m.TYPE: m for m in (
    InstanceCreated, QualityGatePassed, QualityGateFailed, AssetPromoted, PromotionRejected,
    RetrainRequired, AssetStale, AliasRolledBack, EventRejected, InstanceAbandoned,
)}
