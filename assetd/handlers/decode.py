"""Turn one raw inbound message into a validated event, or say exactly why not. Pure."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError

from assetd.errors import RejectedError
from assetd.schemas import wire
from assetd.schemas.envelope import CloudEvent
from assetd.schemas.ids import EVENT_ID_RE
from assetd.schemas.inbound import INBOUND
from assetd.schemas.limits import Limits, unstorable

DEFAULT_LIMITS = Limits()

M = TypeVar("M", bound=BaseModel)

_EVENT_ID = re.compile(EVENT_ID_RE)
MAX_ERRORS = 20


@dataclass(slots=True)
class Inbound:
    """A valid inbound event: the envelope and its typed ``data``."""

    event: CloudEvent
    data: Any


def pydantic_errors(exc: ValidationError) -> list[dict[str, Any]]:
    """Compact, JSON-safe validation errors (no echo of the offending input)."""
    out: list[dict[str, Any]] = []
    for err in exc.errors(include_url=False, include_input=False, include_context=False):
        loc = ".".join(str(p) for p in err["loc"])
        out.append({"loc": loc[:200], "msg": err["msg"][:300], "type": err["type"]})
        if len(out) >= MAX_ERRORS:
            break
    return out


def decode(subject: str, payload: bytes, *, prefix: str, max_bytes: int,
           limits: Limits = DEFAULT_LIMITS, headers: Mapping[str, str] | None = None) -> Inbound:
    """Validate one message, in structured mode (the CloudEvent is the payload) or binary
    mode (``ce-*`` headers, ``data`` as the payload); raise RejectedError (with a one-line
    reason) for bad input."""
    parts = subject.split(".")
    if len(parts) != 6 or parts[0] != prefix or parts[1] != "in":
        v1 = len(parts) == 5 and parts[:2] == [prefix, "in"]
        raise RejectedError(f"subject must be {wire.IN_FORMAT.replace('<prefix>', prefix)}"
                            + (" (this is a version 1 subject: add the branch token, see "
                               "docs/events.md)" if v1 else ""))
    if len(payload) > max_bytes:
        raise RejectedError(f"message is {len(payload)} bytes; the limit is {max_bytes}")
    attributes = _binary_attributes(headers)
    try:
        obj = orjson.loads(payload) if payload.strip() or attributes is None else {}
    except orjson.JSONDecodeError as exc:
        raise RejectedError(f"payload is not JSON: {str(exc)[:200]}") from None
    if attributes is not None:
        obj = {**attributes, "data": obj}
    if not isinstance(obj, dict):
        raise RejectedError("payload must be a JSON object (a CloudEvent)")
    if bad := unstorable(payload, obj):
        raise RejectedError("; ".join(f"{loc}: {msg}" for loc, msg in bad),
                            [{"loc": loc[:200], "msg": msg, "type": "unstorable"}
                             for loc, msg in bad])
    event = _validate(CloudEvent, obj, "invalid CloudEvent envelope")
    if event.type not in INBOUND:
        raise RejectedError(f"unknown event type {event.type!r}; known: {', '.join(INBOUND)}")
    _check_tokens(event, parts)
    data = _validate(INBOUND[event.type], event.data, f"invalid data for {event.type}")
    if len(payload) > limits.safe_size and (over := limits.violations(data)):
        raise RejectedError(f"limit exceeded: {'; '.join(over)}",
                            [{"loc": "data", "msg": m, "type": "limit"} for m in over])
    return Inbound(event=event, data=data)


def _binary_attributes(headers: Mapping[str, str] | None) -> dict[str, Any] | None:
    """The attributes of a binary-mode CloudEvent (``ce-*`` headers, the payload's content
    type as ``datacontenttype``), or None for a structured-mode message."""
    if not headers or not any(k.lower() == "ce-specversion" for k in headers):
        return None
    attrs: dict[str, Any] = {k[3:].lower(): v for k, v in headers.items()
                             if k.lower().startswith("ce-")}
    for key, value in headers.items():
        if key.lower() == "content-type":
            attrs["datacontenttype"] = value
    return attrs


def _validate(model: type[M], obj: Any, what: str) -> M:
    try:
        return model.model_validate(obj)
    except ValidationError as exc:
        errors = pydantic_errors(exc)
        first = f"{errors[0]['loc'] or 'value'}: {errors[0]['msg']}" if errors else ""
        raise RejectedError(f"{what}: {first}", errors) from None
    except RecursionError:
        raise RejectedError(f"{what}: nested too deeply") from None


def _check_tokens(event: CloudEvent, parts: list[str]) -> None:
    mismatches = [
        f"{name} {value!r} != subject token {token!r}"
        for name, value, token in (
            ("project", event.project, parts[2]),
            ("branch", wire.branch_token(event.branch), parts[3]),
            ("subject", event.subject, parts[4]),
            ("type", event.type, parts[5]),
        )
        if value != token
    ]
    if mismatches:
        raise RejectedError("subject/payload mismatch: " + "; ".join(mismatches))


def read_ids(tok: wire.Tokens, payload: bytes) -> None:
    """Best-effort read of the ``id`` of a rejected payload, for ``event_rejected``."""
    try:
        obj = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return
    if not isinstance(obj, dict):
        return
    eid = obj.get("id")
    if isinstance(eid, str) and _EVENT_ID.match(eid):
        tok.event_id = eid
