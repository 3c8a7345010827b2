"""What became of a published event (CONTRACT §7 ``event``), as the client reports it.

A publishing call with ``wait`` asks the ``event`` query until the daemon has recorded the
event's outcome, then returns it or raises the error that says what happened: rejected input
(:class:`EventRejectedError`), a request that policy refused (:class:`RefusedError`), a
promotion the rules turned down (:class:`PromotionRejectedError`), or no outcome in time
(:class:`NoOutcomeError`: the event may still apply; publishing the same id again is safe).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from assetd.errors import AssetdError, NoAnswerError

Ask = Callable[[str], Awaitable[dict[str, Any]]]


class EventRejectedError(AssetdError):
    """The daemon dead-lettered an event this client published; ``reason`` says why."""

    def __init__(self, event_id: str, reason: str, errors: list[Any]) -> None:
        super().__init__(f"event {event_id} rejected: {reason}")
        self.event_id, self.reason, self.errors = event_id, reason, errors


class RefusedError(AssetdError):
    """The daemon understood the request and policy refused it (recorded in the decision
    log as ``refused``; nothing changed, nothing was dead-lettered)."""

    def __init__(self, event_id: str, reason: str, outcome: dict[str, Any]) -> None:
        super().__init__(f"refused: {reason}")
        self.event_id, self.reason, self.outcome = event_id, reason, outcome


class PromotionRejectedError(AssetdError):
    """The rules refused a requested promotion; ``details`` is the promotion_rejected data."""

    def __init__(self, event_id: str, reason: str, details: dict[str, Any]) -> None:
        super().__init__(f"promotion {event_id} rejected: {reason}")
        self.event_id, self.reason, self.details = event_id, reason, details


class NoOutcomeError(AssetdError):
    """No outcome was recorded within the timeout; the event may still apply later."""

    def __init__(self, event_id: str, timeout: float) -> None:
        super().__init__(f"no outcome for event {event_id} within {timeout:g}s; it may still "
                         f"apply: re-run with --event-id {event_id} (applied at most once) or "
                         "check that assetd is running (assetctl status)")
        self.event_id, self.timeout = event_id, timeout


async def wait_for_outcome(ask: Ask, event_id: str, *, timeout: float,
                           previous: dict[str, Any] | None = None) -> dict[str, Any]:
    """Ask ``event`` until it answers something other than ``previous`` (the answer seen
    before publishing: ``unknown``, or an earlier rejection of the same id)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    pause = 0.005
    while True:
        left = deadline - loop.time()
        try:  # a daemon that does not answer (yet) is no outcome yet
            got = await asyncio.wait_for(ask(event_id), max(left, 0.05))
        except (NoAnswerError, TimeoutError):
            got = {"status": "unknown"}
        if got["status"] != "unknown" and (previous is None or got != previous):
            return got
        left = deadline - loop.time()
        if left <= 0:
            raise NoOutcomeError(event_id, timeout)
        await asyncio.sleep(min(pause, left))
        pause = min(pause * 2, 0.2)


def settle(event_id: str, got: dict[str, Any]) -> dict[str, Any]:
    """The outcome of an applied event (with ``event_id``), or the error that says what
    became of it instead."""
    outcome: dict[str, Any] = dict(got.get("outcome") or {})
    if got["status"] == "rejected":
        raise EventRejectedError(event_id, outcome.get("reason", "rejected"),
                                 outcome.get("errors", []))
    outcome["event_id"] = event_id
    if outcome.get("decision") == "refused":
        raise RefusedError(event_id, outcome.get("reason", "refused"), outcome)
    if got.get("type") == "promotion_requested" and outcome.get("decision") == "rejected":
        details: dict[str, Any] = next((e for e in outcome.get("events", [])
                        if e["type"] == "promotion_rejected"), {})
        raise PromotionRejectedError(event_id, details.get("reason", "rejected"), details)
    return outcome


def emitted(outcome: dict[str, Any], type_: str) -> list[dict[str, Any]]:
    """The summaries of the outbound events of one type that an outcome lists."""
    return [e for e in outcome.get("events", []) if e["type"] == type_]
