"""Hostile rules files: bounded in bytes, YAML nodes (aliases expanded), nesting and rules."""

from __future__ import annotations

import asyncio
import resource
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from assetd.client import AssetClient
from assetd.daemon.app import Daemon
from assetd.daemon.embedded import EmbeddedNats
from assetd.rules import engine, loader
from assetd.rules.loader import MAX_BYTES, MAX_NODES, MAX_RULES, RulesError, parse_rules
from tests.conftest import daemon_settings, run_cli, running_daemon
from tests.helpers import wait_for

GOOD = "version: 1\nrules:\n  - asset: m\n    promote: {metric: f1}\n"


def billion_laughs(levels: int = 9) -> str:
    """A few hundred bytes whose aliases expand to 9**levels strings."""
    out = ["version: 1", 'l0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for n in range(1, levels):
        out.append(f"l{n}: &l{n} [" + ",".join([f"*l{n - 1}"] * 9) + "]")
    out.append(f"rules: [*l{levels - 1}]")
    return "\n".join(out) + "\n"


def many_rules(n: int) -> str:
    """A valid file of ``n`` distinct promotion rules."""
    body = "".join(f"  - asset: m{i}\n    promote: {{metric: f1}}\n" for i in range(n))
    return "version: 1\nrules:\n" + body


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """SQLite is enough here."""
    return f"sqlite:///{tmp_path / 'registry.db'}"


def check(venv_bin: Path, path: Path) -> tuple[int, list[str], str, float]:
    """Run ``assetctl rules check PATH``: exit status, stderr lines, stdout, seconds."""
    t0 = time.monotonic()
    r = run_cli(venv_bin, "assetctl", "rules", "check", str(path), timeout=120)
    return r.returncode, r.stderr.splitlines(), r.stdout, time.monotonic() - t0


def test_billion_laughs_is_refused_fast_by_rules_check(tmp_path: Path, venv_bin: Path) -> None:
    """A 500-byte alias bomb exits 1 within seconds with one line naming the node limit."""
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(billion_laughs())
    assert bomb.stat().st_size < 500
    code, err, out, seconds = check(venv_bin, bomb)
    assert code == 1 and out == "", err
    assert len(err) == 1, err
    assert err[0].startswith(f"{bomb}:") and f"more than {MAX_NODES} nodes" in err[0]
    assert "over the limit" in err[0]
    assert seconds < 30


def test_oversize_file_is_refused_before_it_is_read(tmp_path: Path, venv_bin: Path) -> None:
    """A file one byte over the size limit is refused with its size and the limit."""
    big = tmp_path / "big.yaml"
    big.write_bytes(GOOD.encode() + b"#" * (MAX_BYTES + 1 - len(GOOD)))
    code, err, _, _ = check(venv_bin, big)
    assert code == 1
    assert err == [f"{big}:0: the file is {MAX_BYTES + 1} bytes, over the limit of "
                   f"{MAX_BYTES} bytes for a rules file"]


def test_more_rules_than_the_limit_is_refused(tmp_path: Path, venv_bin: Path) -> None:
    """1,000 rules pass; 1,001 are refused at the first rule over the limit."""
    ok = tmp_path / "ok.yaml"
    ok.write_text(many_rules(MAX_RULES))
    code, err, out, _ = check(venv_bin, ok)
    assert code == 0 and f"ok, {MAX_RULES} rules" in out, err
    over = tmp_path / "over.yaml"
    over.write_text(many_rules(MAX_RULES + 1))
    code, err, _, _ = check(venv_bin, over)
    assert code == 1
    assert err == [f"{over}:{3 + 2 * MAX_RULES}: rules: {MAX_RULES + 1} rules, over the "
                   f"limit of {MAX_RULES} rules in a rules file"]


@pytest.mark.parametrize(("text", "expected"), [
    ("version: 1\nrules: &a [*a]\n", ":2: YAML: alias *a is used inside the node it names"),
    ("version: 1\nrules: " + "[" * 5000 + "]" * 5000 + "\n",
     ":2: YAML: nested deeper than 64 levels"),
    ("version: 1\nrules: []\nx: " + "9" * 5000 + "\n", ":3: YAML: cannot read this value"),
], ids=["self-reference", "deep-nesting", "huge-integer"])
def test_other_hostile_yaml_is_one_line(tmp_path: Path, venv_bin: Path, text: str,
                                        expected: str) -> None:
    """A recursive alias, deep nesting or a 5,000-digit integer is one line, not a traceback."""
    path = tmp_path / "hostile.yaml"
    path.write_text(text)
    code, err, _, _ = check(venv_bin, path)
    assert code == 1 and len(err) == 1, err
    assert err[0].startswith(f"{path}{expected}")


def test_limits_take_keyword_overrides() -> None:
    """Each limit can be lowered per call; aliases within the node limit still load."""
    three = many_rules(3).encode()
    with pytest.raises(RulesError, match="3 rules, over the limit of 2 rules"):
        parse_rules(three, "r.yaml", max_rules=2)
    with pytest.raises(RulesError, match="over the limit of 10 bytes"):
        parse_rules(three, "r.yaml", max_bytes=10)
    shared = (b"version: 1\nrules:\n  - &r {asset: a, promote: {metric: f1}}\n"
              b"  - *r\n  - *r\n")
    assert len(parse_rules(shared).rules.rules) == 3
    with pytest.raises(RulesError, match="more than 12 nodes"):
        parse_rules(shared, max_nodes=12)


def test_first_match_is_remembered_per_rules_file(monkeypatch: pytest.MonkeyPatch) -> None:
    """Matching gives the first matching rule whether remembered or not; a new file starts
    afresh and the memory stays bounded."""
    monkeypatch.setattr(engine, "MATCH_CACHE_SIZE", 2)
    first = parse_rules(b"version: 1\nrules:\n  - {asset: 'a*', promote: {metric: f1}}\n"
                        b"  - {asset: '*', branches: [main], drift: {metric: k, max: 1}}\n")
    for _ in range(2):
        for asset, branch, index in [("ab", "x", 0), ("b", "main", 1), ("b", "dev", None),
                                     ("a", "main", 0)]:
            found = engine.match_rule(first.rules, asset, branch)
            assert (found[0] if found else None) == index
            assert len(first.rules._matches) <= 2
    second = parse_rules(b"version: 1\nrules:\n  - {asset: '*', drift: {metric: k, max: 1}}\n")
    assert engine.match_rule(second.rules, "ab", "x") == (0, second.rules.rules[0])


@pytest.fixture
async def ruled_daemon(nc: Any, nats_server: EmbeddedNats, tmp_path: Path,
                       db_url: str) -> AsyncIterator[Daemon]:
    """A daemon with one promotion rule, polling its rules file every 0.1 s."""
    path = tmp_path / "rules.yaml"
    path.write_text(GOOD)
    settings = daemon_settings(nats_server.url, db_url, tmp_path, rules=path,
                               rules_poll_interval=0.1)
    async with running_daemon(settings) as d:
        yield d


@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss is in KiB on Linux")
async def test_daemon_keeps_its_rules_when_the_file_becomes_a_bomb(
    ruled_daemon: Daemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The poll refuses the bomb once, memory stays bounded, the old rule still decides, and a
    SIGHUP reload returns at once."""
    d = ruled_daemon
    assert d.rules.path is not None and d.rules.current is not None
    old_sha = d.rules.current.sha256
    loads: list[str] = []
    real_load = loader.load_rules

    def counting_load(path: Any, **kw: Any) -> Any:
        loads.append(str(path))
        return real_load(path, **kw)

    monkeypatch.setattr("assetd.daemon.rules_watch.load_rules", counting_load)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    d.rules.path.write_text(billion_laughs())

    async def refused() -> Any:
        return d.rules.last_error

    (line,) = await wait_for(refused, timeout=30, what="the poll to refuse the bomb")
    assert line.startswith(f"{d.rules.path}:") and f"more than {MAX_NODES} nodes" in line
    await asyncio.sleep(1.0)  # ten more polls: the unchanged file is not read again
    assert len(loads) == 1, loads
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    assert grown_mib < 200, f"grew {grown_mib:.0f} MiB"

    t0 = time.monotonic()
    assert d.rules.reload() is False  # what the SIGHUP handler calls
    assert time.monotonic() - t0 < 5
    assert len(loads) == 2 and d.rules.last_error == [line]

    async with AssetClient("fraud", settings=d.settings, timeout=15) as c:
        status = await c.status()
        assert status["rules"]["sha256"] == old_sha and status["rules"]["last_error"] == [line]
        await c.register_model("m", annotations={"f1": 0.5}, wait=True)
        assert (await c.peek("m", "@champion"))["instance"] == "v1"  # the old rule decided
