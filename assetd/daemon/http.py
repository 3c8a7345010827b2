"""``/healthz``, ``/readyz``, ``/metrics``, the HTTP API (``/api/v1``, see
:mod:`assetd.daemon.http_api`), the UI's stream and dead letters (:mod:`assetd.daemon.http_live`)
and the web UI at ``/`` (:mod:`assetd.daemon.http_ui`) on ``ASSETD_HTTP_PORT`` (0: off)."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder, gzip_accepted

from assetd.daemon.http_api import HttpApi, check_bind
from assetd.daemon.http_live import LiveApi
from assetd.daemon.http_ui import WebUi
from assetd.errors import ConfigError
from assetd.metrics import Metrics


class HttpServer:
    """Serves the probes and metrics (never behind the token: probes and scrapers need
    them) and, when given, the API; ``ready`` and ``refresh`` come from the daemon."""

    def __init__(self, *, host: str, port: int, metrics: Metrics,
                 ready: Callable[[], Awaitable[dict[str, bool]]],
                 refresh: Callable[[], Awaitable[None]], api: HttpApi | None = None,
                 live: LiveApi | None = None, ui: WebUi | None = None) -> None:
        self.host, self.port, self.metrics = host, port, metrics
        self.ready, self.refresh, self.api = ready, refresh, api
        self.live, self.ui = live, ui
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        """Listen; a taken port, or the API beyond loopback without a token, is a
        ConfigError with what to do."""
        if self.api is not None:
            check_bind(self.host, self.api.token)
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        if self.live is not None:  # before the API's /api/v1/{project}/{method}
            self.live.add_routes(app)
        if self.api is not None:
            self.api.add_routes(app)
        if self.ui is not None:
            self.ui.add_routes(app)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=5)
        await self._runner.setup()
        try:
            await web.TCPSite(self._runner, self.host, self.port).start()
        except OSError as exc:
            await self._runner.cleanup()
            raise ConfigError(f"HTTP port {self.host}:{self.port} is not available "
                              f"({exc.strerror}); set ASSETD_HTTP_PORT to a free port, or 0 "
                              "to turn it off") from None

    async def stop(self) -> None:
        """Stop listening."""
        if self._runner is not None:
            await self._runner.cleanup()

    async def _healthz(self, _: web.Request) -> web.Response:
        return web.json_response({"alive": True})

    async def _readyz(self, _: web.Request) -> web.Response:
        try:
            checks = await asyncio.wait_for(self.ready(), 15)
        except Exception as exc:  # a check that hangs or breaks is a failed check
            body = {"ready": False, "checks": {}, "error": f"{type(exc).__name__}: {exc}"[:300]}
            return web.json_response(body, status=503)
        ok = all(checks.values())
        return web.json_response({"ready": ok, "checks": checks}, status=200 if ok else 503)

    async def _metrics(self, request: web.Request) -> web.Response:
        with contextlib.suppress(Exception):  # stale gauges beat no metrics at all
            await asyncio.wait_for(self.refresh(), 5)
        body, headers = exposition(self.metrics.registry,
                                   accept=request.headers.get("Accept", ""),
                                   accept_encoding=request.headers.get("Accept-Encoding", ""),
                                   names=request.query.getall("name[]", []))
        return web.Response(body=body, headers=headers)


def exposition(registry: CollectorRegistry, *, accept: str, accept_encoding: str,
               names: list[str]) -> tuple[bytes, dict[str, str]]:
    """What prometheus-client's own handlers answer: the format the scraper's ``Accept``
    asks for (OpenMetrics or the text format), gzip if its ``Accept-Encoding`` allows it,
    only the series named by ``name[]`` parameters if there are any."""
    encoder, content_type = choose_encoder(accept)
    body = encoder(registry.restricted_registry(names) if names else registry)
    headers = {"Content-Type": content_type, "Vary": "Accept, Accept-Encoding"}
    if gzip_accepted(accept_encoding):
        body = gzip.compress(body)
        headers["Content-Encoding"] = "gzip"
    return body, headers
