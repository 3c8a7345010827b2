"""``promotion_requested``: a manual promotion, or a copy into another branch."""

from __future__ import annotations

from assetd.errors import QueryError, RejectedError
from assetd.handlers.decode import Inbound
from assetd.handlers.registration import create_instance
from assetd.handlers.rules_step import after_ready, decide, matched, resolve_ref
from assetd.handlers.tx import Tx
from assetd.registry import repo
from assetd.schemas.inbound import PromotionRequested
from assetd.schemas.outbound import ResolvedInput


def on_promotion_requested(tx: Tx, item: Inbound) -> None:
    """Gates and checks apply unless ``force`` (recorded); ``to_branch`` copies instead."""
    ev, data = item.event, item.data
    assert isinstance(data, PromotionRequested)
    try:
        inst = resolve_ref(tx, project=ev.project, branch=ev.branch, asset=ev.subject,
                           selector=data.instance)
    except QueryError as exc:
        raise RejectedError(exc.message) from None
    if data.to_branch:
        if data.to_branch == ev.branch:
            raise RejectedError(f"to_branch {data.to_branch} is the instance's own branch")
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
        after_ready(tx, copy, cause=ev.id)
        return
    found = matched(tx, inst)
    name, rule = found if found else (None, None)
    request = {"reason": data.reason, "requested_by": data.requested_by or ev.source,
               "force": data.force}
    decide(tx, inst, name, rule, cause=ev.id, alias=data.alias, manual=request)
