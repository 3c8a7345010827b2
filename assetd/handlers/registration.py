"""``asset_defined`` and ``asset_registered``: definitions, new instances, input lineage."""

from __future__ import annotations

from assetd.errors import QueryError, RejectedError
from assetd.handlers.decode import Inbound
from assetd.handlers.tx import Tx
from assetd.registry import repo
from assetd.schemas.inbound import AssetDefined, AssetRegistered
from assetd.schemas.outbound import InstanceCreated, ResolvedInput


def on_defined(tx: Tx, item: Inbound) -> None:
    """Upsert the asset's definition; its kind cannot change once it has instances."""
    ev, data = item.event, item.data
    assert isinstance(data, AssetDefined)
    current = repo.get_asset(tx.conn, project=ev.project, asset=ev.subject, lock=True)
    if current is not None and current.kind != data.kind and repo.has_instances(
        tx.conn, project=ev.project, asset=ev.subject
    ):
        raise RejectedError(
            f"asset {ev.subject} is a {current.kind} asset with instances; kind cannot become "
            f"{data.kind}"
        )
    values = data.model_dump(exclude_unset=True)
    values["kind"] = data.kind
    repo.upsert_asset(tx.conn, project=ev.project, asset=ev.subject, values=values,
                      now=tx.now)
    tx.kinds[(ev.project, ev.subject)] = data.kind


def on_registered(tx: Tx, item: Inbound) -> None:
    """Allocate ``vN``, insert the instance and its input edges, queue ``instance_created``."""
    ev, data = item.event, item.data
    assert isinstance(data, AssetRegistered)
    inputs = _resolve_inputs(tx, item)
    kind = tx.asset_kind(ev.project, ev.subject)
    if kind is None:
        repo.upsert_asset(tx.conn, project=ev.project, asset=ev.subject,
                          values={"kind": data.kind}, now=tx.now)
        kind = tx.asset_kind(ev.project, ev.subject)
    if kind != data.kind:
        raise RejectedError(
            f"asset {ev.subject} is defined as {kind}; this registration says {data.kind}"
        )
    version = tx.next_version(ev.project, ev.branch, ev.subject)
    reference = data.reference.model_dump(exclude_none=True)
    instance_id = repo.insert_instance(tx.conn, values={
        "project": ev.project, "branch": ev.branch, "asset": ev.subject, "version": version,
        "kind": data.kind, "state": data.state, "validity": "valid",
        "annotations": data.annotations, "tags": data.tags, "reference": reference,
        "producer": ev.source, "event_id": ev.id,
        "created_at": tx.now, "updated_at": tx.now,
    })
    tx.took_version(ev.project, ev.branch, ev.subject, version)
    repo.insert_edges(tx.conn, rows=[
        {"project": ev.project, "relation": "input", "upstream_id": up_id,
         "downstream_id": instance_id, "consumer": None, "consumer_info": None,
         "event_id": ev.id, "created_at": tx.now}
        for up_id, _ in inputs
    ])
    tx.emit(project=ev.project, branch=ev.branch, asset=ev.subject, type_="instance_created",
            cause=ev.id, data=InstanceCreated(
                instance=f"v{version}", version=version, kind=data.kind,
                annotations=data.annotations, tags=data.tags, reference=reference,
                inputs=[ref for _, ref in inputs], state=data.state, producer=ev.source))


def _resolve_inputs(tx: Tx, item: Inbound) -> list[tuple[int, ResolvedInput]]:
    ev, data = item.event, item.data
    resolved: list[tuple[int, ResolvedInput]] = []
    for i, ref in enumerate(data.inputs):
        branch = ref.branch or ev.branch
        try:
            row = repo.resolve(tx.conn, project=ev.project, branch=branch, asset=ref.asset,
                               selector=ref.instance)
        except QueryError as exc:
            raise RejectedError(f"inputs.{i}: {exc.message}") from None
        resolved.append(
            (row.id, ResolvedInput(asset=ref.asset, branch=branch, instance=f"v{row.version}"))
        )
    return resolved
