"""Property: any interleaving of registrations, manual promotions and invalidations keeps
one holder per alias (or none), the holder ready and valid, and the history contiguous."""

from __future__ import annotations

import itertools
import os
import tempfile
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, select

from assetd.handlers.batch import Received, apply_batch
from assetd.handlers.decode import decode
from assetd.registry.engine import make_engine
from assetd.registry.migrate import upgrade
from assetd.registry.tables import ALIAS, ALIAS_HISTORY, INSTANCE
from assetd.rules.loader import parse_rules
from assetd.schemas import wire

RULES = parse_rules(b"""
version: 1
rules:
  - asset: m
    gates: [{metric: f1, min: 0.6}]
    promote: {metric: f1, min_improvement: 0.02}
""")
_seq = itertools.count(1)

register = st.builds(lambda f1: ("register", f1),
                     st.one_of(st.none(), st.floats(0.4, 1.0, allow_nan=False)))
promote = st.builds(lambda i, force, alias: ("promote", i, force, alias),
                    st.integers(1, 5), st.booleans(), st.sampled_from(["champion", "canary"]))
invalidate = st.builds(lambda i: ("invalidate", i), st.integers(1, 5))
restore = st.builds(lambda i: ("restore", i), st.integers(1, 5))
programs = st.lists(st.one_of(register, register, register, promote, promote, invalidate, restore),
                    min_size=1, max_size=25)


def _engine(url: str) -> Engine:
    upgrade(url)
    return make_engine(url)


_ENGINES: dict[str, Engine] = {}


def engine_for(kind: str) -> Engine:
    """One migrated registry per database kind for the whole module (projects isolate runs)."""
    if kind not in _ENGINES:
        if kind == "sqlite":
            url = f"sqlite:///{Path(tempfile.mkdtemp()) / 'props.db'}"
        else:
            url = os.environ.get("ASSETD_TEST_POSTGRES_URL", "")
            if not url:
                pytest.skip("ASSETD_TEST_POSTGRES_URL is not set (CI sets it; see .ci/run)")
        _ENGINES[kind] = _engine(url)
    return _ENGINES[kind]


def _event(project: str, op: tuple[Any, ...]) -> Received:
    kind = op[0]
    if kind == "register":
        type_, data = "asset_registered", {"kind": "model",
                                           "annotations": {} if op[1] is None else {"f1": op[1]}}
    elif kind == "promote":
        type_, data = "promotion_requested", {"instance": f"v{op[1]}", "force": op[2],
                                              "alias": op[3], "reason": "property"}
    else:
        type_ = "instance_updated"
        data = {"instance": f"v{op[1]}", "reason": "property",
                "validity": "invalidated" if kind == "invalidate" else "valid"}
    ev = {"specversion": "1.0", "id": str(uuid.uuid4()), "source": "prop", "type": type_,
          "subject": "m", "project": project, "data": data}
    subject = f"assetd.in.{project}.main.m.{type_}"
    rec = Received(tokens=wire.parse_in(subject, "assetd"), seq=next(_seq), delivered=1)
    rec.item = decode(subject, orjson.dumps(ev), prefix="assetd", max_bytes=1 << 20)
    return rec


def check_invariants(engine: Engine, project: str) -> None:
    with engine.connect() as conn:
        holders = conn.execute(
            select(ALIAS.c.alias, INSTANCE.c.id, INSTANCE.c.state, INSTANCE.c.validity)
            .join(INSTANCE, INSTANCE.c.id == ALIAS.c.instance_id)
            .where(ALIAS.c.project == project)).all()
        history = conn.execute(
            select(ALIAS_HISTORY).where(ALIAS_HISTORY.c.project == project)
            .order_by(ALIAS_HISTORY.c.alias, ALIAS_HISTORY.c.held_from,
                      ALIAS_HISTORY.c.id)).all()
    names = [h.alias for h in holders]
    assert len(names) == len(set(names)), "one holder per alias"
    for h in holders:
        assert (h.state, h.validity) == ("ready", "valid"), f"{h.alias} holder is {h}"
    current = {h.alias: h.id for h in holders}
    for alias, rows in itertools.groupby(history, key=lambda r: r.alias):
        rows_ = list(rows)
        for a, b in itertools.pairwise(rows_):
            assert a.held_to is not None and a.held_to <= b.held_from, "history contiguous"
        open_rows = [r for r in rows_ if r.held_to is None]
        if alias in current:
            assert [r.instance_id for r in open_rows] == [current[alias]]
        else:
            assert open_rows == [], f"{alias} cleared but history still open"


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(program=programs)
def test_alias_invariants_hold_for_any_interleaving(kind: str,
                                                   program: list[tuple[Any, ...]]) -> None:
    """Each step is one batch through the real handlers; invariants hold after every step."""
    engine = engine_for(kind)
    project = f"p{uuid.uuid4().hex[:12]}"
    for op in program:
        rec = _event(project, op)
        apply_batch(engine, [rec], prefix="assetd", max_deliver=5, rules=RULES)
        assert rec.outcome in ("applied", "rejected"), (op, rec.error)
        check_invariants(engine, project)
