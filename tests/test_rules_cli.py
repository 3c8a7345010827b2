"""``assetctl rules check|simulate``, ``promote``, ``history``, ``report-quality|drift``."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from assetd.client import AssetClient
from assetd.daemon.app import Daemon
from assetd.daemon.demo import DEMO_RULES, pipeline
from assetd.daemon.embedded import EmbeddedNats
from tests.conftest import daemon_settings, run_cli, running_daemon
from tests.helpers import out_events, wait_for
from tests.test_cli import ctl

BIN = Path(sys.executable).parent


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """SQLite only: the command lines do not depend on the database."""
    return f"sqlite:///{tmp_path / 'registry.db'}"


@pytest.fixture
async def demo_daemon(nc: Any, nats_server: EmbeddedNats, tmp_path: Path,
                      db_url: str) -> AsyncIterator[Daemon]:
    """A daemon with the demo's rules in force."""
    path = tmp_path / "rules.yaml"
    path.write_text(DEMO_RULES)
    async with running_daemon(daemon_settings(nats_server.url, db_url, tmp_path, rules=path)) as d:
        yield d


def test_rules_check_ok_and_errors(tmp_path: Path) -> None:
    """Valid: exit 0 and a summary; invalid: exit 1 and one FILE:LINE line per problem."""
    good = tmp_path / "good.yaml"
    good.write_text(DEMO_RULES)
    r = run_cli(BIN, "assetctl", "rules", "check", str(good))
    assert r.returncode == 0 and f"{good}: ok, 2 rules" in r.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text(DEMO_RULES.replace("min: 0.75", "min: high")
                   .replace("max: 0.2", "max: 0.2\n      retrain: [a.b]")
                   .replace("direction: maximize", "direction: up"))
    r = run_cli(BIN, "assetctl", "rules", "check", str(bad))
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.splitlines() == [
        f"{bad}:5: rules.0.gates.0.min: Input should be a valid number, unable to parse "
        "string as a number",
        f"{bad}:9: rules.0.promote.direction: Input should be 'maximize' or 'minimize'",
        f"{bad}:15: rules.1.drift.retrain.0: String should match pattern "
        "'^[A-Za-z0-9_-]{1,128}$'",
    ]
    yaml_error = tmp_path / "broken.yaml"
    yaml_error.write_text("version: 1\nrules:\n  - asset: [unclosed\n")
    r = run_cli(BIN, "assetctl", "rules", "check", str(yaml_error))
    assert r.returncode == 1 and r.stderr.startswith(f"{yaml_error}:4: YAML: ")


async def test_simulate_reproduces_the_demo_and_shows_a_stricter_file(
    demo_daemon: Daemon, js: Any, tmp_path: Path
) -> None:
    """Same rules: every step matches the recorded champion; stricter: the differences show."""
    async with AssetClient("fraud", settings=demo_daemon.settings) as c:
        await pipeline(c)
    await wait_for(lambda: out_events(js, "retrain_required"), what="demo finished")
    same = tmp_path / "same.yaml"
    same.write_text(DEMO_RULES)
    code, out, err = await ctl(demo_daemon, "--json", "rules", "simulate", str(same),
                               "--asset", "fraud_model")
    assert code == 0, err
    result = orjson.loads(out)
    assert result["differences"] == 0, result
    assert [s["actual"] for s in result["steps"]] == ["v1", "v2", "v2", "v2"]

    strict = tmp_path / "strict.yaml"
    strict.write_text(DEMO_RULES.replace("min_improvement: 0.02", "min_improvement: 0.05"))
    code, out, _ = await ctl(demo_daemon, "--json", "rules", "simulate", str(strict),
                             "--asset", "fraud_model")
    steps = orjson.loads(out)["steps"]
    assert [(s["simulated"], s["actual"]) for s in steps] == [
        ("v1", "v1"), ("v1", "v2"), ("v1", "v2"), ("v1", "v2")]
    assert steps[1]["decision"] == "rejected (insufficient_improvement)"
    code, out, _ = await ctl(demo_daemon, "rules", "simulate", str(strict),
                             "--asset", "fraud_model")
    assert code == 0 and "3 of 4 steps differ" in out


async def test_promote_history_and_reports(demo_daemon: Daemon, js: Any) -> None:
    """Manual promotion with --force, the decision log, quality and drift reports."""
    for f1 in ("0.90", "0.60"):
        code, _, err = await ctl(demo_daemon, "register", "fraud_model", "--kind", "model",
                                 "--annotation", f"f1_score={f1}")
        assert code == 0, err
    code, _, err = await ctl(demo_daemon, "promote", "fraud_model", "v2", "--reason", "try")
    assert code == 1 and "promotion rejected: gates_failed" in err
    code, out, err = await ctl(demo_daemon, "promote", "fraud_model", "v2", "--reason",
                               "rollback drill", "--force")
    assert code == 0 and "fraud_model v2 is now champion (was v1)" in out, err
    code, out, err = await ctl(demo_daemon, "promote", "fraud_model", "v1", "--reason", "ship",
                               "--to-branch", "release/2")  # that branch's rules decide
    assert (code, out) == (0, "fraud_model v1 copied to release/2 as v1; promoted to champion "
                              "(was nobody; f1_score 0.9)\n"), err
    code, out, _ = await ctl(demo_daemon, "--json", "history", "fraud_model")
    rows = orjson.loads(out)
    assert rows[0]["outcome"] == "promoted" and rows[0]["inputs"]["forced"] is True
    assert rows[0]["inputs"]["request"]["reason"] == "rollback drill"
    code, out, _ = await ctl(demo_daemon, "history", "fraud_model")
    assert code == 0 and "promoted" in out and "gates_failed" in out

    code, out, _ = await ctl(demo_daemon, "report-quality", "fraud_model", "v1", "--check",
                             "holdout", "--failed", "--metric", "auc=0.7")
    assert code == 0 and out == "fraud_model v1: holdout failed recorded\n"
    code, _, err = await ctl(demo_daemon, "register", "transactions", "--kind", "data")
    assert code == 0, err
    code, _, err = await ctl(demo_daemon, "register", "fraud_model", "--kind", "model",
                             "--input", "transactions")  # drift targets: models fed by it
    assert code == 0, err
    code, out, _ = await ctl(demo_daemon, "report-drift", "transactions", "--metric", "psi",
                             "--score", "0.5")
    assert code == 0 and out.startswith("transactions v1: psi=0.5 recorded; retrain_required "
                                        "for fraud_model@main (psi 0.5 > 0.2")
    code, out, err = await ctl(demo_daemon, "report-drift", "ghost", "--metric", "psi",
                               "--score", "0.5")  # dead-lettered: said so, never "done"
    assert (code, out) == (1, "") and err.count("\n") == 1
    assert err.startswith("assetctl: rejected (dead-lettered, see `assetctl dlq list`): ")
    (ev,) = await wait_for(lambda: out_events(js, "retrain_required"), what="retrain")
    assert ev["_subject"] == "assetd.out.fraud.main.fraud_model.retrain_required"
    code, _, err = await ctl(demo_daemon, "report-drift", "transactions", "--metric", "psi")
    assert code == 2 and "--score" in err


def test_sighup_reloads_rules_of_a_running_daemon(tmp_path: Path, nats_server: EmbeddedNats,
                                                  venv_bin: Path) -> None:
    """``kill -HUP`` reloads the file (with file polling effectively off)."""
    import os
    import signal
    import subprocess
    import time

    rules = tmp_path / "rules.yaml"
    rules.write_text(DEMO_RULES)
    env = {**os.environ, "ASSETD_NATS_URL": nats_server.url, "ASSETD_HTTP_PORT": "0",
           "ASSETD_DB_URL": f"sqlite:///{tmp_path / 'r.db'}", "ASSETD_RULES": str(rules),
           "ASSETD_DATA_DIR": str(tmp_path / "d"), "ASSETD_RULES_POLL_INTERVAL": "3600"}
    proc = subprocess.Popen([str(venv_bin / "assetd"), "run"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ask = [str(venv_bin / "assetctl"), "--nats-url", nats_server.url, "--json", "status"]

    def rules_status() -> dict[str, Any] | None:
        r = subprocess.run(ask, capture_output=True, text=True, timeout=30)
        return orjson.loads(r.stdout)["rules"] if r.returncode == 0 else None

    def until(cond: Any, what: str) -> Any:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if (value := cond()):
                return value
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}")

    try:
        first = until(rules_status, "daemon up")
        rules.write_text(DEMO_RULES.replace("max: 0.2", "max: 0.3"))
        proc.send_signal(signal.SIGHUP)
        second = until(lambda: (s := rules_status()) and s["sha256"] != first["sha256"] and s,
                       "reload on SIGHUP")
        assert second["count"] == 2 and second["last_error"] is None
    finally:
        proc.terminate()
        proc.wait(30)
