"""The query API (CONTRACT §7) over core NATS request-reply."""

from __future__ import annotations

import asyncio
import functools
import re
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from typing import Any

import orjson
import structlog
from pydantic import ValidationError
from sqlalchemy import Engine

from assetd.errors import QueryError
from assetd.handlers.decode import pydantic_errors
from assetd.registry import compare, reads, search
from assetd.registry.answers import AnswerCache
from assetd.schemas import wire
from assetd.schemas.api import REQUESTS

log = structlog.get_logger("assetd.api")
# Room for the reply's protocol line (NATS counts headers against max_payload too).
REPLY_SLACK = 4096
# Methods whose replies can be up to a megabyte (a graph, a page of instances)
_LARGE = frozenset({"lineage", "instances", "compare", "timeline", "decisions"})
_INBOX = re.compile(r"_INBOX(\.[A-Za-z0-9_~/@+-]{1,64}){1,8}")


class Queries:
    """Answers the query subjects (a project's methods, and ``status``).

    A reply goes only to the requester's own inbox space (``_INBOX.<project>.…`` for a
    project's query, ``_INBOX.…`` for ``status``) and is never larger than ``max_reply()``
    bytes: a page of instances is cut short (``next`` says where to go on), a lineage graph
    is cut (``truncated``), anything else that cannot fit is refused as ``invalid``.
    """

    def __init__(self, *, engine: Engine, prefix: str,
                 status: Callable[[], Awaitable[dict[str, Any]]],
                 max_lineage_depth: int = 50, max_lineage_nodes: int = 10_000,
                 max_lineage_edges: int = 50_000,
                 max_reply: Callable[[], int] = lambda: 1024 * 1024 - REPLY_SLACK,
                 events_stream: Callable[[str], Awaitable[str]] | None = None,
                 executor: Executor | None = None, cache: AnswerCache | None = None) -> None:
        self.engine, self.prefix, self.status = engine, prefix, status
        self.cache = cache if cache is not None and cache.enabled else None
        self.executor = executor  # None: asyncio's default executor
        self.events_stream = events_stream
        self.max_reply = max_reply
        self.lineage_limits = {"max_depth": max_lineage_depth, "max_nodes": max_lineage_nodes,
                               "max_edges": max_lineage_edges}

    def reply_allowed(self, subject: str, reply: str | None) -> bool:
        """May the answer to a request on ``subject`` go to ``reply``?"""
        if not reply or not _INBOX.fullmatch(reply):
            return False
        parsed = wire.parse_api(subject, self.prefix)
        project = parsed[0] if parsed else None
        return project is None or reply.startswith(f"_INBOX.{project}.")

    def cached(self, subject: str, payload: bytes) -> bytes | None:
        """The reply to a ``resolve`` request kept from an earlier identical one, if the
        registry has not changed since (no thread, no parsing: answered on the spot)."""
        if self.cache is None or not subject.endswith(".resolve"):
            return None
        parsed = wire.parse_api(subject, self.prefix)
        if parsed is None or parsed[0] is None:
            return None
        return self.cache.get((parsed[0], payload), count_miss=False)

    async def handle(self, subject: str, payload: bytes) -> bytes:
        """Answer one NATS request on ``subject``."""
        project, method = wire.parse_api(subject, self.prefix) or (None, "")
        return (await self.answer(project, method, payload))[0]

    async def answer(self, project: str | None, method: str,
                     payload: bytes) -> tuple[bytes, str | None]:
        """Answer one request, from NATS or HTTP alike: the reply and its error code (None
        when ``ok``); every failure becomes ``{"ok": false, "error": …}``."""
        key, version = None, None
        if self.cache is not None and method == "resolve" and project is not None:
            key = (project, payload)
            hit = self.cache.get(key)
            if hit is not None:
                return hit, None
            version = self.cache.version()  # before the read: a change meanwhile outdates it
        try:
            result, keep = await self._answer(project, method, payload)
            if method in _LARGE:  # serialised beside the read, not on the event loop
                reply = await asyncio.get_running_loop().run_in_executor(
                    self.executor, self._fit, method, result)
            else:
                reply = self._fit(method, result)
            if key is not None and keep:
                self.cache.put(key, reply, version)  # type: ignore[union-attr]
            return reply, None
        except QueryError as exc:
            return error_reply(exc.code, exc.message), exc.code
        except Exception as exc:
            log.exception("query failed", project=project, method=method)
            return error_reply("internal", f"{type(exc).__name__}: {exc}"[:500]), "internal"

    async def _answer(self, project: str | None, method: str,
                      payload: bytes) -> tuple[Any, bool]:
        """The result, and whether it is a function of the registry's state alone (a
        ``resolve`` without ``at``: its reply may be kept, see assetd/registry/answers.py)."""
        if method == "status":
            return await self.status(), False
        if project is None or method not in REQUESTS:
            fmt = wire.API_FORMAT.replace("<prefix>", self.prefix)
            raise QueryError("invalid", f"use {fmt} with method one of {', '.join(REQUESTS)}, "
                             f"or {wire.api_subject(self.prefix, None, 'status')}")
        try:
            body = orjson.loads(payload) if payload.strip() else {}
            req = REQUESTS[method].model_validate(body)
        except orjson.JSONDecodeError as exc:
            raise QueryError("invalid", f"request is not JSON: {exc}") from None
        except ValidationError as exc:
            errs = pydantic_errors(exc)
            message = "; ".join(f"{e['loc']}: {e['msg']}" for e in errs)
            raise QueryError("invalid", message) from None
        args = req.model_dump()
        if method == "events_stream":
            if self.events_stream is None:
                raise QueryError("internal", "this daemon keeps no project streams")
            return {"stream": await self.events_stream(project),
                    "subjects": wire.project_filter(self.prefix, "out", project)}, False
        run = functools.partial(self._run, project, method, args)
        result = await asyncio.get_running_loop().run_in_executor(self.executor, run)
        return result, method == "resolve" and args.get("at") is None

    def _fit(self, method: str, result: Any) -> bytes:
        """The reply, cut to ``max_reply()`` bytes where the method allows it."""
        limit = self.max_reply()
        reply = orjson.dumps({"ok": True, "result": result})
        if len(reply) <= limit:
            return reply
        if method == "instances" and len(result["items"]) > 1:
            return _fit_page(result, limit)
        if method == "lineage" and len(result["nodes"]) > 1:
            return _fit_graph(result, limit)
        raise QueryError("invalid", f"the reply would be {len(reply)} bytes, over the NATS "
                         f"limit of {limit}; ask for less")

    def _run(self, project: str, method: str, args: dict[str, Any]) -> Any:
        with self.engine.connect() as conn:
            if method == "resolve":
                return reads.resolve(conn, project=project, branch=args["branch"],
                                     asset=args["asset"], selector=args["instance"],
                                     allow_invalid=args["allow_invalid"], at=args["at"])
            if method == "assets":
                return reads.assets(conn, project=project, **args)
            if method == "instances":
                if search.filtered(args):
                    return search.search(conn, project=project, **args)
                return reads.instances(conn, project=project, branch=args["branch"],
                                       asset=args["asset"], limit=args["limit"],
                                       before=args["before"])
            if method == "lineage":
                return reads.lineage(conn, project=project, branch=args["branch"],
                                     asset=args["asset"], selector=args["instance"],
                                     direction=args["direction"], depth=args["depth"],
                                     **self.lineage_limits)
            if method == "compare":
                return compare.compare(conn, project=project, **args)
            if method == "timeline":
                return reads.timeline(conn, project=project, **args)
            if method == "event":
                return reads.event(conn, project=project, event_id=args["id"])
            return reads.decisions(conn, project=project, **args)


def _fit_page(page: dict[str, Any], limit: int) -> bytes:
    """The longest prefix of a page of instances that fits; ``next`` continues after it."""
    items = page["items"]
    lo, hi = 1, len(items) - 1  # items[:hi + 1] did not fit
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if len(_page(items[:mid])) <= limit:
            lo = mid
        else:
            hi = mid - 1
    reply = _page(items[:lo])
    if len(reply) > limit:
        raise QueryError("invalid", f"one instance is over the NATS limit of {limit} bytes")
    return reply


def _page(items: list[dict[str, Any]]) -> bytes:
    return orjson.dumps({"ok": True, "result": {"items": items,
                                                "next": items[-1]["version"]}})


def _fit_graph(graph: dict[str, Any], limit: int) -> bytes:
    """Halve the graph (walk order kept, so nearer nodes stay) until it fits."""
    nodes, edges = graph["nodes"], graph["edges"]
    while True:
        nodes = nodes[: max(1, len(nodes) // 2)]
        keep = {n["id"] for n in nodes}
        edges = [e for e in edges if e["from"] in keep and e["to"] in keep]
        reply = orjson.dumps({"ok": True, "result": {"nodes": nodes, "edges": edges,
                                                     "truncated": True}})
        if len(reply) <= limit:
            return reply
        if len(nodes) == 1:
            raise QueryError("invalid", f"one node is over the NATS limit of {limit} bytes")


def error_reply(code: str, message: str) -> bytes:
    """The ``{"ok": false, "error": …}`` reply."""
    return orjson.dumps({"ok": False, "error": {"code": code, "message": message}})
