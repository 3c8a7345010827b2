"""Hostile input: 10,000 generated payloads at the inbound subjects, valid traffic alongside.

Afterwards the daemon is alive, every payload was applied or dead-lettered with a reason,
and the valid events all applied, in order, once.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from assetd.client import AssetClient
from assetd.config import Settings
from assetd.daemon.embedded import EmbeddedNats
from tests.faults import DaemonProcess, until
from tests.helpers import envelope, stream_messages

pytestmark = pytest.mark.slow

TYPES = ["asset_defined", "asset_registered", "asset_consumed", "quality_reported",
         "drift_reported", "promotion_requested", "instance_updated"]
token = st.text("abcXYZ019_-$", min_size=1, max_size=12)
nasty = st.sampled_from(["a.b", "a*", ">", "$sys", "", " ", "x" * 200, "é", "\x00", "v-1",
                         "-3", "latest-", "@", "NaN"])
scalar = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70),
                   st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=50))
json_value = st.recursive(scalar, lambda inner: st.one_of(
    st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=10), inner, max_size=5)),
    max_leaves=8)


@st.composite
def hostile(draw: Any) -> tuple[str, bytes]:
    """One (subject, payload): malformed, mistyped, oversized or injecting — sometimes valid."""
    type_ = draw(st.sampled_from([*TYPES, "bogus"]))
    asset = draw(st.one_of(token, st.just("fuzz_asset")))
    subject = f"assetd.in.fuzz.main.{asset}.{type_}"
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return subject, draw(st.binary(max_size=300))
    if kind == 1:
        depth = draw(st.integers(100, 5000))
        return subject, b"[" * depth + b"]" * depth
    if kind == 2:
        size = draw(st.sampled_from([200_000, 270_000, 600_000]))
        ev = envelope(type_, asset, {"kind": "data", "tags": {"x": "y" * size}}, project="fuzz")
        return subject, orjson.dumps(ev)
    if kind == 3:
        n = draw(st.sampled_from([1001, 10_000]))
        ev = envelope(type_, asset, {"kind": "model",
                                     "annotations": {f"k{i}": i for i in range(n)}},
                      project="fuzz")
        return subject, orjson.dumps(ev)
    if kind == 4:
        text = json.dumps(envelope("quality_reported", asset, {
            "check": "c", "passed": True, "metrics": {"m": float("nan")}}, project="fuzz"))
        return f"assetd.in.fuzz.main.{asset}.quality_reported", text.encode()
    ev: Any = envelope(type_, asset, draw(st.dictionaries(st.text(max_size=12), json_value,
                                                          max_size=6)), project="fuzz")
    if kind == 5:
        field = draw(st.sampled_from(["project", "subject", "branch", "id", "type", "source",
                                      "specversion"]))
        ev[field] = draw(st.one_of(nasty, json_value))
    elif kind == 6:
        ev["data"] = {"kind": draw(st.sampled_from(["data", "model", "table"])),
                      "inputs": [{"asset": draw(st.one_of(token, nasty)),
                                  "instance": draw(st.one_of(nasty, token))}],
                      "annotations": {draw(st.text(max_size=300)): draw(scalar)}}
    elif kind == 7:
        ev["data"] = {"instance": draw(nasty), "state": "ready", "reason": "r"}
    elif kind == 8:
        ev = draw(json_value)
    return subject, json.dumps(ev).encode()  # stdlib: big ints and NaN pass through


def generate(count: int) -> list[tuple[str, bytes]]:
    """Draw ``count`` payloads with hypothesis, one per example."""
    out: list[tuple[str, bytes]] = []

    @settings(max_examples=count, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(hostile())
    def collect(item: tuple[str, bytes]) -> None:
        out.append(item)

    while len(out) < count:  # hypothesis may stop early once it has seen enough distinct
        collect()
    return out[:count]


async def test_fuzz_10000_hostile_payloads(nc: Any, js: Any, nats_server: EmbeddedNats,
                                           venv_bin: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """Every payload ends applied or dead-lettered with a reason; valid traffic unaffected."""
    payloads = generate(10_000)
    assert len(payloads) == 10_000
    daemon = DaemonProcess(venv_bin, {"ASSETD_NATS_URL": nats_server.url,
                                      "ASSETD_DB_URL": f"sqlite:///{tmp_path / 'r.db'}",
                                      "ASSETD_DATA_DIR": str(tmp_path / "d"),
                                      "ASSETD_LOG_LEVEL": "ERROR"}, tmp_path / "daemon.log")
    daemon.start()
    try:
        async with AssetClient("fuzz", settings=Settings(nats_url=nats_server.url),
                               timeout=30) as client:
            await until(lambda: _up(client), 60, "daemon up")
            valid = await _publish(js, payloads)
            total = (await js.stream_info("ASSETD_IN")).state.messages
            assert total == len(payloads) + valid

            async def drained() -> bool:
                info = await js.consumer_info("ASSETD_IN", "assetd")
                return info.num_pending == 0 and info.num_ack_pending == 0

            await until(drained, 300, "every message acknowledged")
            assert daemon.proc is not None and daemon.proc.poll() is None, daemon.tail()
            counters = (await client.status())["counters"]
            outcome = {k: counters.get(k, 0) for k in ("applied", "duplicate", "rejected")}
            dlq = await stream_messages(js, "ASSETD_DLQ")
            assert sum(outcome.values()) == total, (outcome, total)
            assert len(dlq) == outcome["rejected"]
            assert all(m.headers.get("Assetd-Reason") for m in dlq)
            steady = await client.list_instances("steady", limit=500)
            assert [i["annotations"]["n"] for i in steady["items"]] == \
                list(range(valid - 1, -1, -1)), "valid traffic applied in order, once"
        with capsys.disabled():  # the counts belong in the CI log even when the test passes
            _report(payloads, valid, outcome, dlq)
    finally:
        assert daemon.stop() == 0, daemon.tail()


async def _publish(js: Any, payloads: list[tuple[str, bytes]]) -> int:
    """Publish every payload (no Nats-Msg-Id: nothing is deduplicated) and, every 50th,
    one valid registration of ``steady``; return how many valid ones."""
    pending, valid = [], 0
    for i, (subject, payload) in enumerate(payloads):
        pending.append(await js.publish_async(subject, payload))
        if i % 50 == 0:
            ev = envelope("asset_registered", "steady", {"kind": "data",
                                                         "annotations": {"n": valid}},
                          project="fuzz")
            pending.append(await js.publish_async("assetd.in.fuzz.main.steady.asset_registered",
                                                  orjson.dumps(ev),
                                                  headers={"Nats-Msg-Id": ev["id"]}))
            valid += 1
        if len(pending) >= 500:
            await asyncio.gather(*pending)
            pending.clear()
    await asyncio.gather(*pending)
    return valid


def _report(payloads: list[Any], valid: int, outcome: dict[str, int], dlq: list[Any]) -> None:
    reasons: dict[str, int] = {}
    for m in dlq:
        key = m.headers["Assetd-Reason"].split(":")[0][:48]
        reasons[key] = reasons.get(key, 0) + 1
    print(f"\nfuzz: {len(payloads)} hostile payloads + {valid} valid events; "
          f"applied {outcome['applied']}, duplicates {outcome['duplicate']}, "
          f"dead-lettered {outcome['rejected']} (each with a reason); daemon alive")
    for reason, n in sorted(reasons.items(), key=lambda kv: -kv[1])[:10]:
        print(f"  {n:6d}  {reason}")


async def _up(client: AssetClient) -> bool:
    try:
        await client.status()
    except Exception:
        return False
    return True
