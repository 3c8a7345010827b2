"""Read, replay and purge the dead-letter stream ``ASSETD_DLQ``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from nats.js.errors import NotFoundError

from assetd.errors import AssetdError
from assetd.schemas import wire
from assetd.schemas.wire import Header as H

STREAM = wire.DLQ_STREAM


@dataclass(frozen=True)
class DeadLetter:
    """One dead-lettered message: the original bytes and why they were refused."""

    seq: int
    time: datetime | None
    subject: str
    inbound_subject: str
    event_id: str | None
    reason: str
    errors: list[Any]
    payload: bytes
    headers: dict[str, str]

    def summary(self) -> dict[str, Any]:
        """JSON-ready, without the payload."""
        return {"seq": self.seq, "time": self.time.isoformat() if self.time else None,
                "inbound_subject": self.inbound_subject, "event_id": self.event_id,
                "reason": self.reason}

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, with the payload (parsed if it is JSON, else as text)."""
        try:
            payload: Any = orjson.loads(self.payload)
        except orjson.JSONDecodeError:
            payload = self.payload.decode("utf-8", errors="replace")
        return {**self.summary(), "subject": self.subject, "errors": self.errors,
                "headers": self.headers, "payload": payload}


def _letter(raw: Any) -> DeadLetter:
    h = dict(raw.headers or {})
    try:
        errors = orjson.loads(h.get(H.ERRORS, "[]"))
    except orjson.JSONDecodeError:
        errors = []
    return DeadLetter(seq=int(raw.seq), time=raw.time, subject=str(raw.subject),
                      inbound_subject=h.get(H.INBOUND_SUBJECT, ""),
                      event_id=h.get(H.EVENT_ID) or None,
                      reason=h.get(H.REASON, ""), errors=errors,
                      payload=raw.data or b"", headers=h)


class DeadLetters:
    """The DLQ seen through one NATS connection, optionally narrowed to a subject filter."""

    def __init__(self, nc: Any, *, prefix: str = "assetd", project: str | None = None,
                 subject: str | None = None) -> None:
        self.js = nc.jetstream()
        self.filter = subject or wire.project_filter(prefix, "dlq", project)

    async def list(self, *, limit: int = 1000) -> list[DeadLetter]:
        """Dead letters oldest first, at most ``limit``."""
        out: list[DeadLetter] = []
        seq = 1
        while len(out) < limit:
            try:
                raw = await self.js.get_msg(STREAM, seq=seq, subject=self.filter, next=True)
            except NotFoundError:
                break
            out.append(_letter(raw))
            seq = int(raw.seq) + 1
        return out

    async def get(self, seq: int) -> DeadLetter:
        """One dead letter by its DLQ sequence number (NotFoundError if gone)."""
        return _letter(await self.js.get_msg(STREAM, seq=seq))

    async def replay(self, letter: DeadLetter, *, keep: bool = False) -> str:
        """Publish the original bytes to the original subject; the daemon's inbox makes a
        second replay of the same event harmless. Removes the letter unless ``keep``.

        A letter whose payload was truncated to fit the DLQ cannot be replayed."""
        if letter.headers.get(H.TRUNCATED) == "true":
            raise AssetdError(f"dead letter {letter.seq} holds only the first "
                              f"{len(letter.payload)} of "
                              f"{letter.headers.get(H.ORIGINAL_SIZE)} bytes; "
                              "it cannot be replayed")
        headers = {k: v for k, v in letter.headers.items()
                   if not k.startswith(("Assetd-", "Nats-"))}
        headers[H.REPLAYED_FROM] = str(letter.seq)
        await self.js.publish(letter.inbound_subject, letter.payload, headers=headers or None)
        if not keep:
            await self.js.delete_msg(STREAM, letter.seq)
        return letter.inbound_subject

    async def purge(self, *, older_than: timedelta) -> int:
        """Delete dead letters older than ``older_than``; return how many."""
        cutoff = datetime.now(UTC) - older_than
        gone = 0
        for letter in await self.list(limit=1_000_000):
            if letter.time is None or letter.time > cutoff:
                break
            await self.js.delete_msg(STREAM, letter.seq)
            gone += 1
        return gone
