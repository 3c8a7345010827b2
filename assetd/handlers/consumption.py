"""``asset_consumed``: a lineage edge from the resolved instance to its consumer."""

from __future__ import annotations

from assetd.errors import QueryError, RejectedError
from assetd.handlers.decode import Inbound
from assetd.handlers.tx import Tx
from assetd.registry import repo
from assetd.schemas.inbound import AssetConsumed


def on_consumed(tx: Tx, item: Inbound) -> None:
    """Record who consumed which ``vN``; the consumer defaults to the event's ``source``."""
    ev, data = item.event, item.data
    assert isinstance(data, AssetConsumed)
    try:
        row = repo.resolve(tx.conn, project=ev.project, branch=ev.branch, asset=ev.subject,
                           selector=data.instance)
    except QueryError as exc:
        raise RejectedError(exc.message) from None
    info = data.consumer or {}
    name = info.get("name") or info.get("id") or ev.source
    repo.insert_edges(tx.conn, rows=[{
        "project": ev.project, "relation": "consumed_by", "upstream_id": row.id,
        "downstream_id": None, "consumer": str(name)[:1024], "consumer_info": info or None,
        "event_id": ev.id, "created_at": tx.now,
    }])
