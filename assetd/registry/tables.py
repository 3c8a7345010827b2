"""SQLModel tables of the registry; Alembic migrations in ``migrations/`` create them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Index, LargeBinary, UniqueConstraint
from sqlmodel import Field, SQLModel


class AssetDefinition(SQLModel, table=True):
    """An asset of a project: what every instance is a version of."""

    __tablename__ = "asset"

    project: str = Field(primary_key=True, max_length=64)
    asset: str = Field(primary_key=True, max_length=128)
    kind: str = Field(max_length=16)
    name: str | None = None
    description: str | None = None
    properties: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime
    updated_at: datetime


class Instance(SQLModel, table=True):
    """One versioned instance ``vN`` of an asset on a branch."""

    __tablename__ = "instance"
    __table_args__ = (
        UniqueConstraint("project", "branch", "asset", "version", name="uq_instance_version"),
    )

    id: int | None = Field(default=None, primary_key=True)
    project: str = Field(max_length=64)
    branch: str = Field(max_length=128)
    asset: str = Field(max_length=128)
    version: int
    kind: str = Field(max_length=16)
    state: str = Field(max_length=16)
    validity: str = Field(max_length=16)
    annotations: dict[str, Any] = Field(
        default_factory=dict, sa_column=Column(JSON, nullable=False)
    )
    tags: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    reference: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    producer: str
    event_id: str = Field(max_length=128)
    created_at: datetime
    updated_at: datetime


class AssetStats(SQLModel, table=True):
    """Per (project, branch, asset): how many instances, and the latest ready, not
    invalidated version; kept in the transaction of every change, so ``assets`` reads one
    row per asset instead of counting every instance."""

    __tablename__ = "asset_stats"

    project: str = Field(primary_key=True, max_length=64)
    branch: str = Field(primary_key=True, max_length=128)
    asset: str = Field(primary_key=True, max_length=128)
    instances: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    latest: int | None = None


class LineageEdge(SQLModel, table=True):
    """``input`` (upstream instance → derived instance) or ``consumed_by`` (instance → consumer)."""

    __tablename__ = "lineage_edge"
    __table_args__ = (
        Index("ix_lineage_upstream", "upstream_id"),
        Index("ix_lineage_downstream", "downstream_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    project: str = Field(max_length=64)
    relation: str = Field(max_length=16)
    upstream_id: int = Field(foreign_key="instance.id")
    downstream_id: int | None = Field(default=None, foreign_key="instance.id")
    consumer: str | None = None
    consumer_info: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    event_id: str = Field(max_length=128)
    created_at: datetime


class Alias(SQLModel, table=True):
    """The current holder of an alias; moved only by compare-and-set."""

    __tablename__ = "alias"

    project: str = Field(primary_key=True, max_length=64)
    branch: str = Field(primary_key=True, max_length=128)
    asset: str = Field(primary_key=True, max_length=128)
    alias: str = Field(primary_key=True, max_length=64)
    instance_id: int = Field(foreign_key="instance.id")
    updated_at: datetime


class Decision(SQLModel, table=True):
    """One evaluation of the promotion rules, with its inputs and outcome."""

    __tablename__ = "decision"
    __table_args__ = (Index("ix_decision_asset", "project", "branch", "asset", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    project: str = Field(max_length=64)
    branch: str = Field(max_length=128)
    asset: str = Field(max_length=128)
    instance: str | None = None
    outcome: str = Field(max_length=32)
    rule: str | None = None
    inputs: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    event_id: str = Field(max_length=128)
    created_at: datetime


class CheckResult(SQLModel, table=True):
    """A ``quality_reported`` result for one instance; the newest per check counts."""

    __tablename__ = "check_result"
    __table_args__ = (Index("ix_check_instance", "instance_id", "check", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    project: str = Field(max_length=64)
    instance_id: int = Field(foreign_key="instance.id")
    check: str = Field(max_length=256)
    passed: bool
    severity: str = Field(max_length=16)
    metrics: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    details: str | None = None
    event_id: str = Field(max_length=128)
    created_at: datetime


class AliasHistory(SQLModel, table=True):
    """Who held an alias from when to when (``held_to`` null: still holds it), and why."""

    __tablename__ = "alias_history"
    __table_args__ = (
        Index("ix_alias_history", "project", "branch", "asset", "alias", "held_from"),
    )

    id: int | None = Field(default=None, primary_key=True)
    project: str = Field(max_length=64)
    branch: str = Field(max_length=128)
    asset: str = Field(max_length=128)
    alias: str = Field(max_length=64)
    instance_id: int = Field(foreign_key="instance.id")
    version: int
    held_from: datetime
    held_to: datetime | None = None
    decision_id: int | None = Field(default=None, foreign_key="decision.id")
    event_id: str = Field(max_length=128)


class Lease(SQLModel, table=True):
    """Who runs the scheduled jobs: one holder at a time, until ``expires_at``."""

    __tablename__ = "lease"

    name: str = Field(primary_key=True, max_length=64)
    holder: str = Field(max_length=256)
    expires_at: datetime


class InboxEntry(SQLModel, table=True):
    """An inbound event id already applied: the daemon applies each id once, for ever."""

    __tablename__ = "inbox"

    project: str = Field(primary_key=True, max_length=64)
    event_id: str = Field(primary_key=True, max_length=128)
    type: str = Field(max_length=64)
    applied_at: datetime


class EventOutcome(SQLModel, table=True):
    """What became of one inbound event id (the ``event`` query): applied, with what it
    produced, or rejected, with why. Written with the batch; an applied row is final, a
    rejected one is replaced by a later attempt of the same id."""

    __tablename__ = "event_outcome"

    project: str = Field(primary_key=True, max_length=64)
    event_id: str = Field(primary_key=True, max_length=128)
    type: str | None = Field(default=None, max_length=64)
    status: str = Field(max_length=16)
    outcome: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    seq: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    recorded_at: datetime


class OutboxEntry(SQLModel, table=True):
    """An outbound event committed with its cause, published by the relay."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_pending", "published_at", "seq"),)

    seq: int | None = Field(default=None, primary_key=True)
    id: str = Field(max_length=64, unique=True)
    subject: str = Field(max_length=512)
    payload: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    created_at: datetime
    published_at: datetime | None = None


metadata = SQLModel.metadata
ASSET = AssetDefinition.__table__  # type: ignore[attr-defined]
INSTANCE = Instance.__table__  # type: ignore[attr-defined]
EDGE = LineageEdge.__table__  # type: ignore[attr-defined]
ALIAS = Alias.__table__  # type: ignore[attr-defined]
DECISION = Decision.__table__  # type: ignore[attr-defined]
INBOX = InboxEntry.__table__  # type: ignore[attr-defined]
CHECK = CheckResult.__table__  # type: ignore[attr-defined]
LEASE = Lease.__table__  # type: ignore[attr-defined]
ALIAS_HISTORY = AliasHistory.__table__  # type: ignore[attr-defined]
OUTBOX = OutboxEntry.__table__  # type: ignore[attr-defined]
EVENT_OUTCOME = EventOutcome.__table__  # type: ignore[attr-defined]
STATS = AssetStats.__table__  # type: ignore[attr-defined]
