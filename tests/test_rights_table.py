"""docs/runbook.md "Who may do what": every line of the rights table, proven against a
nats-server running deploy/nats/nats-server.conf and a real daemon connected as ``assetd``.

A line is one right (``yes``) or one denial (``no``) of one NATS user. Publishing an event
that is allowed must be applied by the daemon (the ``event`` query says ``applied``); one that
is denied must be refused by NATS (the client's PermissionDeniedError naming that subject) and
never reach the daemon. A line this module cannot read fails, and so does a user of the
config that has no line: the table cannot drift from the config.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.js.api import ConsumerConfig

from assetd.client import AssetClient, PermissionDeniedError
from assetd.config import Settings
from assetd.errors import QueryError
from assetd.schemas import wire
from assetd.schemas.ids import BRANCH_RE, is_project
from assetd.schemas.inbound import INBOUND
from tests.conftest import running_daemon
from tests.test_security import CONF, PASSWORDS, deploy_nats

RUNBOOK = Path(__file__).resolve().parent.parent / "docs" / "runbook.md"
SECTION = "## Who may do what"
PROJECT = "fraud"
PREFIX = "assetd"


@dataclass(frozen=True)
class Line:
    """One line of the table as written (backticks dropped), and where."""

    number: int
    user: str
    action: str
    allowed: str
    problem: str | None = None

    @property
    def id(self) -> str:
        return f"{self.user}: {self.action}: {self.allowed}"


def _cells(row: str) -> list[str]:
    return [c.strip().replace("`", "") for c in row.strip().strip("|").split("|")]


def rights_table() -> list[Line]:
    """The table of the runbook's section, every line kept (a malformed one with its
    problem, so that it fails its test instead of vanishing)."""
    text = RUNBOOK.read_text()
    if SECTION not in text:
        return [Line(0, "?", "?", "?", f"docs/runbook.md has no section {SECTION!r}")]
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    body = text[start:end if end >= 0 else len(text)]
    first = text[:start].count("\n") + 1
    rows = [(first + i, r) for i, r in enumerate(body.splitlines()) if r.startswith("|")]
    if len(rows) < 3 or _cells(rows[0][1]) != ["user", "action", "allowed"]:
        return [Line(0, "?", "?", "?", "no table headed | user | action | allowed | in the "
                     "section")]
    lines = []
    for number, row in rows[2:]:
        cells = _cells(row)
        if len(cells) != 3:
            lines.append(Line(number, "?", row, "?", f"line {number}: not three cells"))
            continue
        user, action, allowed = cells
        problem = None if allowed in ("yes", "no") else \
            f"line {number}: allowed is {allowed!r}, not yes or no"
        lines.append(Line(number, user, action, allowed, problem))
    return lines


def config_users() -> dict[str, str]:
    """User → the environment variable holding its password, for account ASSETD of the
    deploy config (the SYS account's user is not an assetd role)."""
    text = CONF.read_text()
    accounts = text[text.index("ASSETD {"):text.index("SYS {")]
    return dict(re.findall(r"\{\s*user:\s*([\w-]+),\s*password:\s*\$(\w+)", accounts))


LINES = rights_table()
USERS = config_users()

PUBLISH_EVENT = re.compile(r"publish (\w+) to (\S+)(?: in (\S+))?")
PUBLISH_RAW = re.compile(r"publish to (\S+)")
SUBSCRIBE = re.compile(r"subscribe to (\S+)")
QUERY = re.compile(r"query (\w+)(?: in (\S+))?")
CONSUMER = re.compile(r"create a consumer on (\S+)")

# the data of each inbound type; the types marked need an instance v1 (or an alias) first
DATA: dict[str, dict[str, Any]] = {
    "asset_defined": {"kind": "model"},
    "asset_registered": {"kind": "model"},
    "asset_consumed": {"instance": "v1"},
    "quality_reported": {"instance": "v1", "check": "holdout", "passed": True},
    "drift_reported": {"instance": "v1", "metric": "psi", "score": 0.01},
    "promotion_requested": {"instance": "v1", "reason": "rights table"},
    "instance_updated": {"instance": "v1", "validity": "deprecated", "reason": "rights table"},
    "alias_rollback_requested": {"reason": "rights table"},
}
NEEDS_INSTANCE = {"asset_consumed", "quality_reported", "drift_reported",
                  "promotion_requested", "instance_updated", "alias_rollback_requested"}
assert set(DATA) == set(INBOUND), "a new inbound type needs its data here"


def _settings(url: str, user: str, inbox_project: str = PROJECT) -> Settings:
    """``user`` of the deploy config, receiving on its own inbox ``_INBOX.<project>.<user>``."""
    return Settings(nats_url=url, nats_user=user,
                    nats_password=PASSWORDS[USERS[user]],  # type: ignore[arg-type]
                    nats_inbox_prefix=f"_INBOX.{inbox_project}.{user}")


@pytest.fixture(scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    """nats-server with the deploy config and the daemon as user ``assetd``; yields the URL."""
    tmp = tmp_path_factory.mktemp("rights")
    with deploy_nats() as url:
        settings = Settings(nats_url=url, nats_user="assetd",
                            nats_password=PASSWORDS[USERS["assetd"]],  # type: ignore[arg-type]
                            db_url=f"sqlite:///{tmp / 'r.db'}", data_dir=tmp, http_port=0,
                            fetch_timeout=0.5, nak_delay=0.1)
        async with running_daemon(settings):
            yield url


async def _outcome(url: str, project: str, event_id: str) -> dict[str, Any]:
    """What the daemon made of ``event_id``, asked as the operator, once it knows."""
    async with AssetClient(project, settings=_settings(url, "operator", project),
                           timeout=15) as op:
        for _ in range(300):
            got: dict[str, Any] = await op.event(event_id)
            if got["status"] != "unknown":
                return got
            await asyncio.sleep(0.05)
        return got


async def _operator_applies(url: str, project: str, branch: str, asset: str, type_: str,
                            data: dict[str, Any]) -> None:
    async with AssetClient(project, branch, settings=_settings(url, "operator", project),
                           timeout=15) as op:
        eid = await op.publish(type_, asset, data, branch=branch, event_id=str(uuid.uuid4()))
    got = await _outcome(url, project, eid)
    assert got["status"] == "applied", f"setup {type_} on {branch}: {got}"


async def _prepare(url: str, project: str, branch: str, asset: str, type_: str) -> None:
    """What an allowed event needs to be applied: an instance v1, and for a rollback an alias
    moved twice (v1, then v2) so that there is something to move back to."""
    if type_ not in NEEDS_INSTANCE:
        return
    await _operator_applies(url, project, branch, asset, "asset_registered", {"kind": "model"})
    if type_ == "alias_rollback_requested":
        await _operator_applies(url, project, branch, asset, "promotion_requested",
                                {"instance": "v1", "reason": "setup", "force": True})
        await _operator_applies(url, project, branch, asset, "asset_registered",
                                {"kind": "model"})
        await _operator_applies(url, project, branch, asset, "promotion_requested",
                                {"instance": "v2", "reason": "setup", "force": True})


async def _check_event(url: str, line: Line, type_: str, branch: str, project: str) -> None:
    assert type_ in INBOUND, f"line {line.number}: {type_!r} is no inbound event type"
    assert re.fullmatch(BRANCH_RE, branch), f"line {line.number}: {branch!r} is no branch"
    assert is_project(project), f"line {line.number}: {project!r} is no project"
    asset = f"rights_{line.number}"
    eid = str(uuid.uuid4())
    subject = wire.in_subject(PREFIX, project, branch, asset, type_)
    if line.allowed == "yes":
        await _prepare(url, project, branch, asset, type_)
        async with AssetClient(project, branch, settings=_settings(url, line.user, project),
                               timeout=15) as c:
            await c.publish(type_, asset, DATA[type_], branch=branch, event_id=eid)
        got = await _outcome(url, project, eid)
        assert got["status"] == "applied", f"{subject} published but not applied: {got}"
        return
    # A denial is of the publish itself: the user receives on its own (allowed) inbox.
    async with AssetClient(project, branch, settings=_settings(url, line.user),
                           timeout=15) as c:
        with pytest.raises(PermissionDeniedError) as denied:
            await c.publish(type_, asset, DATA[type_], branch=branch, event_id=eid)
    assert (denied.value.action, denied.value.subject) == ("publish", subject), denied.value
    assert (await _outcome_now(url, project, eid))["status"] == "unknown", "reached the daemon"


async def _outcome_now(url: str, project: str, event_id: str) -> dict[str, Any]:
    async with AssetClient(project, settings=_settings(url, "operator", project),
                           timeout=15) as op:
        got: dict[str, Any] = await op.event(event_id)
        return got


async def _violations(url: str, user: str, act: Any) -> list[str]:
    """Run ``act(nc)`` on a plain nats-py connection as ``user``; the violations NATS
    reported for it (NATS answers a denied PUB or SUB before the PONG of the flush)."""
    errors: list[str] = []

    async def on_error(exc: Exception) -> None:
        errors.append(str(exc))

    nc = await nats.connect(url, user=user, password=PASSWORDS[USERS[user]],
                            error_cb=on_error, max_reconnect_attempts=0)
    try:
        await act(nc)
        await nc.flush()
        await asyncio.sleep(0.2)
    finally:
        await nc.close()
    return [e for e in errors if "permissions violation" in e.lower()]


async def _check_raw(url: str, line: Line, verb: str, subject: str) -> None:
    if verb == "publish":
        async def act(nc: Any) -> None:
            await nc.publish(subject, b"{}")
        expect = f'publish to "{subject}"'
    else:
        async def act(nc: Any) -> None:
            await nc.subscribe(subject)
        expect = f'subscription to "{subject}"'
    found = await _violations(url, line.user, act)
    if line.allowed == "yes":
        assert not found, found
    else:
        assert any(expect.lower() in e.lower() for e in found), (expect, found)


QUERY_BODIES: dict[str, dict[str, Any]] = {
    "assets": {}, "resolve": {"asset": "rights_q", "instance": "latest"},
    "instances": {"asset": "rights_q"}, "decisions": {"asset": "rights_q"},
    "event": {"id": "rights-q"}, "events_stream": {},
}


async def _check_query(url: str, line: Line, method: str, project: str) -> None:
    assert method in QUERY_BODIES, f"line {line.number}: no request body known for {method!r}"
    assert is_project(project), f"line {line.number}: {project!r} is no project"
    inbox = project if line.allowed == "yes" else PROJECT  # a denial: of the query, not inbox
    async with AssetClient(project, settings=_settings(url, line.user, inbox),
                           timeout=15) as c:
        if line.allowed == "no":
            with pytest.raises(PermissionDeniedError) as denied:
                await c.request(method, **QUERY_BODIES[method])
            assert (denied.value.action, denied.value.subject) == \
                ("publish", wire.api_subject(PREFIX, project, method)), denied.value
            return
        try:
            await c.request(method, **QUERY_BODIES[method])
        except QueryError as exc:  # answered: the daemon said not found or invalid
            assert exc.code in ("not_found", "invalid"), exc


async def _check_consumer(url: str, line: Line, stream: str) -> None:
    async with AssetClient(PROJECT, settings=_settings(url, line.user), timeout=15) as c:
        own = (await c.request("events_stream"))["stream"]  # the daemon makes ASSETD_OUT_fraud
        assert stream in (own, wire.OUT_STREAM), f"line {line.number}: unknown stream {stream}"
        config = ConsumerConfig(durable_name=f"rights_{line.number}",
                                filter_subject=f"{PREFIX}.out.{PROJECT}.>")
        create = c.nc.jetstream().add_consumer(stream, config)
        if line.allowed == "no":
            with pytest.raises(PermissionDeniedError):
                await c.guarded(create)
            return
        info = await c.guarded(create)
        assert info.config.durable_name == f"rights_{line.number}"


@pytest.mark.parametrize("line", LINES, ids=[line.id for line in LINES])
async def test_rights_table_line(world: str, line: Line) -> None:
    """One line of the runbook's table holds on the deploy config."""
    assert line.problem is None, line.problem
    assert line.user in USERS, \
        f"line {line.number}: {line.user!r} is no user of {CONF.name} ({sorted(USERS)})"
    action = line.action
    if m := PUBLISH_RAW.fullmatch(action):
        await _check_raw(world, line, "publish", m.group(1))
    elif m := PUBLISH_EVENT.fullmatch(action):
        await _check_event(world, line, m.group(1), m.group(2), m.group(3) or PROJECT)
    elif m := SUBSCRIBE.fullmatch(action):
        await _check_raw(world, line, "subscribe", m.group(1))
    elif m := QUERY.fullmatch(action):
        await _check_query(world, line, m.group(1), m.group(2) or PROJECT)
    elif m := CONSUMER.fullmatch(action):
        await _check_consumer(world, line, m.group(1))
    else:
        pytest.fail(f"docs/runbook.md line {line.number}: no check knows {action!r}; write it "
                    "as one of: publish T to B [in P], publish to S, subscribe to S, query M "
                    "[in P], create a consumer on STREAM")


def test_every_user_of_the_config_has_lines() -> None:
    """Each user of the deploy config appears in the table, and the protected branches are
    covered for each role that publishes events (a yes for ci, a no for the others)."""
    assert LINES and all(line.problem is None for line in LINES), LINES[:1]
    in_table = {line.user for line in LINES}
    assert set(USERS) <= in_table, sorted(set(USERS) - in_table)
    protected = {(line.user, line.allowed) for line in LINES
                 if re.fullmatch(r"publish asset_registered to (main|release\.[\w.]+)",
                                 line.action)}
    assert ("ci", "yes") in protected
    for user in ("pipeline-fraud", "alice", "service-fraud"):
        assert (user, "no") in protected and (user, "yes") not in protected, user
