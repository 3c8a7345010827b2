"""The web UI (CONTRACT §10): ``/`` and ``/ui/<file>``, static files shipped inside the
package (``assetd/ui/static``), read once at start, with no build step and nothing fetched
from elsewhere. The page reads only ``/api/v1`` (same origin); the files themselves hold
no data, so they need no token.

Every file is served with ``Cache-Control: no-cache`` and an ``ETag`` (a browser revalidates
and gets a 304 while the daemon's version is unchanged: no stale UI after an upgrade), and a
Content-Security-Policy that allows only this origin's scripts, styles and connections.
"""

from __future__ import annotations

import hashlib
from importlib import resources

from aiohttp import web

TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css",
         ".svg": "image/svg+xml", ".png": "image/png", ".txt": "text/plain",
         ".json": "application/json"}
TEXT = {"text/html", "text/javascript", "text/css", "image/svg+xml", "text/plain",
        "application/json"}
HEADERS = {
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": ("default-src 'none'; script-src 'self'; style-src 'self'; "
                                "img-src 'self' data:; connect-src 'self'; "
                                "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"),
}


class StaticFile:
    """One file's bytes, type and ETag."""

    def __init__(self, name: str, body: bytes) -> None:
        suffix = name[name.rfind("."):] if "." in name else ""
        kind = TYPES.get(suffix, "application/octet-stream")
        self.body = body
        self.content_type = f"{kind}; charset=utf-8" if kind in TEXT else kind
        self.etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'

    def response(self, request: web.Request) -> web.Response:
        """200 with the file, or 304 when the browser's copy is this one."""
        headers = {**HEADERS, "ETag": self.etag}
        if self.etag in request.headers.get("If-None-Match", ""):
            return web.Response(status=304, headers=headers)
        return web.Response(body=self.body, headers={**headers,
                                                     "Content-Type": self.content_type})


def load_files() -> dict[str, StaticFile]:
    """Every file under ``assetd/ui/static`` (flat), by name."""
    root = resources.files("assetd.ui") / "static"
    return {entry.name: StaticFile(entry.name, entry.read_bytes())
            for entry in root.iterdir() if entry.is_file()}


class WebUi:
    """Routes ``/`` (the page) and ``/ui/<name>`` (its scripts, styles, vendored files)."""

    def __init__(self) -> None:
        self.files = load_files()

    def add_routes(self, app: web.Application) -> None:
        """Route ``/`` and ``/ui/{name}``."""
        app.router.add_get("/", self._index)
        app.router.add_get("/ui/{name}", self._file)

    async def _index(self, request: web.Request) -> web.Response:
        return self.files["index.html"].response(request)

    async def _file(self, request: web.Request) -> web.Response:
        found = self.files.get(request.match_info["name"])
        if found is None:
            raise web.HTTPNotFound(text="no such file\n")
        return found.response(request)
