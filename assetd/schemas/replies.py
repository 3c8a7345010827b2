"""The ``result`` of each query (CONTRACT §7), as models: what clients may rely on.

The daemon builds results as plain dicts on the read path (no validation per reply);
``tests/test_replies.py`` checks every method's real reply against these models, so the two
cannot drift apart, and the schema export documents them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel

from assetd.schemas.inbound import AnnotationValue, Kind
from assetd.schemas.outbound import InstanceData


class _Reply(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class InstanceView(InstanceData):
    """One instance: as in ``instance_created``, plus validity, creation time and aliases."""

    asset: str
    branch: str
    state: Literal["ready", "pending", "abandoned"]
    validity: Literal["valid", "deprecated", "invalidated"]
    created_at: str
    aliases: list[str]


class AssetSummary(_Reply):
    """One asset of the ``assets`` listing."""

    asset: str
    kind: Kind
    name: str | None
    description: str | None
    properties: dict[str, str]
    latest: str | None
    aliases: dict[str, str]
    instances: int


class AssetList(RootModel[list[AssetSummary]]):
    """The ``assets`` result."""


class InstancesPage(_Reply):
    """A page of instances, newest first; ``next`` is the ``before`` of the next page."""

    items: list[InstanceView]
    next: int | None


class LineageNode(_Reply):
    """An instance (``asset@branch:vN``) or a consumer (``consumer:<name>``)."""

    id: str
    asset: str | None
    branch: str | None
    instance: str | None
    kind: Literal["data", "model", "consumer"]
    name: str | None = None


class LineageEdge(_Reply):
    """``from`` → ``to``: an input, or a consumption."""

    from_: str = Field(alias="from")
    to: str
    relation: Literal["input", "consumed_by"]


class LineageGraph(_Reply):
    """The ``lineage`` result; ``truncated`` when a limit cut the walk."""

    nodes: list[LineageNode]
    edges: list[LineageEdge]
    truncated: bool


class CompareSide(_Reply):
    """One of the two instances compared."""

    instance: str
    version: int
    state: Literal["ready", "pending", "abandoned"]
    validity: Literal["valid", "deprecated", "invalidated"]
    created_at: str
    producer: str
    aliases: list[str]


class FieldChange(_Reply):
    """One annotation or tag of either instance: its value in each (null: absent), how it
    changed from a to b, and ``delta`` = b - a when both values are numbers."""

    key: str
    a: AnnotationValue
    b: AnnotationValue
    change: Literal["added", "removed", "changed", "same"]
    delta: int | float | None


class InputRef(_Reply):
    """An input instance."""

    asset: str
    branch: str
    instance: str


class InputsDiff(_Reply):
    """Lineage differences: inputs only in a, only in b, and in both."""

    only_a: list[InputRef]
    only_b: list[InputRef]
    common: list[InputRef]


class Comparison(_Reply):
    """The ``compare`` result."""

    asset: str
    branch: str
    a: CompareSide
    b: CompareSide
    annotations: list[FieldChange]
    tags: list[FieldChange]
    inputs: InputsDiff


class DecisionRow(_Reply):
    """One row of the decision log."""

    id: int
    instance: str | None
    outcome: str
    rule: str | None
    inputs: dict[str, Any]
    event_id: str | None
    created_at: str


class DecisionList(RootModel[list[DecisionRow]]):
    """The ``decisions`` result, newest first."""


class TimelineInstance(_Reply):
    """An instance as a replay needs it."""

    instance: str
    version: int
    state: str
    validity: str
    annotations: dict[str, AnnotationValue]
    created_at: str
    checks: dict[str, bool]


class AliasSpan(_Reply):
    """Who held an alias, from when to when (``held_to`` null: still)."""

    alias: str
    instance: str
    held_from: str
    held_to: str | None


class Timeline(_Reply):
    """The ``timeline`` result."""

    instances: list[TimelineInstance]
    aliases: list[AliasSpan]


class EventOutcome(_Reply):
    """The ``event`` result: what became of one inbound id."""

    status: Literal["applied", "rejected", "unknown"]
    type: str | None
    outcome: dict[str, Any] | None
    at: str | None
    seq: int | None


class EventsStream(_Reply):
    """The ``events_stream`` result."""

    stream: str
    subjects: str


REPLIES: dict[str, type[BaseModel]] = {
    "resolve": InstanceView,
    "assets": AssetList,
    "instances": InstancesPage,
    "lineage": LineageGraph,
    "compare": Comparison,
    "decisions": DecisionList,
    "timeline": Timeline,
    "event": EventOutcome,
    "events_stream": EventsStream,
}
