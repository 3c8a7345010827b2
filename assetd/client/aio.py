"""``AssetClient``: publish asset events and query the registry over NATS.

Method names follow Outerbounds' ``obproject`` asset API (``register_data``,
``register_model``, ``consume``) so flows move over with few edits.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import os
import re
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Literal, Self, TypeVar

import nats
import nats.js.errors
import orjson
import structlog
from nats.aio.client import Client as NATS

from assetd.client.edge import prepare
from assetd.client.outcome import (
    NoOutcomeError,
    settle,
    wait_for_outcome,
)
from assetd.client.subscription import follow
from assetd.config import Settings, load_settings
from assetd.errors import AssetdError, ConnectError, NoAnswerError, QueryError
from assetd.logs import redact_url
from assetd.schemas import wire
from assetd.schemas.api import REQUESTS
from assetd.schemas.ids import is_asset, is_project

Kind = Literal["data", "model"]
T = TypeVar("T")
log = structlog.get_logger("assetd.client")


class PermissionDeniedError(AssetdError):
    """NATS refused this user an action (publish or subscribe) on ``subject``."""

    def __init__(self, action: str, subject: str) -> None:
        super().__init__(f"NATS denied {action} to {subject}: this user lacks the permission "
                         "(docs/runbook.md, who may do what)")
        self.action, self.subject = action, subject


_DENIED = re.compile(r'permissions violation for (publish|subscription) to "([^"]*)"')


def default_source() -> str:
    """``user@host/pid``: who published, when nothing better is given."""
    try:
        user = getpass.getuser()
    except Exception:
        user = "unknown"
    return f"{user}@{socket.gethostname()}/{os.getpid()}"


class AssetClient:
    """Async client bound to one project and branch."""

    def __init__(self, project: str | None = None, branch: str | None = None, *,
                 nats_url: str | None = None, source: str | None = None,
                 settings: Settings | None = None, timeout: float = 10.0,
                 connect_timeout: float = 5.0, wait_for_nats: bool = True) -> None:
        self.settings = settings or load_settings(nats_url=nats_url)
        self.project = project or self.settings.project or ""
        if not is_project(self.project):
            raise ValueError(f"invalid project {self.project!r}: set project= or ASSETD_PROJECT")
        self.branch = branch or self.settings.branch
        self.source = source or default_source()
        self.prefix = self.settings.subject_prefix
        self.timeout, self.connect_timeout = timeout, connect_timeout
        # False: at the first connect, "connection refused" by every server ends it at once
        # (a command line); True: wait up to connect_timeout for NATS to come up (a service)
        self.wait_for_nats = wait_for_nats
        self._refusals = 0
        self._nc: Any = None
        self._first_error: asyncio.Future[Exception] | None = None
        self._last_error: Exception | None = None
        self._denial_waiters: set[asyncio.Future[tuple[str, str]]] = set()

    async def connect(self) -> Self:
        """Connect to NATS (the configured URL, else the local embedded daemon's).

        The first connection must succeed within ``connect_timeout`` (refused credentials fail
        at once); after that the client reconnects for ever, logging each loss and return."""
        if self._nc is not None:
            return self
        nc = NATS()
        refused: asyncio.Future[Exception] = asyncio.get_running_loop().create_future()
        self._refusals = 0
        self._first_error = refused
        task = asyncio.ensure_future(nc.connect(
            self.settings.nats_servers, name="assetd-client",
            connect_timeout=max(1, min(2, int(self.connect_timeout))), max_reconnect_attempts=-1,
            reconnect_time_wait=1, error_cb=self._on_error,
            disconnected_cb=self._on_disconnected, reconnected_cb=self._on_reconnected,
            inbox_prefix=self.settings.inbox_prefix(self.project),
            **self.settings.nats_connect_options()))
        both: set[asyncio.Future[Any]] = {task, refused}
        await asyncio.wait(both, timeout=self.connect_timeout,
                           return_when=asyncio.FIRST_COMPLETED)
        if not task.done() or task.exception() is not None:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
            with contextlib.suppress(Exception):
                await nc.close()
            raise self._connect_failure(task, refused)
        self._nc = nc
        return self

    def _connect_failure(self, task: asyncio.Future[Any],
                         refused: asyncio.Future[Exception]) -> ConnectError:
        where = redact_url(self.settings.effective_nats_url)
        if refused.done() and not isinstance(refused.result(), ConnectionRefusedError):
            return ConnectError(f"NATS at {where} refused the connection "
                                f"({refused.result() or 'authorization violation'}): check the "
                                "credentials (ASSETD_NATS_CREDS, _NKEY, _USER/_PASSWORD, _TOKEN)")
        if refused.done():
            return ConnectError(f"nothing listens at {where} (connection refused); is assetd "
                                "(or NATS) running? set --nats-url or ASSETD_NATS_URL")
        why = self._last_error or (task.exception() if not task.cancelled() else None)
        detail = f" ({type(why).__name__}: {why})" if why else ""
        return ConnectError(f"cannot reach NATS at {where} within {self.connect_timeout:g}s"
                            f"{detail}; is assetd (or NATS) running? set --nats-url or "
                            "ASSETD_NATS_URL")

    async def _on_disconnected(self) -> None:
        if self._nc is not None:
            log.warning("NATS connection lost; reconnecting",
                        url=redact_url(self.settings.effective_nats_url))

    async def _on_reconnected(self) -> None:
        log.info("NATS reconnected", url=redact_url(self.settings.effective_nats_url))

    @property
    def nc(self) -> Any:
        """The underlying nats-py connection (after :meth:`connect`), for advanced use."""
        if self._nc is None:
            raise AssetdError("not connected: await client.connect() first")
        return self._nc

    async def close(self) -> None:
        """Flush and close the connection."""
        nc, self._nc = self._nc, None  # first: a close is not a loss to log
        if nc is not None:
            await nc.drain()

    async def _on_error(self, exc: Exception) -> None:
        """nats-py reports errors asynchronously: a permission denial goes to the waiting call,
        refused credentials end the first connect at once, anything else is kept for the
        message of a connect that times out."""
        self._last_error = exc
        first = self._first_error
        connecting = self._nc is None and first is not None and not first.done()
        if isinstance(exc, nats.errors.AuthorizationError) or "uthorization" in str(exc):
            if connecting and first is not None:
                first.set_result(exc)
            return
        if isinstance(exc, ConnectionRefusedError) and connecting and not self.wait_for_nats:
            self._refusals += 1
            if first is not None and self._refusals >= len(self.settings.nats_servers):
                first.set_result(exc)
        if m := _DENIED.search(str(exc)):
            for waiter in self._denial_waiters:
                if not waiter.done():
                    waiter.set_result((m.group(1), m.group(2)))

    async def guarded(self, op: Awaitable[T]) -> T:
        """Run ``op``; if NATS denies something meanwhile, raise PermissionDeniedError at once
        instead of waiting for a timeout."""
        denied: asyncio.Future[tuple[str, str]] = asyncio.get_running_loop().create_future()
        self._denial_waiters.add(denied)
        task = asyncio.ensure_future(op)
        try:
            both: set[asyncio.Future[Any]] = {task, denied}
            await asyncio.wait(both, return_when=asyncio.FIRST_COMPLETED)
            if denied.done() and not task.done():
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
                raise PermissionDeniedError(*denied.result())
            return task.result()
        finally:
            self._denial_waiters.discard(denied)
            if not task.done():
                task.cancel()

    async def __aenter__(self) -> Self:
        return await self.connect()

    async def __aexit__(self, *exc: object | TracebackType) -> None:
        await self.close()

    # -- publishing -------------------------------------------------------------------------

    async def publish(self, type_: str, asset: str, data: dict[str, Any], *,
                      branch: str | None = None, event_id: str | None = None) -> str:
        """Publish one CloudEvent to its inbound subject (on ``branch``, default the client's);
        return its id."""
        branch = branch or self.branch
        if not is_asset(asset):
            raise ValueError(f"invalid asset id {asset!r}: use letters, digits, _ and -")
        data = prepare(type_, asset, data)  # NaN/inf and non-scalar annotations refused here
        await self.connect()
        eid = event_id or str(uuid.uuid4())
        envelope = wire.envelope(event_id=eid, source=self.source, type_=type_,
                                 time=datetime.now(UTC), project=self.project, branch=branch,
                                 asset=asset, data=data)
        # No Nats-Msg-Id: JetStream would deduplicate it across every project on the stream;
        # the daemon applies each (project, id) once, for ever (docs/events.md).
        subject = wire.in_subject(self.prefix, self.project, branch, asset, type_)
        try:
            await self.guarded(self._nc.jetstream().publish(subject, orjson.dumps(envelope),
                                                             timeout=self.timeout))
        except (nats.errors.NoRespondersError, nats.js.errors.NoStreamResponseError):
            raise AssetdError(f"no JetStream stream takes {subject} on NATS at "
                              f"{redact_url(self.settings.effective_nats_url)}: assetd creates "
                              "its streams when it starts; is assetd running against this "
                              "NATS? (assetctl status)") from None
        except nats.errors.TimeoutError:
            raise NoOutcomeError(eid, self.timeout) from None
        return eid

    async def define(self, asset: str, kind: Kind, *, name: str | None = None,
                     description: str | None = None, properties: dict[str, str] | None = None,
                     event_id: str | None = None, wait: bool = True) -> Any:
        """Upsert an asset's definition; fields left out keep their current values."""
        data: dict[str, Any] = {"kind": kind}
        if properties is not None:
            data["properties"] = properties
        if name is not None:
            data["name"] = name
        if description is not None:
            data["description"] = description
        return await self.send("asset_defined", asset, data, event_id=event_id, wait=wait)

    async def register_data(self, asset: str, **kw: Any) -> Any:
        """Register a new data instance; see :meth:`register`."""
        return await self.register(asset, "data", **kw)

    async def register_model(self, asset: str, **kw: Any) -> Any:
        """Register a new model instance; see :meth:`register`."""
        return await self.register(asset, "model", **kw)

    async def register(
        self, asset: str, kind: Kind, *, annotations: dict[str, Any] | None = None,
        tags: dict[str, Any] | None = None, uri: str | None = None,
        artifact: str | None = None, blobs: list[str] | None = None, format: str | None = None,
        inputs: list[dict[str, str] | str] | None = None, state: str = "ready",
        branch: str | None = None, event_id: str | None = None, wait: bool = True,
    ) -> Any:
        """Register an instance. ``inputs``: dicts or ``"asset@selector"`` strings.

        Returns its outcome (``instance`` = ``vN``, ``version``, ``state``, and ``decision``
        / ``waiting_for`` when a rule decided), or with ``wait=False`` the event id; see
        :meth:`send` for the errors.
        """
        reference = {k: v for k, v in
                     {"uri": uri, "artifact": artifact, "blobs": blobs, "format": format}.items()
                     if v is not None}
        data = {"kind": kind, "annotations": annotations or {}, "tags": tags or {},
                "reference": reference, "inputs": [parse_input(i) for i in inputs or []],
                "state": state}
        return await self.send("asset_registered", asset, data, branch=branch,
                               event_id=event_id, wait=wait)

    async def consume(self, asset: str, instance: str = "latest", *,
                      consumer: dict[str, Any] | None = None, branch: str | None = None,
                      event_id: str | None = None, wait: bool = True) -> dict[str, Any]:
        """Resolve an instance, record the consumption of that exact ``vN``, return it."""
        found: dict[str, Any] = await self.peek(asset, instance, branch=branch)
        data: dict[str, Any] = {"instance": found["instance"]}
        if consumer is not None:
            data["consumer"] = consumer
        await self.send("asset_consumed", asset, data, branch=branch, event_id=event_id,
                        wait=wait)
        return found

    async def report_quality(self, asset: str, check: str, passed: bool, *,
                             instance: str = "latest", severity: str = "error",
                             metrics: dict[str, float] | None = None,
                             details: str | None = None, branch: str | None = None,
                             event_id: str | None = None, wait: bool = True) -> Any:
        """Report a check's result for an instance (resumes a candidate waiting on it)."""
        data: dict[str, Any] = {"instance": instance, "check": check, "passed": passed,
                                "severity": severity, "metrics": metrics or {}}
        if details is not None:
            data["details"] = details
        return await self.send("quality_reported", asset, data, branch=branch,
                               event_id=event_id, wait=wait)

    async def report_drift(self, asset: str, metric: str, score: float, *,
                           instance: str = "latest", reference: str | None = None,
                           features: dict[str, float] | None = None, branch: str | None = None,
                           event_id: str | None = None, wait: bool = True) -> Any:
        """Report a drift measurement; over the rule's ``max`` it triggers retrain_required."""
        data: dict[str, Any] = {"instance": instance, "metric": metric, "score": score,
                                "features": features or {}}
        if reference is not None:
            data["reference"] = reference
        return await self.send("drift_reported", asset, data, branch=branch,
                               event_id=event_id, wait=wait)

    async def request_promotion(self, asset: str, instance: str, *, reason: str,
                                alias: str = "champion", force: bool = False,
                                to_branch: str | None = None, requested_by: str | None = None,
                                branch: str | None = None, wait: bool = True,
                                event_id: str | None = None) -> Any:
        """Ask for a promotion (or, with ``to_branch``, a copy into that branch).

        Returns the outcome (``decision``; ``copied_to`` for a copy); raises
        PromotionRejectedError when the rules turn it down, RefusedError when it cannot be
        done (see :meth:`send`)."""
        data: dict[str, Any] = {"instance": instance, "alias": alias, "reason": reason,
                                "force": force, "requested_by": requested_by or self.source}
        if to_branch is not None:
            data["to_branch"] = to_branch
        return await self.send("promotion_requested", asset, data, branch=branch,
                               event_id=event_id, wait=wait)

    async def update_instance(self, asset: str, instance: str, *, reason: str,
                              state: str | None = None, validity: str | None = None,
                              branch: str | None = None, event_id: str | None = None,
                              wait: bool = True) -> Any:
        """Finalize a pending instance or change its validity (``instance`` is ``vN``);
        returns the outcome (``state``, ``validity``, the aliases rolled back in ``events``)."""
        data: dict[str, Any] = {"instance": instance, "reason": reason}
        if state is not None:
            data["state"] = state
        if validity is not None:
            data["validity"] = validity
        return await self.send("instance_updated", asset, data, branch=branch,
                               event_id=event_id, wait=wait)

    async def rollback(self, asset: str, *, reason: str, alias: str = "champion",
                       to: str | None = None, branch: str | None = None, wait: bool = True,
                       event_id: str | None = None) -> Any:
        """Move an alias back to ``to`` (``vN``) or its previous valid holder; returns the
        outcome (``alias``, ``from``, ``to``); RefusedError when there is nothing to move."""
        data: dict[str, Any] = {"alias": alias, "reason": reason, "requested_by": self.source}
        if to is not None:
            data["to"] = to
        return await self.send("alias_rollback_requested", asset, data, branch=branch,
                               event_id=event_id, wait=wait)

    async def send(self, type_: str, asset: str, data: dict[str, Any], *,
                   branch: str | None = None, event_id: str | None = None,
                   wait: bool = True) -> Any:
        """Publish one event and, with ``wait`` (the default), return its outcome.

        The outcome is the ``event`` query's (CONTRACT §7) plus ``event_id``. Raises
        EventRejectedError (bad input, dead-lettered), RefusedError (policy refused it),
        PromotionRejectedError (a requested promotion lost) or NoOutcomeError (nothing within
        ``timeout``; re-sending the same ``event_id`` is safe). An ``event_id`` the registry
        has applied already answers its first outcome at once, without publishing again.
        With ``wait=False``, only publishes and returns the event id.
        """
        if not wait:
            return await self.publish(type_, asset, data, branch=branch, event_id=event_id)
        eid = event_id or str(uuid.uuid4())
        previous = None
        if event_id is not None:  # a retry: the first outcome stands
            with contextlib.suppress(NoAnswerError):  # a stalled daemon: publish, then wait
                previous = await self.event(eid)
            if previous is not None and previous["status"] == "applied":
                return settle(eid, previous)
        await self.publish(type_, asset, data, branch=branch, event_id=eid)
        return settle(eid, await self.outcome(eid, previous=previous))

    async def outcome(self, event_id: str, *, timeout: float | None = None,
                      previous: dict[str, Any] | None = None) -> dict[str, Any]:
        """Wait until the registry records what became of ``event_id`` (the ``event`` query's
        answer); NoOutcomeError after ``timeout`` (default the client's)."""
        return await wait_for_outcome(self.event, event_id, previous=previous,
                                      timeout=self.timeout if timeout is None else timeout)

    def events(self, *, asset: str = "*", type: str = "*", durable: str | None = None,
               deliver: str = "new", branch: str | None = None
               ) -> AsyncIterator[dict[str, Any]]:
        """Outbound events of this project on ``branch`` (default the client's; ``*`` for
        every branch) as an async iterator that survives daemon and NATS restarts.

        With ``durable`` (a consumer name), a restarted service resumes where it stopped:
        an event is acknowledged when the loop asks for the next one. ``deliver``: ``new``
        (default for a new consumer) or ``all`` (replay the project's stream from the start).
        Connection and consumer errors are logged and retried inside the loop
        (assetd.client.subscription); the iterator ends only when the client is closed.
        """
        return follow(self, asset=asset, type_=type, durable=durable, deliver=deliver,
                      branch=branch)

    # -- queries ----------------------------------------------------------------------------

    async def request(self, method: str, **body: Any) -> Any:
        """Send one query; return its result or raise :class:`QueryError`. A query that takes
        a ``branch`` asks on the client's branch unless told otherwise."""
        await self.connect()
        model = REQUESTS.get(method)
        if model is not None and "branch" in model.model_fields and "branch" not in body:
            body["branch"] = self.branch
        subject = wire.api_subject(self.prefix, self.project, method)
        try:
            msg = await self.guarded(self._nc.request(subject, orjson.dumps(body),
                                                       timeout=self.timeout))
        except nats.errors.NoRespondersError:
            raise NoAnswerError("no assetd daemon answers on NATS; is it running?") from None
        except nats.errors.TimeoutError:
            raise NoAnswerError(f"assetd did not answer within {self.timeout}s") from None
        reply = orjson.loads(msg.data)
        if not reply.get("ok"):
            err = reply.get("error") or {}
            raise QueryError(err.get("code", "internal"), err.get("message", "unknown error"))
        return reply["result"]

    async def peek(self, asset: str, instance: str = "latest", *, branch: str | None = None,
                   allow_invalid: bool = False, at: datetime | str | None = None
                   ) -> dict[str, Any]:
        """Resolve a selector without recording a consumption; ``at`` (an aware time or
        ISO string) asks who held an alias then."""
        body: dict[str, Any] = {"asset": asset, "branch": branch or self.branch,
                                "instance": instance, "allow_invalid": allow_invalid}
        if at is not None:
            body["at"] = at.isoformat() if isinstance(at, datetime) else at
        result: dict[str, Any] = await self.request("resolve", **body)
        return result

    async def list_assets(self, *, kind: Kind | None = None, tags: dict[str, str] | None = None,
                          branch: str | None = None) -> list[dict[str, Any]]:
        """Assets of the project on ``branch`` (default the client's)."""
        body: dict[str, Any] = {"branch": branch or self.branch}
        if kind:
            body["kind"] = kind
        if tags:
            body["tags"] = tags
        result: list[dict[str, Any]] = await self.request("assets", **body)
        return result

    async def list_instances(self, asset: str, *, limit: int = 50, before: int | None = None,
                             branch: str | None = None) -> dict[str, Any]:
        """One page of instances on ``branch`` (default the client's), newest first:
        ``{"items": […], "next": before-or-None}``."""
        body: dict[str, Any] = {"asset": asset, "branch": branch or self.branch, "limit": limit}
        if before is not None:
            body["before"] = before
        result: dict[str, Any] = await self.request("instances", **body)
        return result

    async def lineage(self, asset: str, instance: str = "latest", *,
                      direction: str = "upstream", depth: int = 3,
                      branch: str | None = None) -> dict[str, Any]:
        """Lineage graph around one instance on ``branch`` (default the client's)."""
        result: dict[str, Any] = await self.request(
            "lineage", asset=asset, branch=branch or self.branch, instance=instance,
            direction=direction, depth=depth)
        return result

    async def compare(self, asset: str, a: str, b: str, *,
                      branch: str | None = None) -> dict[str, Any]:
        """Two instances (selectors ``a``, ``b``) side by side: annotations and tags with
        what changed (numeric deltas), and their inputs only in a, only in b, or common."""
        result: dict[str, Any] = await self.request(
            "compare", asset=asset, branch=branch or self.branch, a=a, b=b)
        return result

    async def event(self, event_id: str) -> dict[str, Any]:
        """What became of an inbound event id: ``{status: applied|rejected|unknown, type,
        outcome}`` (CONTRACT §7 ``event``); a re-published id answers its first outcome."""
        result: dict[str, Any] = await self.request("event", id=event_id)
        return result

    async def status(self) -> dict[str, Any]:
        """The daemon's status."""
        result: dict[str, Any] = await self.request("status")
        return result


def parse_input(value: dict[str, str] | str) -> dict[str, str]:
    """``"features@v3"`` / ``"features"`` / a dict → an ``inputs`` entry."""
    if isinstance(value, dict):
        return value
    asset, _, selector = value.partition("@")
    return {"asset": asset, "instance": selector or "latest"}
