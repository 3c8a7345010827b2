"""``promotion_requested``: a manual promotion, or a copy into another branch."""

from __future__ import annotations

from typing import Any

from assetd.handlers.decode import Inbound
from assetd.handlers.registration import create_instance
from assetd.handlers.rules_step import (
    after_ready,
    decide,
    event_instance,
    matched,
    move_back,
    refuse,
    waiting,
)
from assetd.handlers.tx import InstanceRef, Tx
from assetd.registry import aliases, repo
from assetd.schemas.inbound import AliasRollbackRequested, PromotionRequested
from assetd.schemas.outbound import ResolvedInput


def on_promotion_requested(tx: Tx, item: Inbound) -> dict[str, Any]:
    """Gates and checks apply unless ``force`` (recorded); ``to_branch`` copies instead."""
    ev, data = item.event, item.data
    assert isinstance(data, PromotionRequested)
    # An invalidated or pending instance is resolved all the same: the rules reject it
    # (invalid_instance), and a copy is refused; neither is bad input for the DLQ.
    inst = event_instance(tx, ev, data.instance, allow_invalid=True)
    if data.to_branch:
        if data.to_branch == ev.branch:
            return refuse(tx, ev, inst.name, f"to_branch {data.to_branch} is the instance's "
                          "own branch", alias=data.alias)
        if (inst.state, inst.validity) != ("ready", "valid"):
            return refuse(tx, ev, inst.name, f"{ev.subject} {inst.name} is {inst.state}/"
                          f"{inst.validity}; only a ready, valid instance can be copied",
                          alias=data.alias)
        row = repo.resolve(tx.conn, project=ev.project, branch=ev.branch, asset=ev.subject,
                           selector=inst.name)
        copy = create_instance(
            tx, project=ev.project, branch=data.to_branch, asset=ev.subject, kind=row.kind,
            annotations={**row.annotations, "promoted_from_branch": ev.branch,
                         "promoted_from_instance": inst.name},
            tags=dict(row.tags), reference=dict(row.reference), producer=row.producer,
            state="ready", cause=ev.id,
            inputs=[(inst.id, ResolvedInput(asset=ev.subject, branch=ev.branch,
                                            instance=inst.name))])
        return {"instance": inst.name,
                "copied_to": {"branch": data.to_branch, "instance": copy.name},
                **waiting(after_ready(tx, copy, cause=ev.id))}
    found = matched(tx, inst)
    name, rule = found if found else (None, None)
    request = {"reason": data.reason, "requested_by": data.requested_by or ev.source,
               "force": data.force}
    decide(tx, inst, name, rule, cause=ev.id, alias=data.alias, manual=request)
    return {"instance": inst.name, "alias": data.alias}


def on_rollback_requested(tx: Tx, item: Inbound) -> dict[str, Any]:
    """Move an alias back to ``to``, or to the newest earlier holder that is still valid."""
    ev, data = item.event, item.data
    assert isinstance(data, AliasRollbackRequested)
    alias = data.alias
    if tx.asset_kind(ev.project, ev.subject) is None:
        return refuse(tx, ev, None, f"no asset {ev.subject} in project {ev.project}",
                      alias=alias)
    held = aliases.holder(tx.conn, project=ev.project, branch=ev.branch, asset=ev.subject,
                          alias=alias)
    if held is None:
        return refuse(tx, ev, None, f"{ev.subject}@{alias} on {ev.branch} has no holder",
                      alias=alias)
    current = InstanceRef.of(held)
    if data.to:
        target = event_instance(tx, ev, data.to, allow_invalid=True)
        if (target.state, target.validity) != ("ready", "valid"):
            return refuse(tx, ev, current.name, f"{ev.subject} {target.name} is "
                          f"{target.state}/{target.validity}; only a ready, valid instance "
                          f"can hold {alias}", alias=alias)
        if target.id == current.id:
            return refuse(tx, ev, current.name, f"{target.name} already holds {alias}",
                          alias=alias)
    else:
        back = aliases.previous_valid_holder(tx.conn, project=ev.project, branch=ev.branch,
                                             asset=ev.subject, alias=alias,
                                             current_id=current.id)
        if back is None:
            return refuse(tx, ev, current.name, f"no earlier valid holder of {alias}; name "
                          "one with --to", alias=alias)
        target = InstanceRef.of(back)
    move_back(tx, current, data.alias, target, reason=data.reason, cause=ev.id,
              request={"requested_by": data.requested_by or ev.source, "to": data.to})
    return {"alias": data.alias, "from": current.name, "to": target.name}
