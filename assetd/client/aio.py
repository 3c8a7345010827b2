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
import orjson
import structlog

from assetd.config import Settings, load_settings
from assetd.errors import AssetdError, QueryError
from assetd.schemas import wire
from assetd.schemas.api import REQUESTS
from assetd.schemas.ids import is_asset, is_project

Kind = Literal["data", "model"]
T = TypeVar("T")
log = structlog.get_logger("assetd.client")


class EventRejectedError(AssetdError):
    """The daemon dead-lettered an event this client published; ``reason`` says why."""

    def __init__(self, event_id: str, reason: str, errors: list[Any]) -> None:
        super().__init__(f"event {event_id} rejected: {reason}")
        self.event_id, self.reason, self.errors = event_id, reason, errors


class PromotionRejectedError(AssetdError):
    """The rules refused a requested promotion; ``details`` is the promotion_rejected data."""

    def __init__(self, event_id: str, reason: str, details: dict[str, Any]) -> None:
        super().__init__(f"promotion {event_id} rejected: {reason}")
        self.event_id, self.reason, self.details = event_id, reason, details


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
                 settings: Settings | None = None, timeout: float = 10.0) -> None:
        self.settings = settings or load_settings(nats_url=nats_url)
        self.project = project or self.settings.project or ""
        if not is_project(self.project):
            raise ValueError(f"invalid project {self.project!r}: set project= or ASSETD_PROJECT")
        self.branch = branch or self.settings.branch
        self.source = source or default_source()
        self.prefix = self.settings.subject_prefix
        self.timeout = timeout
        self._nc: Any = None
        self._denial_waiters: set[asyncio.Future[tuple[str, str]]] = set()

    async def connect(self) -> Self:
        """Connect to NATS (the configured URL, else the local embedded daemon's)."""
        if self._nc is None:
            self._nc = await nats.connect(self.settings.nats_servers,
                                          name="assetd-client", connect_timeout=5,
                                          max_reconnect_attempts=3,
                                          error_cb=self._on_error,
                                          inbox_prefix=self.settings.inbox_prefix(self.project),
                                          **self.settings.nats_connect_options())
        return self

    @property
    def nc(self) -> Any:
        """The underlying nats-py connection (after :meth:`connect`), for advanced use."""
        if self._nc is None:
            raise AssetdError("not connected: await client.connect() first")
        return self._nc

    async def close(self) -> None:
        """Flush and close the connection."""
        if self._nc is not None:
            await self._nc.drain()
            self._nc = None

    async def _on_error(self, exc: Exception) -> None:
        """nats-py reports a permission denial asynchronously: hand it to the waiting call
        (other connection errors surface from the call itself, as one clear error)."""
        if m := _DENIED.search(str(exc)):
            for waiter in self._denial_waiters:
                if not waiter.done():
                    waiter.set_result((m.group(1), m.group(2)))

    async def _guarded(self, op: Awaitable[T]) -> T:
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
        await self.connect()
        eid = event_id or str(uuid.uuid4())
        envelope = wire.envelope(event_id=eid, source=self.source, type_=type_,
                                 time=datetime.now(UTC), project=self.project, branch=branch,
                                 asset=asset, data=data)
        # No Nats-Msg-Id: JetStream would deduplicate it across every project on the stream;
        # the daemon applies each (project, id) once, for ever (docs/events.md).
        js = self._nc.jetstream()
        await self._guarded(js.publish(wire.in_subject(self.prefix, self.project, branch, asset,
                                                       type_),
                                       orjson.dumps(envelope), timeout=self.timeout))
        return eid

    async def define(self, asset: str, kind: Kind, *, name: str | None = None,
                     description: str | None = None,
                     properties: dict[str, str] | None = None, event_id: str | None = None) -> str:
        """Upsert an asset's definition; fields left out keep their current values."""
        data: dict[str, Any] = {"kind": kind}
        if properties is not None:
            data["properties"] = properties
        if name is not None:
            data["name"] = name
        if description is not None:
            data["description"] = description
        return await self.publish("asset_defined", asset, data, event_id=event_id)

    async def register_data(self, asset: str, **kw: Any) -> Any:
        """Register a new data instance; see :meth:`register`."""
        return await self.register(asset, "data", **kw)

    async def register_model(self, asset: str, **kw: Any) -> Any:
        """Register a new model instance; see :meth:`register`."""
        return await self.register(asset, "model", **kw)

    async def register(
        self, asset: str, kind: Kind, *, annotations: dict[str, Any] | None = None,
        tags: dict[str, str] | None = None, uri: str | None = None,
        artifact: str | None = None, blobs: list[str] | None = None, format: str | None = None,
        inputs: list[dict[str, str] | str] | None = None, state: str = "ready",
        branch: str | None = None, event_id: str | None = None, wait: bool = False,
    ) -> Any:
        """Register an instance. ``inputs``: dicts or ``"asset@selector"`` strings.

        Returns the event id, or with ``wait=True`` the created instance (``instance`` = ``vN``);
        raises :class:`EventRejectedError` if the daemon rejects it.
        """
        reference = {k: v for k, v in
                     {"uri": uri, "artifact": artifact, "blobs": blobs, "format": format}.items()
                     if v is not None}
        data = {"kind": kind, "annotations": annotations or {}, "tags": tags or {},
                "reference": reference, "inputs": [parse_input(i) for i in inputs or []],
                "state": state}
        if not wait:
            return await self.publish("asset_registered", asset, data, branch=branch,
                                      event_id=event_id)
        eid = event_id or str(uuid.uuid4())
        return await self._publish_and_wait("asset_registered", asset, data, eid, branch,
                                            "instance_created")

    async def consume(self, asset: str, instance: str = "latest", *,
                      consumer: dict[str, Any] | None = None,
                      branch: str | None = None) -> dict[str, Any]:
        """Resolve an instance, record the consumption of that exact ``vN``, return it."""
        found: dict[str, Any] = await self.peek(asset, instance, branch=branch)
        data: dict[str, Any] = {"instance": found["instance"]}
        if consumer is not None:
            data["consumer"] = consumer
        await self.publish("asset_consumed", asset, data, branch=branch)
        return found

    async def report_quality(self, asset: str, check: str, passed: bool, *,
                             instance: str = "latest", severity: str = "error",
                             metrics: dict[str, float] | None = None,
                             details: str | None = None, event_id: str | None = None) -> str:
        """Report a check's result for an instance (resumes a candidate waiting on it)."""
        data: dict[str, Any] = {"instance": instance, "check": check, "passed": passed,
                                "severity": severity, "metrics": metrics or {}}
        if details is not None:
            data["details"] = details
        return await self.publish("quality_reported", asset, data, event_id=event_id)

    async def report_drift(self, asset: str, metric: str, score: float, *,
                           instance: str = "latest", reference: str | None = None,
                           features: dict[str, float] | None = None,
                           event_id: str | None = None) -> str:
        """Report a drift measurement; over the rule's ``max`` it triggers retrain_required."""
        data: dict[str, Any] = {"instance": instance, "metric": metric, "score": score,
                                "features": features or {}}
        if reference is not None:
            data["reference"] = reference
        return await self.publish("drift_reported", asset, data, event_id=event_id)

    async def request_promotion(self, asset: str, instance: str, *, reason: str,
                                alias: str = "champion", force: bool = False,
                                to_branch: str | None = None, requested_by: str | None = None,
                                wait: bool = False, event_id: str | None = None) -> Any:
        """Ask for a promotion. With ``wait``, return the ``asset_promoted`` (or, for
        ``to_branch``, ``instance_created``) data; raise PromotionRejectedError if refused."""
        data: dict[str, Any] = {"instance": instance, "alias": alias, "reason": reason,
                                "force": force, "requested_by": requested_by or self.source}
        if to_branch is not None:
            data["to_branch"] = to_branch
        if not wait:
            return await self.publish("promotion_requested", asset, data, event_id=event_id)
        expect = "instance_created" if to_branch else "asset_promoted"
        return await self._publish_and_wait("promotion_requested", asset, data,
                                            event_id or str(uuid.uuid4()), None, expect,
                                            listen_branch=to_branch)

    async def update_instance(self, asset: str, instance: str, *, reason: str,
                              state: str | None = None, validity: str | None = None,
                              event_id: str | None = None, wait: bool = False) -> Any:
        """Finalize a pending instance or change its validity (``instance`` is ``vN``).

        With ``wait``, return the instance once the change shows; raise EventRejectedError
        if the daemon refuses it."""
        data: dict[str, Any] = {"instance": instance, "reason": reason}
        if state is not None:
            data["state"] = state
        if validity is not None:
            data["validity"] = validity
        if not wait:
            return await self.publish("instance_updated", asset, data, event_id=event_id)

        async def applied() -> Any:
            got = await self.peek(asset, instance, allow_invalid=True)
            done = (state is None or got["state"] == state) and \
                (validity is None or got["validity"] == validity)
            return got if done else None

        return await self._publish_and_poll("instance_updated", asset, data,
                                            event_id or str(uuid.uuid4()), applied)

    async def rollback(self, asset: str, *, reason: str, alias: str = "champion",
                       to: str | None = None, wait: bool = True,
                       event_id: str | None = None) -> Any:
        """Move an alias back to ``to`` (``vN``) or its previous valid holder; with ``wait``,
        return the ``alias_rolled_back`` data."""
        data: dict[str, Any] = {"alias": alias, "reason": reason, "requested_by": self.source}
        if to is not None:
            data["to"] = to
        if not wait:
            return await self.publish("alias_rollback_requested", asset, data,
                                      event_id=event_id)
        return await self._publish_and_wait("alias_rollback_requested", asset, data,
                                            event_id or str(uuid.uuid4()), None,
                                            "alias_rolled_back")

    async def _publish_and_poll(self, type_: str, asset: str, data: dict[str, Any],
                                eid: str, check: Any) -> Any:
        """Publish, then poll ``check`` until it returns a result; fail on event_rejected."""
        rejected: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        async def on_msg(msg: Any) -> None:
            ev = orjson.loads(msg.data)
            if ev.get("causeid") == eid and not rejected.done():
                d = ev["data"]
                rejected.set_exception(EventRejectedError(eid, d["reason"], d.get("errors", [])))

        await self.connect()
        sub = await self._nc.subscribe(
            wire.out_subject(self.prefix, self.project, wire.ANY, asset, "event_rejected"),
            cb=on_msg)
        try:
            await self.publish(type_, asset, data, event_id=eid)
            deadline = asyncio.get_running_loop().time() + self.timeout
            while asyncio.get_running_loop().time() < deadline:
                if rejected.done():
                    return rejected.result()
                if (result := await check()) is not None:
                    return result
                await asyncio.sleep(0.05)
            raise AssetdError(f"{type_} {eid} not applied within {self.timeout}s; is assetd "
                              "running?")
        finally:
            await sub.unsubscribe()

    async def events(self, *, asset: str = "*", type: str = "*", durable: str | None = None,
                     deliver: str = "new", branch: str | None = None
                     ) -> AsyncIterator[dict[str, Any]]:
        """Outbound events of this project on ``branch`` (default the client's; ``*`` for
        every branch) as an async iterator.

        With ``durable`` (a consumer name), a restarted service resumes where it stopped:
        an event is acknowledged when the loop asks for the next one. ``deliver``: ``new``
        (default for a new consumer) or ``all`` (replay ``ASSETD_OUT`` from the start).
        """
        await self.connect()
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

        subject = wire.out_subject(self.prefix, self.project, branch or self.branch, asset, type)
        config = ConsumerConfig(
            ack_policy=AckPolicy.EXPLICIT, filter_subject=subject,
            deliver_policy=DeliverPolicy.ALL if deliver == "all" else DeliverPolicy.NEW)
        # The project's own stream (ASSETD_OUT_<project>), which the daemon keeps: NATS
        # permissions can then give a service this project's consumers and no other's.
        stream = (await self.request("events_stream"))["stream"]
        js = self._nc.jetstream()
        sub = await self._guarded(js.pull_subscribe(subject, durable=durable, stream=stream,
                                                    config=config))
        try:
            while True:
                try:
                    msgs = await sub.fetch(batch=100, timeout=5)
                except (TimeoutError, nats.errors.TimeoutError):
                    continue
                for msg in msgs:
                    event = _event(msg.data)
                    if event is not None:  # anything else would come back on every redelivery
                        yield event
                    await msg.ack()
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def _publish_and_wait(self, type_: str, asset: str, data: dict[str, Any], eid: str,
                                branch: str | None, expect: str,
                                listen_branch: str | None = None) -> Any:

        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        async def on_msg(msg: Any) -> None:
            ev = orjson.loads(msg.data)
            if ev.get("causeid") != eid or done.done():
                return
            if listen_branch and ev["type"] == expect and ev.get("branch") != listen_branch:
                return
            d = ev["data"]
            if ev["type"] == "event_rejected":
                done.set_exception(EventRejectedError(eid, d["reason"], d.get("errors", [])))
            elif ev["type"] == "promotion_rejected":
                done.set_exception(PromotionRejectedError(eid, d["reason"], d))
            else:
                done.set_result(d)

        await self.connect()
        subs = [await self._nc.subscribe(
                    wire.out_subject(self.prefix, self.project, wire.ANY, asset, t), cb=on_msg)
                for t in (expect, "event_rejected", "promotion_rejected")]
        try:
            await self.publish(type_, asset, data, branch=branch, event_id=eid)
            return await asyncio.wait_for(done, self.timeout)
        except TimeoutError:
            raise AssetdError(f"no {expect} for event {eid} within {self.timeout}s: is assetd "
                              "running? (a re-published id is applied only once)") from None
        finally:
            for sub in subs:
                await sub.unsubscribe()

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
            msg = await self._guarded(self._nc.request(subject, orjson.dumps(body),
                                                       timeout=self.timeout))
        except nats.errors.NoRespondersError:
            raise QueryError("internal",
                             "no assetd daemon answers on NATS; is it running?") from None
        except nats.errors.TimeoutError:
            raise QueryError("internal", f"assetd did not answer within {self.timeout}s") from None
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

    async def event(self, event_id: str) -> dict[str, Any]:
        """What became of an inbound event id: ``{status: applied|rejected|unknown, type,
        outcome}`` (CONTRACT §7 ``event``); a re-published id answers its first outcome."""
        result: dict[str, Any] = await self.request("event", id=event_id)
        return result

    async def status(self) -> dict[str, Any]:
        """The daemon's status."""
        result: dict[str, Any] = await self.request("status")
        return result


def _event(data: bytes) -> dict[str, Any] | None:
    """An outbound CloudEvent, or None (logged) for a message that is not one."""
    try:
        event = orjson.loads(data)
    except orjson.JSONDecodeError:
        event = None
    if isinstance(event, dict) and isinstance(event.get("data"), dict) and "type" in event:
        return event
    log.warning("skipped a message that is not an assetd event", size=len(data))
    return None


def parse_input(value: dict[str, str] | str) -> dict[str, str]:
    """``"features@v3"`` / ``"features"`` / a dict → an ``inputs`` entry."""
    if isinstance(value, dict):
        return value
    asset, _, selector = value.partition("@")
    return {"asset": asset, "instance": selector or "latest"}
