"""Moving from SQLite to PostgreSQL: ``assetd copy-registry`` and a daemon on the copy."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from assetd.client import AssetClient
from assetd.daemon.app import Daemon
from assetd.daemon.demo import DEMO_RULES, pipeline
from assetd.daemon.embedded import EmbeddedNats
from tests.conftest import daemon_settings, run_cli
from tests.helpers import out_events, wait_for


async def test_sqlite_to_postgres(nc: Any, js: Any, nats_server: EmbeddedNats, pg_url: str,
                                  tmp_path: Path, venv_bin: Path) -> None:
    """The copy keeps instances, lineage, aliases, decisions and the inbox; a daemon on
    PostgreSQL carries on where the SQLite one stopped."""
    rules = tmp_path / "rules.yaml"
    rules.write_text(DEMO_RULES)
    sqlite_url = f"sqlite:///{tmp_path / 'registry.db'}"
    old = Daemon(daemon_settings(nats_server.url, sqlite_url, tmp_path, rules=rules))
    await old.start()
    async with AssetClient("fraud", settings=old.settings) as c:
        await pipeline(c)
        await wait_for(lambda: out_events(js, "retrain_required"), what="demo done")
        before = await c.request("decisions", asset="fraud_model", limit=500)
    await old.stop()

    r = await asyncio.to_thread(run_cli, venv_bin, "assetd", "copy-registry", "--from",
                                sqlite_url, "--to", pg_url)
    assert r.returncode == 0, r.stderr
    assert "instance: 5 rows" in r.stdout and "copied" in r.stdout
    again = await asyncio.to_thread(run_cli, venv_bin, "assetd", "copy-registry", "--from",
                                    sqlite_url, "--to", pg_url)
    assert again.returncode == 1 and "not empty" in again.stderr

    new = Daemon(daemon_settings(nats_server.url, pg_url, tmp_path / "pg", rules=rules))
    await new.start()
    try:
        async with AssetClient("fraud", settings=new.settings) as c:
            assert (await c.peek("fraud_model", "@champion"))["instance"] == "v2"
            assert await c.request("decisions", asset="fraud_model", limit=500) == before
            m = await c.register_model("fraud_model", annotations={"f1_score": 0.99},
                                       inputs=["transactions"], wait=True)
            assert m["instance"] == "v5", "versions continue"
            await wait_for(lambda: _champion(c, "v5"), what="rules keep working")
    finally:
        await new.stop()


async def _champion(c: AssetClient, v: str) -> bool:
    return bool((await c.peek("fraud_model", "@champion"))["instance"] == v)
