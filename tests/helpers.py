"""Helpers shared by tests: raw publishing, bounded waiting, reading streams."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from assetd.schemas import wire


def envelope(type_: str, asset: str, data: dict[str, Any], *, project: str = "fraud",
             branch: str = "main", event_id: str | None = None, **extra: Any) -> dict[str, Any]:
    """A valid CloudEvent for an inbound type."""
    return {"specversion": "1.0", "id": event_id or str(uuid.uuid4()), "source": "tests",
            "type": type_, "subject": asset, "project": project, "branch": branch,
            "data": data, **extra}


async def publish(js: Any, ev: dict[str, Any], *, header: bool = True,
                  subject: str | None = None) -> None:
    """Publish an event to its inbound subject (with ``Nats-Msg-Id`` unless told not to)."""
    subj = subject or wire.in_subject("assetd", ev["project"], ev.get("branch", "main"),
                                      ev["subject"], ev["type"])
    headers = {"Nats-Msg-Id": ev["id"]} if header else None
    await js.publish(subj, orjson.dumps(ev), headers=headers)


async def wait_for(cond: Callable[[], Awaitable[Any]], *, timeout: float = 15.0,
                   what: str = "condition") -> Any:
    """Poll ``cond`` until it returns a truthy value; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = await cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.05)


async def stream_messages(js: Any, stream: str, subject: str = ">") -> list[Any]:
    """Every message currently in ``stream`` (matching ``subject``), oldest first."""
    info = await js.stream_info(stream)
    total = info.state.messages
    if total == 0:
        return []
    last = info.state.last_seq
    sub = await js.subscribe(subject, stream=stream, ordered_consumer=True)
    out = []
    try:
        while True:
            try:
                msg = await sub.next_msg(timeout=0.5 if subject != ">" else 5.0)
            except TimeoutError:
                break
            out.append(msg)
            if msg.metadata.sequence.stream >= last:
                break
    finally:
        await sub.unsubscribe()
    return out


async def out_events(js: Any, type_: str | None = None) -> list[dict[str, Any]]:
    """Decoded outbound events, optionally of one type."""
    msgs = await stream_messages(js, "ASSETD_OUT")
    events = [orjson.loads(m.data) | {"_subject": m.subject, "_headers": m.headers}
              for m in msgs]
    return [e for e in events if type_ is None or e["type"] == type_]


async def relayed(client: Any) -> None:
    """Wait until the daemon has published every committed outbound event (an outcome is
    visible at commit; its events follow through the outbox relay)."""

    async def drained() -> bool:
        return bool((await client.status())["outbox_pending"] == 0)

    await wait_for(drained, what="outbox relayed")
