"""The CloudEvents 1.0 envelope (structured JSON mode) of CONTRACT §3."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from assetd.schemas.ids import AssetId, BranchId, EventId, ProjectId

Source = Annotated[str, StringConstraints(min_length=1, max_length=1024)]


class CloudEvent(BaseModel):
    """One message on any assetd subject; ``data`` is checked per ``type`` separately."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)

    specversion: Literal["1.0"]
    id: EventId
    source: Source
    type: Annotated[str, StringConstraints(pattern=r"^[a-z_]{1,64}$")]
    subject: AssetId
    project: ProjectId
    branch: BranchId = "main"
    time: datetime | None = None
    datacontenttype: Literal["application/json"] = "application/json"
    causeid: EventId | None = None
    data: dict[str, Any] = Field(default_factory=dict)


def now_utc() -> datetime:
    """Return the current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


def iso(ts: datetime) -> str:
    """RFC 3339 in UTC with a ``Z``; naive datetimes (as stored) are taken as UTC."""
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")
