"""``assetctl`` habits (CONTRACT §8): flags anywhere, --version, user data as text, whole rows
when piped, one-line errors, honest outcomes (exit 3 when none arrived, safe re-runs)."""

from __future__ import annotations

import asyncio
import os
import pty
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from assetd import __version__
from assetd.daemon.app import Daemon
from assetd.daemon.embedded import EmbeddedNats
from tests.conftest import daemon_settings, running_daemon
from tests.test_cli import ctl

BIN = Path(sys.executable).parent
MARKUP = "[/x] [bold]raw"
LONG = "l" * 150


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """The command lines do not depend on the database kind: SQLite only."""
    return f"sqlite:///{tmp_path / 'registry.db'}"


async def ctl_url(url: str, *args: str) -> tuple[int, str, str]:
    """``assetctl`` against a NATS URL with no daemon behind it necessarily."""
    env = {**os.environ, "ASSETD_NATS_URL": url, "ASSETD_PROJECT": "fraud"}
    proc = await asyncio.create_subprocess_exec(
        str(BIN / "assetctl"), *args, env=env, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.DEVNULL)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def on_a_terminal(daemon: Daemon, *args: str) -> tuple[int, str]:
    """Run ``assetctl`` with its stdout on a pseudo-terminal 80 columns wide (Rich tables)."""
    import subprocess

    leader, follower = pty.openpty()
    env = {**os.environ, "ASSETD_NATS_URL": daemon.settings.effective_nats_url,
           "ASSETD_PROJECT": "fraud", "COLUMNS": "80", "TERM": "xterm"}
    proc = subprocess.Popen([str(BIN / "assetctl"), *args], stdout=follower,
                            stderr=subprocess.PIPE, env=env)
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the other end closed
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    proc.wait(60)
    return proc.returncode, b"".join(chunks).decode()


def one_line(err: str) -> bool:
    """The error is exactly one line on stderr, and no traceback."""
    return err.count("\n") == 1 and err.endswith("\n") and "Traceback" not in err


async def test_version_and_global_flags_after_the_subcommand(daemon: Daemon) -> None:
    """``--version`` prints the version; --json and -p work after the subcommand too."""
    code, out, _ = await ctl(daemon, "--version")
    assert (code, out) == (0, f"assetctl {__version__}\n")
    assert (await ctl(daemon, "register", "m", "--kind", "model"))[0] == 0
    env_free = ("show", "m", "--json", "-p", "fraud")
    code, out, err = await ctl(daemon, *env_free)
    assert code == 0 and orjson.loads(out)["instance"] == "v1", err
    code, out, _ = await ctl(daemon, "instances", "m", "--project=fraud", "--json")
    assert code == 0 and [i["instance"] for i in orjson.loads(out)["items"]] == ["v1"]


async def test_user_data_is_text_and_piped_rows_are_whole(daemon: Daemon) -> None:
    """Markup-looking annotations print verbatim (terminal and pipe); a 150-character value
    is printed whole when piped (TSV), a row per line."""
    code, _, err = await ctl(daemon, "register", "m", "--kind", "model", "--annotation",
                             f"cfg={MARKUP}", "--annotation", f"note={LONG}", "--tag",
                             "owner=[red]ops[/red]")
    assert code == 0, err
    code, out, err = await ctl(daemon, "show", "m")
    assert code == 0, err
    rows = dict(line.split("\t", 1) for line in out.splitlines())
    assert rows["annotations"] == f"cfg={MARKUP}, note={LONG}"
    assert rows["tags"] == "owner=[red]ops[/red]"
    code, out, _ = await ctl(daemon, "instances", "m")
    header, row = out.splitlines()
    assert header.split("\t")[:5] == ["instance", "state", "validity", "aliases", "annotations"]
    assert row.split("\t")[4] == f"cfg={MARKUP}, note={LONG}"

    code, out = await asyncio.to_thread(on_a_terminal, daemon, "instances", "m")
    assert code == 0 and "MarkupError" not in out
    code, out = await asyncio.to_thread(on_a_terminal, daemon, "history", "m")
    assert code == 0
    await ctl(daemon, "register", "s", "--kind", "data", "--annotation", f"c={MARKUP}")
    code, out = await asyncio.to_thread(on_a_terminal, daemon, "show", "s")
    assert code == 0 and f"c={MARKUP}" in out, out
    assert "…" not in out


async def test_usage_errors_are_one_line(daemon: Daemon) -> None:
    """Missing arguments, unknown options and commands: exit 2, one line saying where help is."""
    for args in (("show",), ("show", "m", "--bogus"), ("bogus",), ("--timeout", "x", "assets")):
        code, out, err = await ctl(daemon, *args)
        assert code == 2 and out == "" and one_line(err), (args, err)
        assert err.startswith("assetctl: ")
    code, _, err = await ctl(daemon, "show")
    assert "(see `assetctl show --help`)" in err


async def test_no_outcome_is_exit_3_and_the_same_event_id_is_safe(
        nc: Any, nats_server: EmbeddedNats, tmp_path: Path, db_url: str) -> None:
    """With the daemon stalled, a registration answers exit 3 naming its --event-id; re-run
    with that id once the daemon is back, it applies once and answers its first outcome."""
    settings = daemon_settings(nats_server.url, db_url, tmp_path)
    async with running_daemon(settings):
        pass  # the streams exist, nobody consumes: a stalled daemon
    args = ("register", "m", "--kind", "model", "--event-id", "run-7-train")
    code, out, err = await ctl_url(nats_server.url, "--timeout", "1", *args)
    assert (code, out) == (3, "") and one_line(err)
    assert "no outcome for event run-7-train within 1s" in err
    assert "re-run with --event-id run-7-train" in err
    async with running_daemon(settings) as d:
        for _ in range(2):
            code, out, err = await ctl(d, *args)
            assert (code, out) == (0, "m v1 registered\n"), err
        code, out, _ = await ctl(d, "--json", "instances", "m")
        assert [i["instance"] for i in orjson.loads(out)["items"]] == ["v1"]
        code, out, _ = await ctl(d, "--json", "event", "run-7-train")
        assert code == 0 and orjson.loads(out)["status"] == "applied"
        code, out, _ = await ctl(d, "event", "never-sent")
        assert code == 3 and "unknown" in out


async def test_missing_streams_and_no_wait(nc: Any, nats_server: EmbeddedNats) -> None:
    """NATS up without assetd's streams: one line saying so; --no-wait says it did not wait."""
    code, out, err = await ctl_url(nats_server.url, "register", "m", "--kind", "data")
    assert (code, out) == (1, "") and one_line(err)
    assert "no JetStream stream takes assetd.in.fraud.main.m.asset_registered" in err


async def test_no_wait_and_tail_with_count_and_timeout(daemon: Daemon) -> None:
    """--no-wait only publishes and says so; ``events tail --count N --timeout T`` returns
    after T with exit 3 when fewer than N events came."""
    code, out, err = await ctl(daemon, "register", "m", "--kind", "data", "--no-wait")
    assert code == 0 and out.startswith("published event ") and "not waiting" in out, err
    code, out, err = await ctl(daemon, "--json", "register", "m", "--kind", "data",
                               "--no-wait")
    assert code == 0 and orjson.loads(out)["status"] == "published"
    code, out, err = await ctl(daemon, "events", "tail", "--count", "50", "--timeout", "1",
                               "--from-start")
    assert code == 3 and one_line(err) and "of 50 events within 1s" in err
    assert len(out.splitlines()) == int(err.split(": ")[1].split(" ")[0])
