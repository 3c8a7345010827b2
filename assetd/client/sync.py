"""``SyncAssetClient``: the async client on a private event loop thread, for plain scripts."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Coroutine, Iterator
from typing import Any, Self, TypeVar

from assetd.client.aio import AssetClient

T = TypeVar("T")


class SyncAssetClient:
    """Blocking twin of :class:`AssetClient`: same methods, same arguments."""

    def __init__(self, project: str | None = None, branch: str | None = None,
                 **kw: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name="assetd-client")
        self._thread.start()
        self._client = AssetClient(project, branch, **kw)

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if not callable(attr) or not asyncio.iscoroutinefunction(attr):
            return attr

        def call(*args: Any, **kw: Any) -> Any:
            return self._run(attr(*args, **kw))

        return call

    def events(self, **kw: Any) -> Iterator[dict[str, Any]]:
        """:meth:`AssetClient.events` as an ordinary iterator (same arguments): each event
        is fetched on the private loop; leaving the loop stops the subscription."""
        agen: AsyncIterator[dict[str, Any]] = self._client.events(**kw)
        try:
            while True:
                try:
                    yield self._run(_next(agen))
                except StopAsyncIteration:
                    return
        finally:
            closing = getattr(agen, "aclose", None)
            if closing is not None and self._loop.is_running():
                self._run(closing())

    def close(self) -> None:
        """Close the connection and stop the private loop."""
        try:
            self._run(self._client.close())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
            self._loop.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


async def _next(agen: AsyncIterator[T]) -> T:
    return await anext(agen)
