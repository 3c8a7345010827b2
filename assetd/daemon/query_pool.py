"""Queries answered concurrently: a task per request, at most ``query_concurrency`` at once.

The NATS subscriber hands each request to :meth:`QueryPool.submit` and takes the next one
at once; only when every slot is busy does it wait (back-pressure: nats-py buffers what
arrives meanwhile, and other replicas of the queue group take their share). Registry reads
run in the pool's own threads, so that a burst of queries cannot take the default
executor's few threads from the write path (the inbound batches, the outbox relay).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import structlog

log = structlog.get_logger("assetd.api")
# As many threads as the reader engine has PostgreSQL connections (pool 4 + overflow 4):
# more would only queue for a connection; SQLite reads in WAL run side by side.
MAX_READ_THREADS = 8
T = TypeVar("T")


class QueryPool:
    """Bounded concurrency for the query API, and the threads its registry reads run in."""

    def __init__(self, *, limit: int) -> None:
        self.limit = limit
        self._slots = asyncio.Semaphore(limit)
        self._tasks: set[asyncio.Task[None]] = set()
        self.executor = ThreadPoolExecutor(max_workers=min(limit, MAX_READ_THREADS),
                                           thread_name_prefix="assetd-query")

    @property
    def in_flight(self) -> int:
        """Requests being answered now."""
        return len(self._tasks)

    async def submit(self, work: Callable[[], Awaitable[None]]) -> None:
        """Start answering one request as soon as a slot is free, and return."""
        await self._slots.acquire()
        task = asyncio.create_task(self._run(work))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def call(self, work: Callable[[], Awaitable[T]]) -> T:
        """Answer one request in the caller's task once a slot is free (the HTTP API, whose
        server gives each request a task already)."""
        async with self._slots:
            return await work()

    async def _run(self, work: Callable[[], Awaitable[None]]) -> None:
        try:
            await work()
        except Exception:  # a reply that cannot be sent (connection closing) is logged
            log.exception("query reply not sent")
        finally:
            self._slots.release()

    async def drain(self) -> None:
        """Wait for the requests in hand to be answered (at shutdown)."""
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def close(self) -> None:
        """Let the read threads go."""
        self.executor.shutdown(wait=False, cancel_futures=True)
