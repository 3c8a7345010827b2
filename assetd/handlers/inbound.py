"""The inbound batch: decode, apply in one transaction, dead-letter bad input, then ack."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from typing import Any

import orjson
import structlog
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from assetd.config import Settings
from assetd.errors import RejectedError
from assetd.handlers.batch import Received, apply_batch
from assetd.handlers.decode import decode, read_ids, subject_tokens
from assetd.rules.loader import LoadedRules

log = structlog.get_logger("assetd.inbound")
HEADER_MAX = 4096


class Ingest:
    """Handles each pulled batch; commit first, then dead-letter, then ack."""

    def __init__(self, *, engine: Engine, settings: Settings, js: Callable[[], Any],
                 on_committed: Callable[[], None],
                 rules: Callable[[], LoadedRules | None] = lambda: None) -> None:
        self.engine, self.settings, self.js, self.rules = engine, settings, js, rules
        self.on_committed = on_committed
        self.counters: Counter[str] = Counter()

    async def handle(self, msgs: list[Any]) -> None:
        """Process one batch of JetStream messages; every message ends acked or nak'd."""
        if not msgs:
            return
        try:
            batch = await asyncio.to_thread(self._decode_and_apply, msgs)
        except SQLAlchemyError as exc:
            log.warning("batch failed; will retry", error=str(exc)[:300], size=len(msgs))
            await self._retry_all(msgs)
            return
        except Exception:  # a bug: never let FastStream swallow it, never lose the batch
            log.exception("batch failed unexpectedly; will retry", size=len(msgs))
            await self._retry_all(msgs)
            return
        await self._dead_letter(msgs, batch)
        for msg, rec in zip(msgs, batch, strict=True):
            self.counters[rec.outcome] += 1
            if rec.outcome == "retry":
                log.warning("event failed; will retry", error=rec.error, **_fields(rec))
                await msg.nak(delay=self._delay(msg))
            else:
                await msg.ack()
        self.on_committed()

    async def _retry_all(self, msgs: list[Any]) -> None:
        self.counters["retry"] += len(msgs)
        await asyncio.gather(*(m.nak(delay=self._delay(m)) for m in msgs))

    def _decode_and_apply(self, msgs: list[Any]) -> list[Received]:
        s = self.settings
        batch = []
        for m in msgs:
            tok = subject_tokens(m.subject, s.subject_prefix)
            rec = Received(tokens=tok, seq=m.metadata.sequence.stream,
                           delivered=m.metadata.num_delivered)
            try:
                rec.item = decode(m.subject, m.data, prefix=s.subject_prefix,
                                  max_bytes=s.max_message_bytes)
                tok.event_id, tok.branch = rec.item.event.id, rec.item.event.branch
            except RejectedError as exc:
                rec.rejection = exc
                if len(m.data) <= s.max_message_bytes:
                    read_ids(tok, m.data)
            batch.append(rec)
        apply_batch(self.engine, batch, prefix=s.subject_prefix, max_deliver=s.max_deliver,
                    rules=self.rules())
        return batch

    async def _dead_letter(self, msgs: list[Any], batch: list[Received]) -> None:
        """Copy each rejected message, bytes and headers, to ``ASSETD_DLQ`` with its reason."""
        js = self.js()
        for msg, rec in zip(msgs, batch, strict=True):
            if rec.outcome != "rejected":
                continue
            log.info("event rejected", reason=rec.error, **_fields(rec))
            tok = rec.tokens
            headers = {k: v for k, v in (msg.headers or {}).items() if not k.startswith("Nats-")}
            headers.update({
                "Nats-Msg-Id": f"dlq:{rec.seq}",
                "Assetd-Reason": _header(rec.error or "rejected"),
                "Assetd-Errors": _header(orjson.dumps(rec.errors).decode()),
                "Assetd-Inbound-Subject": _header(msg.subject),
                "Assetd-Inbound-Seq": str(rec.seq),
                "Assetd-Event-Id": tok.event_id or "",
            })
            subject = f"{self.settings.subject_prefix}.dlq.{tok.project}.{tok.asset}.{tok.type}"
            try:
                await js.publish(subject, msg.data, headers=headers, timeout=5)
            except Exception as exc:  # NATS trouble: leave the message for redelivery
                log.warning("dead-letter publish failed; will retry", error=str(exc))
                rec.outcome = "retry"

    def _delay(self, msg: Any) -> float:
        return float(self.settings.nak_delay * min(msg.metadata.num_delivered, 30))


def _header(value: str) -> str:
    return value.replace("\r", " ").replace("\n", " ")[:HEADER_MAX]


def _fields(rec: Received) -> dict[str, Any]:
    tok = rec.tokens
    return {"event_id": tok.event_id, "type": tok.type, "project": tok.project,
            "branch": tok.branch, "asset": tok.asset, "subject": tok.subject}
