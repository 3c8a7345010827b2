"""``asset_defined`` and ``asset_registered``: definitions, new instances, input lineage."""

from __future__ import annotations

from typing import Any

from assetd.errors import QueryError, RejectedError
from assetd.handlers.decode import Inbound
from assetd.handlers.rules_step import after_ready, waiting
from assetd.handlers.tx import InstanceRef, Tx
from assetd.registry import repo
from assetd.schemas.inbound import AssetDefined, AssetRegistered
from assetd.schemas.outbound import InstanceCreated, ResolvedInput


def on_defined(tx: Tx, item: Inbound) -> dict[str, Any]:
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
    return {"kind": data.kind}


def on_registered(tx: Tx, item: Inbound) -> dict[str, Any]:
    """Allocate ``vN``, insert the instance and its input edges, queue ``instance_created``,
    then run the rules for a ready instance; return the instance for the ``event`` query."""
    ev, data = item.event, item.data
    assert isinstance(data, AssetRegistered)
    inputs = _resolve_inputs(tx, item)
    inst = create_instance(
        tx, project=ev.project, branch=ev.branch, asset=ev.subject, kind=data.kind,
        annotations=data.annotations, tags=data.tags,
        reference=data.reference.model_dump(exclude_none=True), producer=ev.source,
        state=data.state, inputs=inputs, cause=ev.id)
    result: dict[str, Any] = {"instance": inst.name, "version": inst.version,
                              "state": inst.state}
    if inst.state == "ready":
        result.update(waiting(after_ready(tx, inst, cause=ev.id)))
    return result


def create_instance(
    tx: Tx, *, project: str, branch: str, asset: str, kind: str, annotations: dict[str, Any],
    tags: dict[str, str], reference: dict[str, Any], producer: str, state: str,
    inputs: list[tuple[int, ResolvedInput]], cause: str,
) -> InstanceRef:
    """The next ``vN`` of (project, branch, asset) with its input edges and instance_created."""
    known = tx.asset_kind(project, asset)
    if known is None:
        repo.upsert_asset(tx.conn, project=project, asset=asset, values={"kind": kind},
                          now=tx.now)
        known = tx.asset_kind(project, asset)
    if known != kind:
        raise RejectedError(
            f"asset {asset} is defined as {known}; this registration says {kind}")
    version = tx.next_version(project, branch, asset)
    instance_id = tx.insert_instance({
        "project": project, "branch": branch, "asset": asset, "version": version,
        "kind": kind, "state": state, "validity": "valid", "annotations": annotations,
        "tags": tags, "reference": reference, "producer": producer, "event_id": cause,
        "created_at": tx.now, "updated_at": tx.now,
    }, [{"project": project, "relation": "input", "upstream_id": up_id,
         "consumer": None, "consumer_info": None, "event_id": cause, "created_at": tx.now}
        for up_id, _ in inputs])
    tx.took_version(project, branch, asset, version)
    tx.stats.created((project, branch, asset), version if state == "ready" else None)
    # instance_created as its model would dump it, without validating again what the
    # inbound model (or the registry) already holds: model + dump were ~5 % of the daemon's
    # time under load (docs/benchmarks.md; tests/test_hot_path.py checks it against the model)
    tx.emit_json(project=project, branch=branch, asset=asset, cause=cause,
                 type_=InstanceCreated.TYPE, body={
                     "instance": f"v{version}", "version": version, "kind": kind,
                     "annotations": annotations, "tags": tags, "reference": reference,
                     "inputs": [ref.model_dump() for _, ref in inputs], "producer": producer,
                     "state": state})
    return InstanceRef(instance_id, project, branch, asset, version, kind, state, "valid",
                       annotations)


def _resolve_inputs(tx: Tx, item: Inbound) -> list[tuple[int, ResolvedInput]]:
    ev, data = item.event, item.data
    resolved: list[tuple[int, ResolvedInput]] = []
    if data.inputs:
        tx.write_instances()  # an input may be an instance of this batch
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
