"""The unit of work of one batch: a connection, the clock, and the outbound events to queue."""

from __future__ import annotations

import hashlib
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from pydantic import BaseModel
from sqlalchemy import Connection

from assetd.errors import RejectedError
from assetd.registry import repo
from assetd.registry import stats as counters
from assetd.rules.loader import LoadedRules
from assetd.schemas import wire
from assetd.schemas.outbound import OutboundData

# What one outbound event may weigh: the relay must never hand NATS a message it refuses
# (a refused publish closes the connection). The daemon checks at start that the server's
# max_payload leaves room for it and its headers.
OUTBOUND_MAX_BYTES = 512 * 1024
_NS = uuid.UUID("6f1c1d1e-5b0e-4a52-9a0c-a55e7d000001")


_NS_BYTES = _NS.bytes


def outbound_id(project: str, cause: str, type_: str, asset: str, branch: str) -> str:
    """Deterministic outbound id: the same cause always yields the same id.

    ``str(uuid.uuid5(_NS, name))``, computed directly: the same SHA-1, version and variant
    bits, a third of the time (``uuid.UUID`` construction was ~5 % of the daemon's samples).
    """
    name = f"{project}\x1f{cause}\x1f{type_}\x1f{asset}\x1f{branch}"
    h = bytearray(hashlib.sha1(_NS_BYTES + name.encode()).digest()[:16])
    h[6] = (h[6] & 0x0F) | 0x50  # version 5
    h[8] = (h[8] & 0x3F) | 0x80  # RFC 4122 variant
    x = h.hex()
    return f"{x[:8]}-{x[8:12]}-{x[12:16]}-{x[16:20]}-{x[20:]}"


def outbound(*, prefix: str, project: str, branch: str, asset: str, type_: str,
             cause: str | None, data: BaseModel | dict[str, Any], key: str | None,
             now: datetime, trace: dict[str, str] | None = None) -> dict[str, Any]:
    """One outbound CloudEvent as an outbox row: ``id``, ``subject``, ``payload``; ``trace``
    (the cause's ``traceparent``/``tracestate``) goes on as extension attributes."""
    body = data.model_dump(mode="json", by_alias=True) if isinstance(data, BaseModel) else data
    eid = outbound_id(project, key or cause or "", type_, asset, branch)
    envelope = wire.envelope(event_id=eid, source="assetd", type_=type_, time=now,
                             project=project, branch=branch, asset=asset, data=body,
                             causeid=cause, **(trace or {}))
    return {"id": eid, "subject": wire.out_subject(prefix, project, branch, asset, type_),
            "payload": orjson.dumps(envelope), "created_at": now}


@dataclass(frozen=True, slots=True)
class InstanceRef:
    """An instance as the rules step needs it (built from a row or from what was inserted)."""

    id: int
    project: str
    branch: str
    asset: str
    version: int
    kind: str
    state: str
    validity: str
    annotations: dict[str, Any]

    @classmethod
    def of(cls, row: Any) -> InstanceRef:
        """From a database row of the instance table."""
        return cls(row.id, row.project, row.branch, row.asset, row.version, row.kind,
                   row.state, row.validity, dict(row.annotations))

    @property
    def name(self) -> str:
        """``vN``."""
        return f"v{self.version}"


@dataclass(slots=True)
class Tx:
    """What a handler may touch: the connection, ``now`` (UTC) and the version cache."""

    conn: Connection
    now: datetime
    prefix: str
    rules: LoadedRules | None = None
    versions: dict[tuple[str, str, str], int] = field(default_factory=dict)
    kinds: dict[tuple[str, str], str] = field(default_factory=dict)
    outbox: list[dict[str, Any]] = field(default_factory=list)
    committed_outbox: list[dict[str, Any]] = field(default_factory=list)
    decided: list[str] = field(default_factory=list)
    decisions: Counter[str] = field(default_factory=Counter)
    trace: dict[str, str] = field(default_factory=dict)  # the current event's trace context
    # (type, asset, branch, data) of each event the current inbound event queued
    emitted: list[tuple[str, str, str, dict[str, Any]]] = field(default_factory=list)
    stats: counters.Pending = field(default_factory=counters.Pending)  # the per-asset counters
    # A batch applied without savepoints: new instances (their ids given here) and their
    # edges are written in one statement each, before anything reads them
    # (write_instances). SQLite gives the ids it would give (the highest + 1, under the
    # write lock); PostgreSQL takes ``expected_instances`` of them from the id sequence in
    # one round trip, instead of an ``INSERT … RETURNING id`` per registration
    defer_instances: bool = False
    expected_instances: int = 1
    pending_instances: list[dict[str, Any]] = field(default_factory=list)
    pending_edges: list[dict[str, Any]] = field(default_factory=list)
    _next_id: int | None = None
    _reserved: list[int] = field(default_factory=list)  # PostgreSQL: ids taken, not used
    # the outbox rows the batch wrote, (seq, id, subject, payload): the relay's, once committed
    written: list[tuple[int, str, str, bytes]] = field(default_factory=list)

    def emit(
        self, *, project: str, branch: str, asset: str, cause: str | None,
        data: OutboundData, key: str | None = None,
    ) -> None:
        """Queue one outbound CloudEvent; it is written with the change it describes.

        Its id derives from ``key`` (default: the inbound id ``cause``), so a retried batch
        queues the same ids and the outbox and JetStream both drop the copy.
        """
        self.emit_json(project=project, branch=branch, asset=asset, cause=cause,
                       type_=data.TYPE, body=data.model_dump(mode="json", by_alias=True),
                       key=key)

    def emit_json(
        self, *, project: str, branch: str, asset: str, cause: str | None, type_: str,
        body: dict[str, Any], key: str | None = None,
    ) -> None:
        """:meth:`emit` of a ``data`` already in the JSON form its type's model dumps."""
        row = outbound(prefix=self.prefix, project=project, branch=branch, asset=asset,
                       type_=type_, cause=cause, data=body, key=key, now=self.now,
                       trace=self.trace)
        if len(row["payload"]) > OUTBOUND_MAX_BYTES:
            raise RejectedError(f"its {type_} event would be {len(row['payload'])} bytes; the "
                                f"limit is {OUTBOUND_MAX_BYTES} (send fewer or smaller values)")
        self.outbox.append(row)
        self.emitted.append((type_, asset, branch, body))

    def keep(self) -> None:
        """The current event's change stands: its outbound events go in with the batch."""
        self.committed_outbox += self.outbox
        self.outbox = []
        self.emitted = []
        self.decisions.update(self.decided)
        self.decided = []
        self.stats.keep()

    def insert_instance(self, values: dict[str, Any], edges: list[dict[str, Any]]) -> int:
        """Insert an instance and its input edges (``downstream_id`` is set here); return its
        id. Deferred (see ``defer_instances``) or at once."""
        if not self.defer_instances:
            instance_id = repo.insert_instance(self.conn, values=values)
            repo.insert_edges(self.conn, rows=[{**e, "downstream_id": instance_id}
                                               for e in edges])
            return instance_id
        instance_id = self._take_id()
        self.pending_instances.append({**values, "id": instance_id})
        self.pending_edges += [{**e, "downstream_id": instance_id} for e in edges]
        return instance_id

    def _take_id(self) -> int:
        if self.conn.dialect.name != "sqlite":
            if not self._reserved:  # descending: the next id is the last
                self._reserved = sorted(repo.reserve_instance_ids(
                    self.conn, n=max(1, self.expected_instances)), reverse=True)
            return self._reserved.pop()
        if self._next_id is None:
            self._next_id = repo.next_instance_id(self.conn)
        instance_id, self._next_id = self._next_id, self._next_id + 1
        return instance_id

    def write_instances(self) -> None:
        """Write the deferred instances, then their edges: call before any statement that
        reads instances or edges, or refers to them."""
        if self.pending_instances:
            repo.insert_instances(self.conn, rows=self.pending_instances)
            repo.insert_edges(self.conn, rows=self.pending_edges)
            self.pending_instances, self.pending_edges = [], []
        self._next_id = None  # another insert may follow: read the next id again

    def flush(self) -> None:
        """Write every kept outbound event of the batch in one statement, and the per-asset
        counters the batch changed."""
        self.write_instances()
        self.written += repo.outbox_add(self.conn, rows=self.committed_outbox)
        self.committed_outbox = []
        self.stats.write(self.conn)

    def prefetch(self, keys: set[tuple[str, str, str]]) -> None:
        """Read the kinds and highest versions of the ``(project, branch, asset)`` a batch
        registers, in a statement or two, instead of two per asset as each is met: with small
        batches those were most of a batch's statements (docs/benchmarks.md)."""
        assets = {(project, asset) for project, _, asset in keys} - self.kinds.keys()
        if assets:
            self.kinds.update(repo.asset_kinds(self.conn, keys=assets))
        versions = sorted(keys - self.versions.keys())
        if versions:
            self.versions.update(repo.max_versions(self.conn, keys=versions))

    def asset_kind(self, project: str, asset: str) -> str | None:
        """The asset's kind, locking its row (PostgreSQL) the first time in this transaction."""
        key = (project, asset)
        if key not in self.kinds:
            row = repo.get_asset(self.conn, project=project, asset=asset, lock=True)
            if row is None:
                return None
            self.kinds[key] = row.kind
        return self.kinds[key]

    def snapshot(self) -> tuple[dict[tuple[str, str, str], int], dict[tuple[str, str], str]]:
        """The per-batch caches, to restore when an event's savepoint rolls back."""
        return dict(self.versions), dict(self.kinds)

    def restore(self, snap: tuple[dict[tuple[str, str, str], int],
                                  dict[tuple[str, str], str]]) -> None:
        """Undo cache changes of a rolled-back event."""
        self.versions, self.kinds = snap
        self.outbox = []
        self.emitted = []
        self.decided = []
        self.stats.drop()

    def next_version(self, project: str, branch: str, asset: str) -> int:
        """The next free version of (project, branch, asset) inside this transaction."""
        key = (project, branch, asset)
        if key not in self.versions:
            self.versions[key] = repo.max_version(
                self.conn, project=project, branch=branch, asset=asset
            )
        return self.versions[key] + 1

    def took_version(self, project: str, branch: str, asset: str, version: int) -> None:
        """Remember that ``version`` is now taken (only after its insert succeeded)."""
        self.versions[(project, branch, asset)] = version
