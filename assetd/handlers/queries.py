"""The query API (CONTRACT §7) over core NATS request-reply."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import structlog
from pydantic import ValidationError
from sqlalchemy import Engine

from assetd.errors import QueryError
from assetd.handlers.decode import pydantic_errors
from assetd.registry import reads
from assetd.schemas.api import REQUESTS
from assetd.schemas.ids import is_project

log = structlog.get_logger("assetd.api")


class Queries:
    """Answers ``<prefix>.api.<project>.<method>`` and ``<prefix>.api.status``."""

    def __init__(self, *, engine: Engine, prefix: str,
                 status: Callable[[], Awaitable[dict[str, Any]]],
                 max_lineage_depth: int = 50, max_lineage_nodes: int = 10_000) -> None:
        self.engine, self.prefix, self.status = engine, prefix, status
        self.lineage_limits = {"max_depth": max_lineage_depth, "max_nodes": max_lineage_nodes}

    async def handle(self, subject: str, payload: bytes) -> bytes:
        """Answer one request; every failure becomes ``{"ok": false, "error": …}``."""
        try:
            result = await self._answer(subject, payload)
            return orjson.dumps({"ok": True, "result": result})
        except QueryError as exc:
            return _error(exc.code, exc.message)
        except Exception as exc:
            log.exception("query failed", subject=subject)
            return _error("internal", f"{type(exc).__name__}: {exc}"[:500])

    async def _answer(self, subject: str, payload: bytes) -> Any:
        parts = subject.split(".")
        if parts == [self.prefix, "api", "status"]:
            return await self.status()
        if len(parts) != 4 or not is_project(parts[2]) or parts[3] not in REQUESTS:
            raise QueryError("invalid", f"use {self.prefix}.api.<project>.<method> with method "
                             f"one of {', '.join(REQUESTS)}, or {self.prefix}.api.status")
        project, method = parts[2], parts[3]
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
        return await asyncio.to_thread(self._run, project, method, args)

    def _run(self, project: str, method: str, args: dict[str, Any]) -> Any:
        with self.engine.connect() as conn:
            if method == "resolve":
                return reads.resolve(conn, project=project, branch=args["branch"],
                                     asset=args["asset"], selector=args["instance"],
                                     allow_invalid=args["allow_invalid"], at=args["at"])
            if method == "assets":
                return reads.assets(conn, project=project, **args)
            if method == "instances":
                return reads.instances(conn, project=project, **args)
            if method == "lineage":
                return reads.lineage(conn, project=project, branch=args["branch"],
                                     asset=args["asset"], selector=args["instance"],
                                     direction=args["direction"], depth=args["depth"],
                                     **self.lineage_limits)
            if method == "timeline":
                return reads.timeline(conn, project=project, **args)
            return reads.decisions(conn, project=project, **args)


def _error(code: str, message: str) -> bytes:
    return orjson.dumps({"ok": False, "error": {"code": code, "message": message}})
