"""Structured logging: one pipeline for structlog and stdlib ``logging``.

structlog's loggers hand their event dicts to stdlib ``logging``; a single handler on the
root logger formats every record (assetd's, and apscheduler's, nats-py's, aiohttp's,
alembic's, SQLAlchemy's, Python warnings, uncaught exceptions) with structlog's
``ProcessorFormatter``: one JSON object per line when stderr is not a terminal (``event``,
``level``, ``timestamp``, ``logger``; a traceback is the ``exception`` field of its line),
readable lines on one. Library loggers stay at WARNING unless the level asked is higher.
"""

from __future__ import annotations

import logging
import re
import sys
from types import TracebackType
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

LIBRARY_LEVEL = logging.WARNING
_AUTH_IN_URL = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<auth>[^\s/@]+)@")


def _stamps() -> list[Processor]:
    """What every line carries, whoever logged it."""
    return [structlog.stdlib.add_log_level, structlog.stdlib.add_logger_name,
            structlog.processors.TimeStamper(fmt="iso", utc=True)]


def _redact_auth(match: re.Match[str]) -> str:
    user, colon, _ = match["auth"].partition(":")
    return f"{match['scheme']}{user}:***@" if colon else f"{match['scheme']}***@"


def redact_credentials(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """Processor: a URL with credentials in any string field (a library's message, a
    traceback) keeps its user name only — the safety net behind :func:`redact_url`."""
    for key, value in event_dict.items():
        if isinstance(value, str) and "@" in value:
            event_dict[key] = _AUTH_IN_URL.sub(_redact_auth, value)
    return event_dict


def formatter(*, json: bool) -> structlog.stdlib.ProcessorFormatter:
    """The formatter of the root handler: JSON lines, or the console renderer."""
    render: list[Processor] = (
        [structlog.processors.format_exc_info, redact_credentials,
         structlog.processors.JSONRenderer()] if json
        else [redact_credentials, structlog.dev.ConsoleRenderer(  # locals could hold secrets
            exception_formatter=structlog.dev.RichTracebackFormatter(show_locals=False))])
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_stamps(),
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *render])


def configure(level: str = "INFO", *, json: bool | None = None,
              stream: TextIO | None = None) -> None:
    """Route structlog and stdlib logging to ``stream`` (stderr) through one handler."""
    out = sys.stderr if stream is None else stream
    use_json = (not out.isatty()) if json is None else json
    threshold = logging.getLevelName(level.upper())
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter(json=use_json))
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(max(threshold, LIBRARY_LEVEL))
    logging.getLogger("assetd").setLevel(threshold)
    logging.captureWarnings(True)
    structlog.configure(
        processors=[structlog.contextvars.merge_contextvars, *_stamps(),
                    structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        wrapper_class=structlog.make_filtering_bound_logger(threshold),
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=True,
    )
    sys.excepthook = _log_uncaught


def _log_uncaught(kind: type[BaseException], exc: BaseException,
                  tb: TracebackType | None) -> None:
    """An exception nothing caught is one log line too (Ctrl-C stays Python's)."""
    if issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, exc, tb)
        return
    info: Any = (kind, exc, tb)
    logging.getLogger("assetd").critical("uncaught exception", exc_info=info)


def redact_url(url: str) -> str:
    """``nats://user:secret@host`` → ``nats://user:***@host``, ``nats://token@host`` →
    ``nats://***@host``: never a credential in a log line."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is not None:
        auth = f"{parts.username}:***"
    elif parts.username:
        auth = "***"  # a token in the user position
    else:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{auth}@{host}"))
