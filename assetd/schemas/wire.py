"""The one module that owns the wire (CONTRACT §1, §2): subjects with the branch token, stream,
consumer and header names. Everything else builds and reads subjects through it. Pure.

Subjects (``<p>`` = the prefix, ``assetd`` by default)::

    <p>.in.<project>.<branch token>.<asset>.<type>    pipelines → daemon   (ASSETD_IN)
    <p>.out.<project>.<branch token>.<asset>.<type>   daemon → subscribers (ASSETD_OUT)
    <p>.dlq.<project>.<branch token>.<asset>.<type>   dead letters         (ASSETD_DLQ)
    <p>.api.<project>.<method>, <p>.api.status         queries (request-reply)

The branch token is the branch with every ``.`` written as ``~`` (``user.alice`` →
``user~alice``); ``~`` never occurs in a branch, so the mapping is exact both ways.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

from assetd.schemas.envelope import iso
from assetd.schemas.ids import BRANCH_RE, is_asset, is_project

IN_STREAM, OUT_STREAM, DLQ_STREAM = "ASSETD_IN", "ASSETD_OUT", "ASSETD_DLQ"
STREAMS = (IN_STREAM, OUT_STREAM, DLQ_STREAM)
DURABLE = "assetd"  # the daemon's durable pull consumer on ASSETD_IN, shared by replicas
API_QUEUE = "assetd-api"  # the queue group replicas answer queries in
DAEMON_INBOX = "_INBOX_assetd"  # the daemon's own replies and deliveries
UNKNOWN = "_"  # a token that could not be read, in dead-letter and event_rejected subjects
ANY = "*"

_BRANCH = re.compile(BRANCH_RE)
_TYPE = re.compile(r"^[a-z_]{1,64}$")


class Header:
    """Header names assetd writes or reads."""

    MSG_ID = "Nats-Msg-Id"
    CONTENT_TYPE = "Content-Type"
    REASON = "Assetd-Reason"
    ERRORS = "Assetd-Errors"
    INBOUND_SUBJECT = "Assetd-Inbound-Subject"
    INBOUND_SEQ = "Assetd-Inbound-Seq"
    EVENT_ID = "Assetd-Event-Id"
    DROPPED = "Assetd-Dropped-Headers"
    ORIGINAL_SIZE = "Assetd-Original-Size"
    ORIGINAL_SHA256 = "Assetd-Original-Sha256"
    TRUNCATED = "Assetd-Truncated"
    REPLAYED_FROM = "Assetd-Replayed-From"


CLOUDEVENTS_JSON = "application/cloudevents+json"


def outbound_headers(event_id: str) -> dict[str, str]:
    """Headers of an outbound event: its id for JetStream's dedup, and the CloudEvents
    structured-mode content type (the NATS protocol binding)."""
    return {Header.MSG_ID: event_id, Header.CONTENT_TYPE: CLOUDEVENTS_JSON}


def envelope(*, event_id: str, source: str, type_: str, time: datetime, project: str,
             branch: str, asset: str, data: Any, **extensions: Any) -> dict[str, Any]:
    """A CloudEvent in structured JSON mode (CONTRACT §3), as assetd and its clients send it."""
    return {"specversion": "1.0", "id": event_id, "source": source, "type": type_,
            "time": iso(time), "subject": asset, "project": project, "branch": branch,
            "datacontenttype": "application/json", **extensions, "data": data}


def branch_token(branch: str) -> str:
    """``user.alice`` → ``user~alice`` (``*`` stays a wildcard)."""
    return branch.replace(".", "~")


def branch_of(token: str) -> str | None:
    """``user~alice`` → ``user.alice``; None if the token names no valid branch."""
    branch = token.replace("~", ".")
    return branch if "." not in token and _BRANCH.match(branch) else None


def _event_subject(prefix: str, kind: str, project: str, branch: str, asset: str,
                   type_: str) -> str:
    return f"{prefix}.{kind}.{project}.{branch_token(branch)}.{asset}.{type_}"


def in_subject(prefix: str, project: str, branch: str, asset: str, type_: str) -> str:
    """Where a pipeline publishes one inbound event."""
    return _event_subject(prefix, "in", project, branch, asset, type_)


def out_subject(prefix: str, project: str, branch: str = ANY, asset: str = ANY,
                type_: str = ANY) -> str:
    """An outbound subject, or a filter with ``*`` where a token is left open."""
    return _event_subject(prefix, "out", project, branch, asset, type_)


def dlq_subject(prefix: str, project: str, branch: str = ANY, asset: str = ANY,
                type_: str = ANY) -> str:
    """A dead-letter subject, or a filter with ``*`` (or ``>`` last) where a token is open."""
    return _event_subject(prefix, "dlq", project, branch, asset, type_)


def project_filter(prefix: str, kind: str, project: str | None = None) -> str:
    """``<p>.<kind>.<project>.>`` (every event of a project), or ``<p>.<kind>.>``."""
    return f"{prefix}.{kind}.{project}.>" if project else f"{prefix}.{kind}.>"


def api_subject(prefix: str, project: str | None, method: str) -> str:
    """Where a query goes; ``status`` is not per project."""
    return f"{prefix}.api.status" if method == "status" else f"{prefix}.api.{project}.{method}"


def api_pattern(prefix: str) -> str:
    """Every query subject (what the daemon subscribes to)."""
    return f"{prefix}.api.>"


def changed_subject(prefix: str) -> str:
    """Where each replica says "my registry writes committed" (core NATS, the replica's id
    as the payload), so that the others' answer caches let go (assetd/registry/answers.py).
    Under the daemon's own inbox prefix: nobody else needs it."""
    return f"{DAEMON_INBOX}.{prefix}.changed"


def project_stream(project: str) -> str:
    """The stream a project's services consume: its own outbound events, nothing else."""
    return f"{OUT_STREAM}_{project}"


@dataclass(slots=True)
class Tokens:
    """What an inbound subject says: each token, ``_`` (or None) where it is unreadable."""

    subject: str
    project: str = UNKNOWN
    branch: str | None = None  # the real branch
    asset: str = UNKNOWN
    type: str = UNKNOWN
    event_id: str | None = None

    @property
    def branch_token(self) -> str:
        """The branch token for a dead-letter or event_rejected subject."""
        return branch_token(self.branch) if self.branch else UNKNOWN

    def dlq_subject(self, prefix: str) -> str:
        """Where this message's dead-letter copy goes (the inbound tokens)."""
        return _event_subject(prefix, "dlq", self.project, self.branch or UNKNOWN, self.asset,
                              self.type)


def parse_in(subject: str, prefix: str) -> Tokens:
    """Read ``<p>.in.<project>.<branch token>.<asset>.<type>``, each bad token as ``_``."""
    project, branch, asset, type_ = _in_tokens(subject, prefix)
    return Tokens(subject, project, branch, asset, type_)


@lru_cache(maxsize=4096)  # a pipeline sends many events on few subjects: read each once
def _in_tokens(subject: str, prefix: str) -> tuple[str, str | None, str, str]:
    parts = subject.split(".")
    if len(parts) == 5 and parts[:2] == [prefix, "in"]:
        parts.insert(3, UNKNOWN)  # version 1 (no branch token): refused, but said where
    elif len(parts) != 6 or parts[:2] != [prefix, "in"]:
        return UNKNOWN, None, UNKNOWN, UNKNOWN
    return (parts[2] if is_project(parts[2]) else UNKNOWN, branch_of(parts[3]),
            parts[4] if is_asset(parts[4]) else UNKNOWN,
            parts[5] if _TYPE.match(parts[5]) else UNKNOWN)


def parse_api(subject: str, prefix: str) -> tuple[str | None, str] | None:
    """``(project, method)`` of a query subject (``(None, "status")`` for status), or None."""
    parts = subject.split(".")
    if parts == [prefix, "api", "status"]:
        return None, "status"
    if len(parts) == 4 and parts[:2] == [prefix, "api"] and is_project(parts[2]):
        return parts[2], parts[3]
    return None


IN_FORMAT = "<prefix>.in.<project>.<branch token>.<asset>.<type>"
API_FORMAT = "<prefix>.api.<project>.<method>"
