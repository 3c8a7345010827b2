"""One supervisor for the daemon's background loops: log, back off, recover, retry, report.

Each loop (inbound pull, outbox relay, scheduler) is a coroutine that runs until it is asked
to stop. If it raises, the supervisor logs the error, waits (0.1 s doubling to a few
seconds), runs the loop's ``recover`` step (the inbound loop re-binds its durable consumer,
re-creating streams and consumer if they are gone), and starts it again. While a loop is
failing ``/readyz`` answers 503 and ``status`` says why and since when.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import structlog
from faststream.nats.broker.broker import UNRECOVERABLE_CONNECT_ERRORS
from nats.errors import Error as NatsError

from assetd.metrics import Metrics
from assetd.schemas.envelope import iso

log = structlog.get_logger("assetd.supervisor")
Run = Callable[[], Awaitable[None]]


class NatsUnavailableError(Exception):
    """The NATS connection is down (nats-py is reconnecting); the loop waits for it."""


# errors of a dependency going away: logged as a line, not with a traceback
EXPECTED = (NatsUnavailableError, NatsError, TimeoutError, ConnectionError, OSError)


@dataclass
class LoopState:
    """What one supervised loop is doing, for ``/readyz``, ``status`` and ``/metrics``."""

    state: Literal["running", "failing", "stopped"] = "running"
    error: str | None = None
    since: datetime = field(default_factory=lambda: datetime.now(UTC))
    restarts: int = 0
    logged: tuple[float, str] = (0.0, "")  # when and what "still failing" last said

    def public(self) -> dict[str, Any]:
        """The ``status`` form: ``{"state": "running"}`` or the error and since when."""
        out: dict[str, Any] = {"state": self.state, "restarts": self.restarts}
        if self.state == "failing":
            out |= {"error": self.error, "since": iso(self.since)}
        return out


class Supervisor:
    """Runs each loop in a task of its own and restarts it with backoff when it raises."""

    def __init__(self, *, metrics: Metrics | None = None, first_delay: float = 0.1,
                 max_delay: float = 5.0, settle: float = 30.0, repeat_log: float = 30.0) -> None:
        self.metrics = metrics
        self.first_delay, self.max_delay, self.settle = first_delay, max_delay, settle
        self.repeat_log = repeat_log
        self.loops: dict[str, LoopState] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._stop: dict[str, asyncio.Event] = {}

    def spawn(self, name: str, run: Run, *, recover: Run | None = None) -> None:
        """Run ``run()`` under supervision; ``recover()`` comes before each retry."""
        if name in self._tasks and not self._tasks[name].done():
            return
        self._stop[name] = asyncio.Event()
        self.loops[name] = LoopState()
        self._gauge(name, 1)
        self._tasks[name] = asyncio.create_task(self._supervise(name, run, recover),
                                                name=f"supervised-{name}")

    async def stop(self, name: str) -> None:
        """Stop retrying ``name`` and wait until its current run returns (the loop's own
        stop flag makes it return); cancelled by the caller's timeout, it cancels the loop."""
        task = self._tasks.get(name)
        if task is None:
            return
        self._stop[name].set()
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
            raise
        except Exception:  # logged by _supervise
            pass

    def failing(self, name: str, error: BaseException | str) -> None:
        """Record that ``name`` is failing (a loop that handles its own errors says so)."""
        st = self.loops.setdefault(name, LoopState())
        text = _describe(error)
        if st.state != "failing":
            st.state, st.since = "failing", datetime.now(UTC)
        st.error = text
        self._gauge(name, 0)

    def running(self, name: str) -> None:
        """Record that ``name`` works again."""
        st = self.loops.setdefault(name, LoopState())
        if st.state == "failing":
            log.info("loop recovered", loop=name, failing_since=iso(st.since))
        st.state, st.error, st.since = "running", None, datetime.now(UTC)
        self._gauge(name, 1)

    def healthy(self) -> bool:
        """Every loop is running (none failing, none ended)."""
        return all(st.state == "running" for st in self.loops.values())

    def status(self) -> dict[str, dict[str, Any]]:
        """Each loop's state, for the ``status`` query."""
        return {name: st.public() for name, st in sorted(self.loops.items())}

    async def _supervise(self, name: str, run: Run, recover: Run | None) -> None:
        stop, delay = self._stop[name], self.first_delay
        try:
            while not stop.is_set():
                started = time.monotonic()
                try:
                    await run()
                    if stop.is_set():
                        return
                    raise RuntimeError("the loop ended by itself")
                except Exception as exc:
                    if stop.is_set():
                        log.warning("loop failed while stopping", loop=name,
                                    error=_describe(exc))
                        return
                    if time.monotonic() - started > self.settle:
                        delay = self.first_delay  # it had worked for a while: a new episode
                    self._failed(name, exc, delay)
                delay = await self._recover(name, recover, delay, stop)
        finally:
            self.loops[name].state = "stopped" if stop.is_set() else self.loops[name].state

    async def _recover(self, name: str, recover: Run | None, delay: float,
                       stop: asyncio.Event) -> float:
        """Wait, then recover until it succeeds or the loop is stopped; the next delay."""
        while True:
            if await _wait(stop, delay):
                return delay
            delay = min(delay * 2, self.max_delay)
            try:
                if recover is not None:
                    await _until(stop, recover())
            except Exception as exc:
                if stop.is_set():
                    return delay
                self._failed(name, exc, delay, recovering=True)
                continue
            if not stop.is_set():
                self.running(name)
            return delay

    def _failed(self, name: str, exc: BaseException, delay: float, *,
                recovering: bool = False) -> None:
        st = self.loops[name]
        first = st.state != "failing"
        self.failing(name, exc)
        st.restarts += 0 if recovering else 1
        if self.metrics is not None and not recovering:
            self.metrics.loop_restarts.labels(name).inc()
        text, now = _describe(exc), time.monotonic()
        fields: dict[str, Any] = {"loop": name, "error": text, "retry_in": delay}
        if first and not isinstance(exc, EXPECTED):
            log.error("loop failed unexpectedly; retrying", exc_info=exc, **fields)
        elif first:
            log.warning("loop failed; retrying", **fields)
        elif text != st.logged[1] or now - st.logged[0] >= self.repeat_log:
            log.warning("loop still failing; retrying",
                        failing_for=round((datetime.now(UTC) - st.since).total_seconds(), 1),
                        **fields)
        else:
            return
        st.logged = (now, text)

    def _gauge(self, name: str, value: int) -> None:
        if self.metrics is not None:
            self.metrics.loop_up.labels(name).set(value)


class NatsWatch:
    """nats-py's connection callbacks: log the connection's ups and downs (each distinct error
    once per outage), and call ``fatal`` when it is lost for good while the daemon runs.

    Lost for good: nats-py closed it (the server sent ``-ERR``, e.g. a max-payload
    violation), or a reconnect attempt met an error after which FastStream's callback
    raises and so ends nats-py's reconnect task (e.g. ``Authorization Violation`` after the
    daemon's user was revoked). ``max_reconnect_attempts=-1`` handles every other loss."""

    def __init__(self, *, connection: Callable[[], Any], stopping: Callable[[], bool],
                 fatal: Callable[[str], None]) -> None:
        self.connection, self.stopping, self.fatal = connection, stopping, fatal
        self._seen: set[str] = set()
        self._released = asyncio.Event()

    def release(self) -> None:
        """The daemon has stopped: let a reconnect task held in :meth:`error` go."""
        self._released.set()

    async def closed(self) -> None:
        """nats-py's ``closed_cb``: closed while not stopping is fatal."""
        if self.stopping():
            return
        nc = self.connection()
        reason = _describe(nc.last_error) if nc is not None and nc.last_error else "closed"
        self.fatal(f"NATS connection closed for good ({reason})")

    async def disconnected(self) -> None:
        """nats-py's ``disconnected_cb``."""
        if not self.stopping():
            log.warning("NATS connection lost; reconnecting")

    async def reconnected(self) -> None:
        """nats-py's ``reconnected_cb``."""
        self._seen.clear()
        log.info("NATS connection re-established")

    async def error(self, exc: Exception) -> None:
        """nats-py's ``error_cb``: log; a reconnect that cannot succeed is fatal."""
        text = _describe(exc)
        reason = str(exc).removeprefix("nats: ").strip("'").lower()
        nc = self.connection()
        if reason in UNRECOVERABLE_CONNECT_ERRORS and nc is not None and not self.stopping():
            self.fatal(f"NATS connection lost for good ({text})")
            # FastStream raises this error from its callback as soon as this returns, which
            # would end nats-py's reconnect task with an exception nobody retrieves: hold the
            # task here instead until the daemon's shutdown closes the connection.
            await self._released.wait()
            return
        if text not in self._seen and not self.stopping():
            self._seen.add(text)
            log.warning("NATS connection error", error=text)


def _describe(error: BaseException | str) -> str:
    if isinstance(error, str):
        return error[:300]
    text = str(error)
    return (f"{type(error).__name__}: {text}" if text else type(error).__name__)[:300]


async def _wait(event: asyncio.Event, seconds: float) -> bool:
    """Sleep ``seconds`` unless ``event`` is set first; tell whether it was set."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), seconds)
    return event.is_set()


async def _until(stop: asyncio.Event, step: Awaitable[None]) -> None:
    """Run ``step``, abandoning it if ``stop`` is set first."""
    task = asyncio.ensure_future(step)
    waiter = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
    if task.done() and not task.cancelled():
        task.result()
