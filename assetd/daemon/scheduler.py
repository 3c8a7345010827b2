"""Periodic work on APScheduler: registry-wide jobs under a lease, per-replica jobs on all.

Only the lease holder runs freshness checks and pending timeouts. Every replica renews or
tries to take the lease every ``lease_ttl / 3``; the lease moves when its holder dies (it
expires) or stops (it is released). Every replica checks its rules file and sweeps its
outbox: those act on the replica's own state.

APScheduler runs under the daemon's supervisor: a job that raises is logged and marks the
``scheduler`` loop failing until that job runs cleanly again; a scheduler that stops by
itself is started again.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import structlog
from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED, JobExecutionEvent
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.schedulers.base import STATE_STOPPED
from sqlalchemy import Engine

from assetd.config import Settings
from assetd.daemon.supervisor import Supervisor
from assetd.handlers.scheduled import abandon_pending, check_freshness
from assetd.registry import lease
from assetd.rules.loader import LoadedRules
from assetd.schemas.envelope import iso

log = structlog.get_logger("assetd.scheduler")
LEASE = "scheduler"
LOOP = "scheduler"


class SchedulerStoppedError(Exception):
    """APScheduler stopped although nobody asked it to."""


class Scheduler:
    """Lease renewal plus the leader-only jobs, in the daemon's event loop."""

    def __init__(self, *, engine: Engine, settings: Settings,
                 rules: Callable[[], LoadedRules | None], wake_relay: Callable[[], None],
                 check_rules: Callable[[], None], supervisor: Supervisor,
                 watch_interval: float = 1.0) -> None:
        self.engine, self.settings, self.rules, self.wake_relay = engine, settings, rules, \
            wake_relay
        self.check_rules, self.supervisor = check_rules, supervisor
        self.watch_interval = watch_interval
        self.holder = f"{socket.gethostname()}/{os.getpid()}/{uuid.uuid4().hex[:8]}"
        self.is_leader = False
        self.runs = 0
        self._aps: AsyncIOScheduler | None = None
        self._failed_jobs: dict[str, str] = {}
        self._stopping = asyncio.Event()
        self._started = False

    def start(self) -> None:
        """Start renewing the lease and running the jobs (under the supervisor)."""
        if not self._started:
            self._started = True
            self.supervisor.spawn(LOOP, self._run)

    async def _run(self) -> None:
        """Run APScheduler until stopped; raise if it stops by itself."""
        self._failed_jobs.clear()
        aps = self._aps = self._build()
        aps.start()
        try:
            while not self._stopping.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), self.watch_interval)
                if aps.state == STATE_STOPPED and not self._stopping.is_set():
                    raise SchedulerStoppedError("APScheduler stopped by itself")
        finally:
            if aps.state != STATE_STOPPED:
                aps.shutdown(wait=False)

    def _build(self) -> AsyncIOScheduler:
        s = self.settings
        aps = AsyncIOScheduler(event_loop=asyncio.get_running_loop())
        aps.add_listener(self._on_job_event, EVENT_JOB_ERROR | EVENT_JOB_EXECUTED)
        now = datetime.now(UTC)
        aps.add_job(self._renew, "interval", seconds=s.lease_ttl / 3, next_run_time=now,
                    max_instances=1, coalesce=True, id="lease")
        aps.add_job(self._jobs, "interval", seconds=s.scheduler_interval,
                    next_run_time=now, max_instances=1, coalesce=True, id="jobs")
        # every replica, for its own state: its rules in memory, its relay's sweep
        aps.add_job(self.check_rules, "interval", seconds=s.rules_poll_interval,
                    max_instances=1, coalesce=True, id="rules-file")
        aps.add_job(self._sweep, "interval", seconds=s.outbox_sweep_interval,
                    max_instances=1, coalesce=True, id="outbox-sweep")
        return aps

    async def _sweep(self) -> None:
        self.wake_relay()  # in the event loop: a plain function job would run in a thread

    def _on_job_event(self, event: JobExecutionEvent) -> None:
        """A job that raised is logged and fails the loop until it runs cleanly again."""
        if isinstance(event.exception, asyncio.CancelledError):  # the scheduler shut down
            return
        if event.exception is not None:
            error = f"job {event.job_id}: {type(event.exception).__name__}: {event.exception}"
            if event.job_id not in self._failed_jobs:
                log.error("scheduled job raised", job=event.job_id,
                          error=str(event.exception)[:300], exc_info=event.exception)
            self._failed_jobs[event.job_id] = error[:300]
            self.supervisor.failing(LOOP, error)
        elif self._failed_jobs.pop(event.job_id, None) is not None and not self._failed_jobs:
            self.supervisor.running(LOOP)

    async def stop(self) -> None:
        """Stop; give the lease up so another replica takes over without waiting."""
        self._stopping.set()
        if self._started:
            await self.supervisor.stop(LOOP)
        if self.is_leader:
            await asyncio.to_thread(self._release)
            self.is_leader = False

    async def _renew(self) -> None:
        try:
            held = await asyncio.to_thread(self._acquire)
        except Exception as exc:  # database trouble: not the leader until it answers again
            log.warning("lease renewal failed", error=str(exc)[:300])
            held = False
        if held != self.is_leader:
            log.info("scheduler lease " + ("taken" if held else "lost"), holder=self.holder)
        self.is_leader = held

    async def _jobs(self) -> None:
        if not self.is_leader:
            return
        s = self.settings
        try:
            stale = await asyncio.to_thread(check_freshness, self.engine, rules=self.rules(),
                                            prefix=s.subject_prefix)
            gone = await asyncio.to_thread(abandon_pending, self.engine,
                                           timeout=s.pending_timeout, prefix=s.subject_prefix)
        except Exception as exc:
            log.warning("scheduled jobs failed; next run retries", error=str(exc)[:300])
            return
        self.runs += 1
        if stale or gone:
            log.info("scheduled jobs", stale=stale, abandoned=gone)
            self.wake_relay()

    def _acquire(self) -> bool:
        with self.engine.begin() as conn:
            return lease.acquire(conn, name=LEASE, holder=self.holder,
                                 ttl=self.settings.lease_ttl, now=datetime.now(UTC))

    def _release(self) -> None:
        with self.engine.begin() as conn:
            lease.release(conn, name=LEASE, holder=self.holder)

    def status(self, engine: Engine) -> dict[str, Any] | None:
        """The lease part of ``status``."""
        with engine.connect() as conn:
            found = lease.current(conn, name=LEASE)
        if found is None:
            return None
        return {"holder": found[0], "expires_at": iso(found[1]),
                "this_replica": found[0] == self.holder}
