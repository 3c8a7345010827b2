"""Every query's real reply matches its model in assetd/schemas/replies.py (which forbids
fields it does not declare), so the documented result and the code cannot drift apart."""

from __future__ import annotations

from typing import Any

from assetd.client import AssetClient
from assetd.daemon.app import Daemon
from assetd.schemas.api import REQUESTS
from assetd.schemas.replies import REPLIES


async def test_every_method_reply_matches_its_model(daemon: Daemon, tmp_path: Any) -> None:
    """Each query method's real reply validates against its reply model."""
    rules = tmp_path / "rules.yaml"
    rules.write_text("version: 1\nrules:\n  - asset: m\n    promote: {metric: f1}\n")
    daemon.rules.path = rules
    assert daemon.rules.reload()
    assert set(REPLIES) == set(REQUESTS), "a reply model per query method"
    async with AssetClient("fraud", settings=daemon.settings, timeout=15) as c:
        await c.register_data("d", tags={"t": "1"}, wait=True)
        await c.register_model("m", annotations={"f1": 0.9}, inputs=["d"], uri="s3://x",
                               event_id="reg-1", wait=True)
        await c.consume("m", consumer={"name": "server"})
        calls: dict[str, dict[str, Any]] = {
            "resolve": {"asset": "m", "instance": "@champion"},
            "assets": {"tags": {"t": "1"}},
            "instances": {"asset": "m", "limit": 10},
            "lineage": {"asset": "d", "direction": "downstream", "depth": 3},
            "compare": {"asset": "m", "a": "v1", "b": "latest"},
            "decisions": {"asset": "m"},
            "timeline": {"asset": "m"},
            "event": {"id": "reg-1"},
            "events_stream": {},
        }
        for method, body in calls.items():
            result = await c.request(method, **body)
            assert result, method
            REPLIES[method].model_validate(result)
