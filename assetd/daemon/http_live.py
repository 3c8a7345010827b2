"""The web UI's own read routes beside the query API (CONTRACT §10), under the same token:

- ``GET /api/v1/<project>/stream?branch=…``: server-sent events, one per outbound event of
  the project (of one branch when ``branch`` is given), from a core NATS subscription on
  ``assetd.out.<project>.>`` over the daemon's connection (docs/architecture.md says why
  not a JetStream consumer). An EventSource cannot send headers, so this route alone also
  takes the token as ``?token=``.
- ``GET /api/v1/<project>/dlq?limit=…``: the project's dead letters with their reasons
  (:class:`assetd.client.dlq.DeadLetters`), oldest first.
- ``GET /api/v1/projects`` and ``GET /api/v1/<project>/branches``: the pickers' names
  (:mod:`assetd.daemon.catalog`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import re
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

import orjson
import structlog
from aiohttp import web
from sqlalchemy import Engine

from assetd.client.dlq import DeadLetters
from assetd.daemon import catalog
from assetd.daemon.http_api import HttpApi
from assetd.handlers.queries import error_reply
from assetd.schemas import wire
from assetd.schemas.ids import BRANCH_RE, is_project
from assetd.schemas.openapi import ERRORS, PREFIX

log = structlog.get_logger("assetd.http")
HEARTBEAT = 15.0  # seconds between keep-alive comments on an idle stream
QUEUE = 1000  # events buffered per stream; beyond that the browser is told to re-read
MAX_DLQ = 200
_BRANCH_OK = re.compile(BRANCH_RE)


class LiveApi:
    """The stream, dead-letter, project and branch routes; ``nc`` is the daemon's NATS
    connection (None before it connects), ``serving`` whether the daemon has started."""

    def __init__(self, *, api: HttpApi, nc: Callable[[], Any], serving: Callable[[], bool],
                 engine: Engine, executor: Executor, prefix: str) -> None:
        self.api, self.nc, self.serving = api, nc, serving
        self.engine, self.executor, self.prefix = engine, executor, prefix
        self._streams: set[asyncio.Queue[bytes | None]] = set()

    def add_routes(self, app: web.Application) -> None:
        """Route before the query API's ``/api/v1/{project}/{method}``, which would take them."""
        app.router.add_get(f"{PREFIX}/projects", self._projects)
        app.router.add_get(f"{PREFIX}/{{project}}/branches", self._branches)
        app.router.add_get(f"{PREFIX}/{{project}}/dlq", self._dlq)
        app.router.add_get(f"{PREFIX}/{{project}}/stream", self._stream)
        app.on_shutdown.append(self._close_streams)

    async def _close_streams(self, _: web.Application) -> None:
        """At shutdown: end every open stream (each handler then returns at once)."""
        for queue in list(self._streams):
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(None)
            if queue.full():  # make room for the end marker
                queue.get_nowait()
                queue.put_nowait(None)

    def _refused(self, request: web.Request, *, token_param: bool = False) -> web.Response | None:
        """The error response for a request that may not go on, else None."""
        given = request.query.get("token", "") if token_param else ""
        if not (self.api.authorized(request) or (
                given and self.api.token and hmac.compare_digest(given.encode(),
                                                                 self.api.token.encode()))):
            body = error_reply("invalid", "a bearer token is required (Authorization: Bearer …)")
            return web.Response(body=body, status=401, content_type="application/json",
                                headers={"WWW-Authenticate": 'Bearer realm="assetd"'})
        project = request.match_info.get("project")
        if project is not None and not is_project(project):
            return _error("invalid", f"not a project name: {project[:100]!r}")
        if not self.serving() or self.nc() is None:
            return _error("internal", "assetd is starting; ask again shortly")
        return None

    async def _read(self, fn: Callable[..., list[str]], **kw: Any) -> list[str]:
        def run() -> list[str]:
            with self.engine.connect() as conn:
                return fn(conn, **kw)
        return await asyncio.get_running_loop().run_in_executor(self.executor, run)

    async def _projects(self, request: web.Request) -> web.Response:
        if refused := self._refused(request):
            return refused
        return _ok(await self._read(catalog.projects))

    async def _branches(self, request: web.Request) -> web.Response:
        if refused := self._refused(request):
            return refused
        return _ok(await self._read(catalog.branches, project=request.match_info["project"]))

    async def _dlq(self, request: web.Request) -> web.Response:
        if refused := self._refused(request):
            return refused
        try:
            limit = int(request.query.get("limit", "50"))
        except ValueError:
            limit = 0
        if not 1 <= limit <= MAX_DLQ:
            return _error("invalid", f"limit: an integer from 1 to {MAX_DLQ}")
        reader = DeadLetters(self.nc(), prefix=self.prefix, project=request.match_info["project"])
        try:
            letters = await asyncio.wait_for(reader.list(limit=limit), 10)
        except Exception as exc:  # the stream missing or JetStream not answering
            return _error("internal", f"the dead letters cannot be read: {exc!r}"[:300])
        return _ok([{**d.summary(), "subject": d.subject, "errors": d.errors,
                     "size": len(d.payload)} for d in letters])

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        if refused := self._refused(request, token_param=True):
            return refused
        project, branch = request.match_info["project"], request.query.get("branch")
        if branch is not None and not _BRANCH_OK.match(branch):
            return _error("invalid", f"not a branch name: {branch[:100]!r}")
        subject = (f"{self.prefix}.out.{project}.{wire.branch_token(branch)}.>" if branch
                   else wire.project_filter(self.prefix, "out", project))
        queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=QUEUE)

        async def deliver(msg: Any) -> None:
            try:
                queue.put_nowait(msg.data)
            except asyncio.QueueFull:  # a slow browser: it re-reads what it shows
                log.warning("event stream overflowed", project=project)
        sub = await self.nc().subscribe(subject, cb=deliver)
        self._streams.add(queue)
        response = web.StreamResponse(headers={
            "Content-Type": "text/event-stream", "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no"})
        try:
            await response.prepare(request)
            await response.write(b"retry: 2000\nevent: ready\ndata: {}\n\n")
            await self._pump(queue, response)
        except ConnectionError:
            pass  # the browser went away
        finally:
            self._streams.discard(queue)
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        return response

    async def _pump(self, queue: asyncio.Queue[bytes | None],
                    response: web.StreamResponse) -> None:
        """Write each event as ``data:`` (its CloudEvent JSON, one line), a comment when
        idle, until the end marker."""
        while True:
            try:
                data = await asyncio.wait_for(queue.get(), HEARTBEAT)
            except TimeoutError:
                await response.write(b": keep-alive\n\n")
                continue
            if data is None:
                return
            try:  # one line: the JSON re-encoded without newlines
                line = orjson.dumps(orjson.loads(data))
            except orjson.JSONDecodeError:
                continue
            await response.write(b"event: cloudevent\ndata: " + line + b"\n\n")


def _ok(result: Any) -> web.Response:
    return web.Response(body=orjson.dumps({"ok": True, "result": result}),
                        content_type="application/json")


def _error(code: str, message: str) -> web.Response:
    return web.Response(body=error_reply(code, message), status=ERRORS[code],
                        content_type="application/json")
