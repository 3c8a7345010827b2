"""Turn one raw inbound message into a validated event, or say exactly why not. Pure."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError

from assetd.errors import RejectedError
from assetd.schemas.envelope import CloudEvent
from assetd.schemas.ids import BRANCH_RE, EVENT_ID_RE, is_asset, is_project
from assetd.schemas.inbound import INBOUND
from assetd.schemas.limits import Limits, unstorable

DEFAULT_LIMITS = Limits()

M = TypeVar("M", bound=BaseModel)

_EVENT_ID = re.compile(EVENT_ID_RE)
_BRANCH = re.compile(BRANCH_RE)
_TYPE = re.compile(r"^[a-z_]{1,64}$")
MAX_ERRORS = 20


@dataclass(slots=True)
class Inbound:
    """A valid inbound event: the envelope and its typed ``data``."""

    event: CloudEvent
    data: Any


@dataclass(slots=True)
class Tokens:
    """What the subject (and, when readable, the payload) say about a message."""

    subject: str
    project: str = "_"
    asset: str = "_"
    type: str = "_"
    event_id: str | None = None
    branch: str = "main"


def pydantic_errors(exc: ValidationError) -> list[dict[str, Any]]:
    """Compact, JSON-safe validation errors (no echo of the offending input)."""
    out: list[dict[str, Any]] = []
    for err in exc.errors(include_url=False, include_input=False, include_context=False):
        loc = ".".join(str(p) for p in err["loc"])
        out.append({"loc": loc[:200], "msg": err["msg"][:300], "type": err["type"]})
        if len(out) >= MAX_ERRORS:
            break
    return out


def subject_tokens(subject: str, prefix: str) -> Tokens:
    """Read project, asset and type from ``<prefix>.in.<project>.<asset>.<type>``; ``_`` if bad."""
    tok = Tokens(subject=subject)
    parts = subject.split(".")
    if len(parts) == 5 and parts[0] == prefix and parts[1] == "in":
        tok.project = parts[2] if is_project(parts[2]) else "_"
        tok.asset = parts[3] if is_asset(parts[3]) else "_"
        tok.type = parts[4] if _TYPE.match(parts[4]) else "_"
    return tok


def decode(subject: str, payload: bytes, *, prefix: str, max_bytes: int,
           limits: Limits = DEFAULT_LIMITS) -> Inbound:
    """Validate one message; raise RejectedError (with a one-line reason) for bad input."""
    parts = subject.split(".")
    if len(parts) != 5 or parts[0] != prefix or parts[1] != "in":
        raise RejectedError(f"subject must be {prefix}.in.<project>.<asset>.<type>")
    if len(payload) > max_bytes:
        raise RejectedError(f"message is {len(payload)} bytes; the limit is {max_bytes}")
    try:
        obj = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise RejectedError(f"payload is not JSON: {str(exc)[:200]}") from None
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
    if over := limits.violations(data):
        raise RejectedError(f"limit exceeded: {'; '.join(over)}",
                            [{"loc": "data", "msg": m, "type": "limit"} for m in over])
    return Inbound(event=event, data=data)


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
            ("subject", event.subject, parts[3]),
            ("type", event.type, parts[4]),
        )
        if value != token
    ]
    if mismatches:
        raise RejectedError("subject/payload mismatch: " + "; ".join(mismatches))


def read_ids(tok: Tokens, payload: bytes) -> None:
    """Best-effort read of ``id`` and ``branch`` of a rejected payload, for ``event_rejected``."""
    try:
        obj = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return
    if not isinstance(obj, dict):
        return
    eid, branch = obj.get("id"), obj.get("branch")
    if isinstance(eid, str) and _EVENT_ID.match(eid):
        tok.event_id = eid
    if isinstance(branch, str) and _BRANCH.match(branch):
        tok.branch = branch
