"""Rules files that cannot lie: duplicate keys are refused, rules that can never match warn."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from assetd.daemon import rules_watch
from assetd.daemon.rules_watch import RulesHolder
from assetd.rules.coverage import branches_cover, dead_rules, glob_covers
from assetd.rules.loader import RulesError, load_rules, parse_rules
from assetd.schemas.rules import Rule
from tests.conftest import run_cli

GOOD = "version: 1\nrules:\n  - asset: fraud_model\n    promote: {metric: f1}\n"
DEAD = ("version: 1\nrules:\n"
        "  - asset: '*'\n    drift: {metric: ks, max: 0.1}\n"
        "  - asset: fraud_model\n    branches: [main]\n    promote: {metric: f1}\n")
DEAD_LINE = ('warning: rule fraud_model (rules[1]) can never match: rules[0] ("*", line 3) '
             "matches every asset and branch it matches")


def rule(asset: str, branches: list[str] | None = None) -> Rule:
    """A promotion rule on ``asset`` (and ``branches``)."""
    return Rule.model_validate({"asset": asset, "branches": branches,
                                "promote": {"metric": "f1"}})


@pytest.mark.parametrize(("text", "line", "key", "first"), [
    ("version: 1\nrules:\n  - asset: m\n    gates: [{metric: a, min: 1}]\n"
     "    promote: {metric: f1}\n    gates: [{metric: b, min: 2}]\n", 6, "gates", 4),
    ("version: 1\nrules:\n  - asset: m\n    asset: n\n    promote: {metric: f1}\n",
     4, "asset", 3),
    ("version: 1\nrules: []\nrules:\n  - {asset: m, promote: {metric: f1}}\n", 3, "rules", 2),
    ("version: 1\nrules:\n  - {asset: m, promote: {metric: f1, metric: f2}}\n", 3, "metric", 3),
], ids=["gates", "asset", "top-level-rules", "flow-mapping"])
def test_duplicate_key_is_refused_by_rules_check(tmp_path: Path, venv_bin: Path, text: str,
                                                 line: int, key: str, first: int) -> None:
    """A key given twice in one mapping exits 1 with one FILE:LINE line naming both lines."""
    path = tmp_path / "dup.yaml"
    path.write_text(text)
    r = run_cli(venv_bin, "assetctl", "rules", "check", str(path))
    assert r.returncode == 1 and r.stdout == "", r.stderr
    assert r.stderr.splitlines() == [
        f"{path}:{line}: YAML: duplicate key '{key}' (first at line {first})"]
    assert "Traceback" not in r.stderr


def test_duplicate_key_inside_a_merged_mapping_is_refused() -> None:
    """A mapping only reached through a ``<<`` merge is checked too."""
    text = b"version: 1\nrules:\n  - {asset: m, promote: {<<: {metric: a, metric: b}}}\n"
    with pytest.raises(RulesError) as exc:
        parse_rules(text, "r.yaml")
    assert exc.value.errors == ["r.yaml:3: YAML: duplicate key 'metric' (first at line 3)"]


def test_a_merge_may_still_be_overridden() -> None:
    """A key that overrides one brought in by ``<<`` is not a duplicate."""
    text = (b"version: 1\nrules:\n  - &r {asset: a, promote: {metric: f1}}\n"
            b"  - {<<: *r, asset: b}\n")
    loaded = parse_rules(text, "r.yaml")
    assert [r.asset for r in loaded.rules.rules] == ["a", "b"] and loaded.warnings == ()


def test_daemon_reload_refuses_a_duplicate_key(tmp_path: Path) -> None:
    """The daemon's loader refuses the file at start, and on reload keeps the old rules."""
    path = tmp_path / "rules.yaml"
    dup = GOOD + "    promote: {metric: auc}\n"
    path.write_text(dup)
    with pytest.raises(RulesError, match=r"rules.yaml:5: YAML: duplicate key 'promote'"):
        RulesHolder(path).load_initial()
    path.write_text(GOOD)
    holder = RulesHolder(path)
    holder.load_initial()
    assert holder.current is not None
    old = holder.current.sha256
    path.write_text(dup)
    assert holder.reload() is False
    assert holder.current.sha256 == old
    assert holder.last_error == [f"{path}:5: YAML: duplicate key 'promote' (first at line 4)"]


def test_dead_rule_warns_and_strict_fails(tmp_path: Path, venv_bin: Path) -> None:
    """A shadowed rule is one warning line and exit 0; with ``--strict`` it exits 1."""
    path = tmp_path / "dead.yaml"
    path.write_text(DEAD)
    r = run_cli(venv_bin, "assetctl", "rules", "check", str(path))
    assert r.returncode == 0 and f"{path}: ok, 2 rules" in r.stdout, r.stderr
    assert r.stderr.splitlines() == [f"{path}:5: {DEAD_LINE}"]
    r = run_cli(venv_bin, "assetctl", "rules", "check", "--strict", str(path))
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.splitlines() == [f"{path}:5: {DEAD_LINE}"]
    path.write_text(GOOD)
    r = run_cli(venv_bin, "assetctl", "rules", "check", "--strict", str(path))
    assert r.returncode == 0 and r.stderr == "", r.stderr


def test_daemon_logs_dead_rules_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rules with a dead rule are used, and their warning is logged once per file loaded."""
    logged: list[tuple[str, dict[str, Any]]] = []

    class Log:
        def warning(self, event: str, **kw: Any) -> None:
            logged.append((event, kw))

        def info(self, event: str, **kw: Any) -> None:
            pass

    monkeypatch.setattr(rules_watch, "log", Log())
    path = tmp_path / "rules.yaml"
    path.write_text(DEAD)
    holder = RulesHolder(path)
    holder.load_initial()
    assert holder.reload() is True  # the same file again: not logged again
    assert holder.current is not None and len(holder.current.rules.rules) == 2
    assert logged == [("rules file has rules that can never match",
                       {"path": str(path), "warnings": [f"{path}:5: {DEAD_LINE}"]})]
    assert load_rules(path).warnings == (f"{path}:5: {DEAD_LINE}",)


@pytest.mark.parametrize(("outer", "inner", "covers"), [
    ("fraud_model", "fraud_model", True),
    ("fraud_model", "fraud_modelx", False),
    ("*", "anything", True),
    ("*", "fraud_*", True),
    ("*", "[ab]?x*", True),
    ("fraud_*", "fraud_model", True),
    ("fraud_*", "fraud_m*", True),
    ("fraud_*", "fraud_*", True),
    ("fraud_*", "fraud", False),       # fnmatch: fraud_* needs the underscore
    ("fraud_*", "fraud*", False),      # fraud* matches fraud
    ("fraud_*", "*", False),
    ("fraud_m*", "fraud_*", False),
    ("*_forecast", "sales_forecast", True),
    ("*_forecast", "sales_*_forecast", True),
    ("*_forecast", "*forecast", False),
    ("a*z", "ab*yz", True),
    ("a*z", "a*", False),
    ("*?", "?*", True),                # the same language
    ("??", "?", False),
    ("m?", "m[0-9]", True),
    ("m[0-9]", "m?", False),
    ("m[!x]", "m[ab]", True),
    ("m[ab]", "m[!x]", False),
    ("[", "[", True),                  # an unclosed [ is a literal
    ("*", "", True),
    ("a", "", False),
])
def test_glob_coverage(outer: str, inner: str, covers: bool) -> None:
    """Coverage is exact on these shapes, and a glob that misses a string never covers."""
    assert glob_covers(outer, inner) is covers


def test_glob_coverage_is_conservative_when_it_cannot_decide() -> None:
    """True inclusions it cannot prove come out False, never the other way round."""
    assert glob_covers("?*", "*a") is False  # true (both need one character), not proven
    assert glob_covers("[ab]", "[a]") is True
    assert glob_covers("*", "x\u00e9*") is False  # non-ASCII: not decided


@pytest.mark.parametrize(("outer", "inner", "covers"), [
    (None, None, True),
    (None, ["main"], True),
    (["main"], None, False),           # the later rule also matches every other branch
    (["*"], None, True),
    (["main", "release/*"], ["release/1.2", "main"], True),
    (["main", "release/*"], ["release/*", "staging"], False),
    (["user.*"], ["user.alice"], True),
    ([], ["main"], False),
])
def test_branch_coverage(outer: list[str] | None, inner: list[str] | None,
                         covers: bool) -> None:
    """No branches is every branch; otherwise each later glob needs one earlier glob over it."""
    assert branches_cover(outer, inner) is covers


def test_dead_rules_name_the_first_live_cover() -> None:
    """A rule is dead only if one earlier rule covers its asset and branches."""
    rules = [rule("fraud_*", ["main"]), rule("fraud_model", ["main", "dev"]),
             rule("fraud_model", ["dev"]), rule("fraud_model"), rule("*"), rule("x", ["m"])]
    assert dead_rules(rules) == [(2, 1), (5, 4)]
    assert dead_rules([rule("a*"), rule("a*"), rule("a*")]) == [(1, 0), (2, 0)]
    assert dead_rules([rule("a*"), rule("a*")], budget=1) == []  # out of budget: no claim
