"""The CloudEvents 1.0 envelope (structured JSON mode) of CONTRACT §3."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from functools import lru_cache
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from assetd.schemas.ids import AssetId, BranchId, EventId, ProjectId

Source = Annotated[str, StringConstraints(min_length=1, max_length=1024)]
# RFC 3339 (what CloudEvents' ``time`` must be): a date, ``T``, a time, a zone.
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
# CloudEvents attribute names: lower-case ASCII letters and digits.
_EXTENSION = re.compile(r"^[a-z0-9]{1,64}$")
# Trace context carried from an inbound event to every outbound event it causes.
TRACE_EXTENSIONS = ("traceparent", "tracestate")


def _rfc3339(value: Any) -> Any:
    if isinstance(value, str) and not _RFC3339.match(value):
        raise ValueError("time must be RFC 3339, e.g. 2026-11-22T10:00:00Z")
    return value


Rfc3339 = Annotated[datetime, BeforeValidator(_rfc3339)]
JsonContentType = Annotated[str, StringConstraints(
    pattern=r"^application/json\s*(;\s*[A-Za-z0-9_.+-]+=[^;]{1,64})*$", max_length=200)]


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
    time: Rfc3339 | None = None
    datacontenttype: JsonContentType = "application/json"
    causeid: EventId | None = None
    data: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _extension_names(self) -> CloudEvent:
        for name in self.model_extra or {}:
            if not _EXTENSION.match(name):
                raise ValueError(f"extension attribute {name[:64]!r}: names are lower-case "
                                 "letters and digits (CloudEvents 1.0)")
        return self

    def trace(self) -> dict[str, str]:
        """The inbound trace context (W3C ``traceparent``/``tracestate``), if any."""
        extra = self.model_extra or {}
        return {k: extra[k] for k in TRACE_EXTENSIONS if isinstance(extra.get(k), str)}


def now_utc() -> datetime:
    """Return the current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


@lru_cache(maxsize=256)  # a batch's events share one ``now``: formatted once, not per event
def iso(ts: datetime) -> str:
    """RFC 3339 in UTC with a ``Z``; naive datetimes (as stored) are taken as UTC."""
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")
