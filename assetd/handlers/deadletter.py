"""The dead-letter copy of a refused message, built to fit what NATS accepts. Pure.

NATS counts headers against ``max_payload``; nats-py checks only the payload, and a
publish the server refuses closes the connection for good. So the copy is sized here,
headers included: original headers NATS cannot carry are dropped (and named), long
header values are cut, and a payload that no longer fits is truncated — the copy then
keeps the original's size and SHA-256 and says it was truncated.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from assetd.schemas.wire import Header as H

# What nats-py accepts as a header key (an RFC 7230 token); anything else raises.
HEADER_KEY = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,256}")
HEADER_VALUE_MAX = 4096
USER_HEADERS_MAX = 16 * 1024
# Room for the PUB/HPUB protocol line and anything a library adds on the way.
PROTOCOL_SLACK = 1024


@dataclass(frozen=True, slots=True)
class DeadLetterCopy:
    """What to publish to ``ASSETD_DLQ``."""

    subject: str
    payload: bytes
    headers: dict[str, str]
    truncated: bool


def one_line(value: str, limit: int = HEADER_VALUE_MAX) -> str:
    """A header value: one line, trimmed, at most ``limit`` characters."""
    return value.replace("\r", " ").replace("\n", " ").strip()[:limit]


def headers_size(headers: Mapping[str, str]) -> int:
    """Bytes these headers take on the wire (``NATS/1.0`` block, as nats-py writes it)."""
    return 12 + sum(len(k.encode()) + len(v.encode()) + 4 for k, v in headers.items())


def carry_headers(raw: Mapping[str, str] | None) -> tuple[dict[str, str], list[str]]:
    """The original headers a copy can carry, and the keys it cannot (dropped).

    ``Nats-*`` headers are the server's business and never copied."""
    kept: dict[str, str] = {}
    dropped: list[str] = []
    size = 0
    for key, value in (raw or {}).items():
        if key.startswith("Nats-"):
            continue
        line = one_line(str(value))
        size += len(key) + len(line.encode()) + 4
        if HEADER_KEY.fullmatch(key) and size <= USER_HEADERS_MAX:
            kept[key] = line
        else:
            dropped.append(key)
    return kept, dropped


def dead_letter_copy(*, subject: str, data: bytes, headers: Mapping[str, str] | None,
                     reason: str, errors: list[dict[str, Any]], inbound_subject: str,
                     seq: int, event_id: str | None, max_payload: int) -> DeadLetterCopy:
    """The copy of one refused message that fits in ``max_payload`` with its headers."""
    out, dropped = carry_headers(headers)
    out.update({
        H.MSG_ID: f"dlq:{seq}",
        H.REASON: one_line(reason or "rejected"),
        H.ERRORS: one_line(orjson.dumps(errors).decode()),
        H.INBOUND_SUBJECT: one_line(inbound_subject, 1024),
        H.INBOUND_SEQ: str(seq),
        H.EVENT_ID: event_id or "",
    })
    if dropped:
        names = [one_line(k, 64).encode("ascii", "backslashreplace").decode() for k in dropped]
        out[H.DROPPED] = one_line(orjson.dumps(names).decode(), 1024)
    budget = max_payload - PROTOCOL_SLACK - len(subject)
    if headers_size(out) + len(data) <= budget:
        return DeadLetterCopy(subject, data, out, truncated=False)
    out[H.ORIGINAL_SIZE] = str(len(data))
    out[H.ORIGINAL_SHA256] = hashlib.sha256(data).hexdigest()
    out[H.TRUNCATED] = "true"
    room = max(0, budget - headers_size(out))
    return DeadLetterCopy(subject, data[:room], out, truncated=True)
