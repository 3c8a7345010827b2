"""The blocking client and the settings sources (flags > ASSETD_* > assetd.toml)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from assetd.client import SyncAssetClient
from assetd.config import load_settings
from assetd.daemon.app import Daemon


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """SQLite is enough for client behaviour."""
    return f"sqlite:///{tmp_path / 'registry.db'}"


async def test_sync_client_round_trip(daemon: Daemon) -> None:
    """SyncAssetClient registers, waits for vN, consumes and lists from plain blocking code."""

    def pipeline() -> tuple[str, str, list[str]]:
        with SyncAssetClient("fraud", settings=daemon.settings, source="flows/x/1") as c:
            d = c.register_data("features", annotations={"rows": 3}, wait=True)
            m = c.register_model("fraud_model", inputs=[f"features@{d['instance']}"],
                                 wait=True)
            used = c.consume("fraud_model")
            names = [a["asset"] for a in c.list_assets()]
            assert m["instance"] == "v1" and used["producer"] == "flows/x/1"
            return d["instance"], used["instance"], names

    data_v, used_v, names = await asyncio.to_thread(pipeline)
    assert (data_v, used_v, sorted(names)) == ("v1", "v1", ["features", "fraud_model"])


def test_settings_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A flag beats ASSETD_*, which beats assetd.toml, which beats the default."""
    monkeypatch.chdir(tmp_path)
    for key in [k for k in os.environ if k.startswith("ASSETD_")]:
        monkeypatch.delenv(key)
    (tmp_path / "assetd.toml").write_text('project = "from_toml"\nbranch = "toml"\n'
                                          'batch_size = 7\n')
    s = load_settings()
    assert (s.project, s.branch, s.batch_size) == ("from_toml", "toml", 7)
    monkeypatch.setenv("ASSETD_PROJECT", "from_env")
    assert load_settings().project == "from_env"
    assert load_settings(project="from_flag").project == "from_flag"
    assert load_settings().effective_db_url == "sqlite:///.assetd/registry.db"
    assert load_settings().effective_nats_url == "nats://127.0.0.1:4223"


def test_credentials_never_reach_a_log_line() -> None:
    """URLs are redacted before logging: passwords and tokens become ***."""
    from assetd.logs import redact_url

    assert redact_url("nats://alice:s3cret@nats:4222") == "nats://alice:***@nats:4222"
    assert redact_url("nats://t0ken@nats:4222") == "nats://***@nats:4222"
    assert redact_url("nats://127.0.0.1:4222") == "nats://127.0.0.1:4222"
