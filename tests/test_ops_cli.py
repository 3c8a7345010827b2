"""Runbook commands: rollback, invalidate/deprecate/restore, events tail, status."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from assetd.client import AssetClient
from assetd.daemon.app import Daemon
from assetd.daemon.demo import pipeline
from tests.helpers import out_events, wait_for
from tests.test_cli import ctl
from tests.test_rules_cli import demo_daemon  # noqa: F401 - the fixture

BIN = Path(sys.executable).parent


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """SQLite only: the command lines do not depend on the database."""
    return f"sqlite:///{tmp_path / 'registry.db'}"


async def test_bad_model_rollback_invalidate_restore(demo_daemon: Daemon, js: Any) -> None:  # noqa: F811
    """The runbook's 'a bad model was promoted' section, command by command."""
    async with AssetClient("fraud", settings=demo_daemon.settings) as c:
        await pipeline(c)  # champion: v1 then v2
    await wait_for(lambda: out_events(js, "retrain_required"), what="demo done")

    tail = asyncio.create_task(ctl(demo_daemon, "events", "tail", "--type",
                                   "alias_rolled_back", "--count", "2", "--from-start"))
    code, out, err = await ctl(demo_daemon, "rollback", "fraud_model", "--reason",
                               "bad predictions", "--yes")
    assert code == 0 and out.strip() == "fraud_model champion: v2 -> v1", err
    code, out, _ = await ctl(demo_daemon, "rollback", "fraud_model", "--to", "v2",
                             "--reason", "false alarm", "--yes")
    assert code == 0 and out.strip() == "fraud_model champion: v1 -> v2"
    code, out, _ = await asyncio.wait_for(tail, 60)
    lines = out.strip().splitlines()
    assert len(lines) == 2 and "alias_rolled_back" in lines[0] and "from=v2, to=v1" in lines[0]

    code, out, err = await ctl(demo_daemon, "invalidate", "fraud_model", "v2", "--reason",
                               "label leak", "--yes")
    assert code == 0 and "fraud_model v2 is invalidated" in out, err
    code, out, _ = await ctl(demo_daemon, "--json", "show", "fraud_model@champion")
    assert orjson.loads(out)["instance"] == "v1", "invalidation rolled the alias back"
    code, _, err = await ctl(demo_daemon, "promote", "fraud_model", "v2", "--reason", "again")
    assert code == 1 and err.startswith("assetctl: promotion rejected: invalid_instance"), err
    code, out, _ = await ctl(demo_daemon, "restore", "fraud_model", "v2", "--reason", "fixed")
    assert code == 0 and "fraud_model v2 is valid" in out
    code, out, _ = await ctl(demo_daemon, "deprecate", "fraud_model", "v1", "--reason", "old")
    assert code == 0 and "fraud_model v1 is deprecated; holds champion" in out

    code, _, err = await ctl(demo_daemon, "rollback", "fraud_model", "--alias", "canary",
                             "--reason", "x", "--yes")
    assert code == 1 and err == "assetctl: refused: fraud_model@canary on main has no holder\n"
    code, out, _ = await ctl(demo_daemon, "--json", "dlq", "list")
    assert code == 0 and orjson.loads(out) == [], "a refusal is not a dead letter"
    rows = orjson.loads((await ctl(demo_daemon, "--json", "history", "fraud_model"))[1])
    assert (rows[0]["outcome"], rows[0]["inputs"]["reason"]) == \
        ("refused", "fraud_model@canary on main has no holder")
    code, _, err = await ctl(demo_daemon, "invalidate", "fraud_model", "v9", "--reason", "x",
                             "--yes")
    assert code == 1 and "no instance fraud_model@v9" in err
    rows = orjson.loads((await ctl(demo_daemon, "--json", "history", "fraud_model"))[1])
    assert [r["outcome"] for r in rows[:5]] == ["refused", "rejected"] + ["rolled_back"] * 3


async def test_destructive_commands_ask_first(demo_daemon: Daemon) -> None:  # noqa: F811
    """Without --yes and with no terminal to answer on, invalidate and rollback publish
    nothing and say to pass --yes (a usage error)."""
    env = {**os.environ, "ASSETD_NATS_URL": demo_daemon.settings.effective_nats_url,
           "ASSETD_PROJECT": "fraud"}
    for args in (["invalidate", "m", "v1", "--reason", "x"], ["rollback", "m", "--reason", "x"]):
        proc = await asyncio.create_subprocess_exec(
            str(BIN / "assetctl"), *args, env=env, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await proc.communicate()
        assert proc.returncode == 2 and out == b"", args
        assert err.endswith(b"needs confirmation: pass --yes (stdin is not a terminal)\n")
        assert err.count(b"\n") == 1


async def test_status_shows_lag_outbox_dlq_rules(demo_daemon: Daemon) -> None:  # noqa: F811
    """status reports what an operator checks first."""
    code, out, _ = await ctl(demo_daemon, "--json", "status")
    st = orjson.loads(out)
    assert code == 0 and st["lag"] == 0 and st["outbox_pending"] == 0 and st["dlq_depth"] == 0
    assert st["rules"]["count"] == 2
