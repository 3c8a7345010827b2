"""``instance_updated``: finalize a pending instance, or change its validity."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from assetd.errors import RejectedError
from assetd.handlers.decode import Inbound
from assetd.handlers.rules_step import after_ready, event_instance, roll_back_aliases, waiting
from assetd.handlers.tx import Tx
from assetd.registry import aliases, repo
from assetd.schemas.inbound import InstanceUpdated


def on_updated(tx: Tx, item: Inbound) -> dict[str, Any]:
    """Apply a state change (only from ``pending``) and/or a validity change."""
    ev, data = item.event, item.data
    assert isinstance(data, InstanceUpdated)
    if data.state is None and data.validity is None:
        raise RejectedError("instance_updated needs state or validity (or both)")
    row = event_instance(tx, ev, data.instance, allow_invalid=True)
    values: dict[str, object] = {"updated_at": tx.now}
    if data.state is not None and data.state != row.state:
        if row.state != "pending":
            raise RejectedError(
                f"{ev.subject} {data.instance} is {row.state}; only a pending instance can "
                f"become {data.state}"
            )
        values["state"] = data.state
    if data.validity is not None:
        values["validity"] = data.validity
    repo.update_instance(tx.conn, instance_id=row.id, values=values)
    tx.stats.changed((row.project, row.branch, row.asset))
    inst = replace(row, state=str(values.get("state", row.state)),
                   validity=str(values.get("validity", row.validity)))
    result: dict[str, Any] = {"instance": inst.name, "state": inst.state,
                              "validity": inst.validity}
    if data.validity == "invalidated" and row.validity != "invalidated":
        roll_back_aliases(tx, inst, reason=data.reason, cause=ev.id)
    if row.state == "pending" and inst.state == "ready" and inst.validity == "valid":
        result.update(waiting(after_ready(tx, inst, cause=ev.id)))
    result["aliases"] = aliases.aliases_held(tx.conn, instance_id=inst.id)
    return result
