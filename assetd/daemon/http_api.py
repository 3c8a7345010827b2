"""The HTTP API (CONTRACT §10) on the daemon's HTTP server: ``/api/v1/<project>/<method>``
(GET with query parameters, or POST with the JSON request), ``/api/v1/status`` and
``/api/v1/openapi.json``.

Every query goes through :meth:`assetd.handlers.queries.Queries.answer`, the code that
answers over NATS: same request models, same ``{ok, result|error}`` reply; only the HTTP
status is added (:data:`assetd.schemas.openapi.ERRORS`). Read-only: nothing is published
and ``events_stream`` (which creates a stream) is NATS only.
"""

from __future__ import annotations

import hmac
import ipaddress
import re
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web
from multidict import MultiMapping

from assetd.errors import ConfigError, QueryError
from assetd.handlers.queries import error_reply
from assetd.schemas.api import REQUESTS
from assetd.schemas.export import render
from assetd.schemas.ids import is_project
from assetd.schemas.openapi import ERRORS, HTTP_METHODS, PREFIX, openapi_document

Answer = Callable[[str | None, str, bytes], Awaitable[tuple[bytes, str | None]]]
_DEEP = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\[([^\]]+)\]")  # tags[team]=risk


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the server on this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name other than localhost, or "" (every interface)
        return False


def check_bind(host: str, token: str | None) -> None:
    """Refuse to serve the API beyond loopback without a bearer token."""
    if not token and not is_loopback(host):
        raise ConfigError(f"ASSETD_HTTP_HOST is {host!r}, beyond loopback: set "
                          "ASSETD_HTTP_TOKEN (the bearer token the HTTP API then requires), "
                          "or bind 127.0.0.1")


def query_body(query: MultiMapping[str]) -> bytes:
    """The JSON request a GET's parameters spell: ``field=value``; a map as
    ``field[key]=value`` (OpenAPI's deepObject); a list as the field repeated
    (``where=a>1&where=b<2``). Values stay strings: the request model converts them
    (``limit=3``, ``allow_invalid=true``) and refuses a list where one value belongs."""
    body: dict[str, Any] = {}
    for key in dict.fromkeys(query.keys()):
        values = query.getall(key)
        if m := _DEEP.fullmatch(key):
            into = body.setdefault(m[1], {})
            if not isinstance(into, dict) or len(values) > 1:
                raise QueryError("invalid", f"{key!r}: one value per key of {m[1]!r}, and "
                                 "not the whole field as well")
            into[m[2]] = values[0]
        elif isinstance(body.get(key), dict):
            raise QueryError("invalid", f"{key!r} is given both whole and by key")
        else:
            body[key] = values[0] if len(values) == 1 else values
    return orjson.dumps(body)


class HttpApi:
    """The ``/api/v1`` routes; ``answer`` is the daemon's (bounded) :meth:`Queries.answer`."""

    def __init__(self, *, answer: Answer, token: str | None) -> None:
        self.answer, self.token = answer, token
        self._openapi = render(openapi_document())

    def add_routes(self, app: web.Application) -> None:
        """Route ``/api/v1/…`` to this API."""
        app.router.add_get(f"{PREFIX}/status", self._status)
        app.router.add_get(f"{PREFIX}/openapi.json", self._openapi_json)
        app.router.add_get(f"{PREFIX}/{{project}}/{{method}}", self._query)
        app.router.add_post(f"{PREFIX}/{{project}}/{{method}}", self._query)

    def authorized(self, request: web.Request) -> bool:
        """No token set (loopback only), or the request's bearer token is the token."""
        if not self.token:
            return True
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            given.strip().encode(), self.token.encode())

    async def _status(self, request: web.Request) -> web.Response:
        if not self.authorized(request):
            return _unauthorized()
        return await self._respond(None, "status", _empty)

    async def _openapi_json(self, request: web.Request) -> web.Response:
        if not self.authorized(request):
            return _unauthorized()
        return web.Response(body=self._openapi, content_type="application/json")

    async def _query(self, request: web.Request) -> web.Response:
        project, method = request.match_info["project"], request.match_info["method"]
        if not self.authorized(request):
            return _unauthorized()
        if not is_project(project):
            return _json(error_reply("invalid", f"not a project name: {project[:100]!r}"),
                         "invalid")
        if method not in HTTP_METHODS:
            nats = " (NATS only)" if method in REQUESTS else ""
            return _json(error_reply("not_found", f"no method {method[:100]!r}{nats}; one of "
                                     f"{', '.join(HTTP_METHODS)}"), "not_found")

        async def body() -> bytes:
            return await request.read() if request.method == "POST" else \
                query_body(request.query)
        return await self._respond(project, method, body)

    async def _respond(self, project: str | None, method: str,
                       body: Callable[[], Awaitable[bytes]]) -> web.Response:
        try:
            payload = await body()
        except QueryError as exc:
            return _json(error_reply(exc.code, exc.message), exc.code)
        reply, code = await self.answer(project, method, payload)
        return _json(reply, code)


async def _empty() -> bytes:
    return b""


def _json(reply: bytes, code: str | None) -> web.Response:
    status = ERRORS.get(code, 500) if code else 200
    return web.Response(body=reply, status=status, content_type="application/json")


def _unauthorized() -> web.Response:
    body = error_reply("invalid", "a bearer token is required (Authorization: Bearer …)")
    return web.Response(body=body, status=401, content_type="application/json",
                        headers={"WWW-Authenticate": 'Bearer realm="assetd"'})
