"""Requests and replies of the query API (CONTRACT §7)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field

from assetd.schemas.ids import MAX_VERSION, AssetId, BranchId, EventId, Selector
from assetd.schemas.inbound import Kind, StrMap
from assetd.schemas.where import check_conditions


def _storable_version(value: int | None) -> int | None:
    if value is not None and value > MAX_VERSION:
        raise ValueError(f"versions go up to {MAX_VERSION} (the registry stores them as "
                         "32-bit integers)")
    return value


def _listify(value: Any) -> Any:
    """One condition alone (an HTTP parameter given once) counts as a list of one."""
    return [value] if isinstance(value, str) else value


Conditions = Annotated[list[str], BeforeValidator(_listify), AfterValidator(check_conditions)]


class _Req(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ResolveRequest(_Req):
    """Resolve a selector to one instance; ``at`` asks who held an alias at that time."""

    asset: AssetId
    branch: BranchId = "main"
    instance: Selector = "latest"
    allow_invalid: bool = False
    at: AwareDatetime | None = None


class AssetsRequest(_Req):
    """List the assets of a project, optionally by kind and latest-instance tags."""

    branch: BranchId = "main"
    kind: Kind | None = None
    tags: StrMap | None = None


class InstancesRequest(_Req):
    """Page through the instances of one asset, newest first, optionally only those that
    meet every filter given: annotation conditions (``where``: ``f1_score>=0.9``), tags,
    state, validity, producer, creation time (``created_after`` inclusive,
    ``created_before`` exclusive). A filtered page examines at most 10,000 versions; it may
    come back short, or empty, with ``next`` set: ask again with ``before`` = ``next``."""

    asset: AssetId
    branch: BranchId = "main"
    limit: int = Field(default=50, ge=1, le=500)
    before: Annotated[int | None, AfterValidator(_storable_version)] = Field(default=None, ge=1)
    where: Conditions = Field(default_factory=list)
    tags: StrMap | None = None
    state: Literal["ready", "pending", "abandoned"] | None = None
    validity: Literal["valid", "deprecated", "invalidated"] | None = None
    producer: str | None = Field(default=None, min_length=1, max_length=1024)
    created_after: AwareDatetime | None = None
    created_before: AwareDatetime | None = None


class LineageRequest(_Req):
    """Walk lineage from one instance."""

    asset: AssetId
    branch: BranchId = "main"
    instance: Selector = "latest"
    direction: Literal["upstream", "downstream"] = "upstream"
    depth: int = Field(default=3, ge=1, le=50)


class CompareRequest(_Req):
    """Two instances of one asset side by side: annotations and tags with their differences
    (numeric ones with the delta b - a), and their lineage differences (inputs)."""

    asset: AssetId
    branch: BranchId = "main"
    a: Selector
    b: Selector
    allow_invalid: bool = True


class DecisionsRequest(_Req):
    """The decision log of one asset, newest first."""

    asset: AssetId
    branch: BranchId = "main"
    limit: int = Field(default=50, ge=1, le=500)


class TimelineRequest(_Req):
    """An asset's recorded history for ``assetctl rules simulate`` (an extension of §7)."""

    asset: AssetId
    branch: BranchId = "main"
    limit: int = Field(default=1000, ge=1, le=10000)


class EventRequest(_Req):
    """What became of one inbound event id: ``applied`` (with what it produced), ``rejected``
    (with why) or ``unknown``."""

    id: EventId


class EventsStreamRequest(_Req):
    """Where a project's services read its outbound events durably (an extension of §7):
    the daemon makes sure the project's own stream ``ASSETD_OUT_<project>`` exists."""


class ApiError(BaseModel):
    """What went wrong with a query."""

    code: Literal["not_found", "invalid", "conflict", "internal"]
    message: str


class ApiReply(BaseModel):
    """The reply to every query."""

    ok: bool
    result: Any = None
    error: ApiError | None = None


REQUESTS: dict[str, type[_Req]] = {
    "resolve": ResolveRequest,
    "assets": AssetsRequest,
    "instances": InstancesRequest,
    "lineage": LineageRequest,
    "compare": CompareRequest,
    "decisions": DecisionsRequest,
    "timeline": TimelineRequest,
    "event": EventRequest,
    "events_stream": EventsStreamRequest,
}
