"""``asset_consumed``: a lineage edge from the resolved instance to its consumer."""

from __future__ import annotations

from typing import Any

from assetd.handlers.decode import Inbound
from assetd.handlers.rules_step import event_instance
from assetd.handlers.tx import Tx
from assetd.registry import repo
from assetd.schemas.inbound import AssetConsumed


def on_consumed(tx: Tx, item: Inbound) -> dict[str, Any]:
    """Record who consumed which ``vN``; the consumer defaults to the event's ``source``."""
    ev, data = item.event, item.data
    assert isinstance(data, AssetConsumed)
    row = event_instance(tx, ev, data.instance)
    info = data.consumer or {}
    name = str(info.get("name") or info.get("id") or ev.source)[:1024]
    repo.insert_edges(tx.conn, rows=[{
        "project": ev.project, "relation": "consumed_by", "upstream_id": row.id,
        "downstream_id": None, "consumer": name, "consumer_info": info or None,
        "event_id": ev.id, "created_at": tx.now,
    }])
    return {"instance": row.name, "consumer": name}
