"""One log pipeline: structlog and stdlib records alike are JSON lines when not on a TTY."""

from __future__ import annotations

import asyncio
import io
import logging
import os
import signal
import socket
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import structlog

from assetd.daemon.embedded import free_port
from assetd.logs import configure
from tests.faults import readyz, until

KEYS = {"event", "level", "timestamp", "logger"}


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    """A non-TTY stream that :func:`configure` logs to; logging is put back afterwards."""
    root = logging.getLogger()
    level, hook = root.level, sys.excepthook
    out = io.StringIO()
    try:
        yield out
    finally:
        for handler in root.handlers[:]:
            if isinstance(handler.formatter, structlog.stdlib.ProcessorFormatter):
                root.removeHandler(handler)
        root.setLevel(level)
        logging.getLogger("assetd").setLevel(logging.NOTSET)
        logging.captureWarnings(False)
        sys.excepthook = hook
        structlog.reset_defaults()


def _lines(text: str) -> list[dict[str, Any]]:
    """Every line parsed as one JSON object carrying the four keys (fails otherwise)."""
    lines = [orjson.loads(line) for line in text.splitlines()]
    for line in lines:
        assert line.keys() >= KEYS, line
    return lines


def test_library_and_assetd_records_share_the_json_pipeline(stream: io.StringIO) -> None:
    """Library records (apscheduler, aiohttp, Python warnings) and structlog events are one
    JSON object per line; library INFO is filtered, assetd INFO is not."""
    configure("INFO", stream=stream)
    logging.getLogger("apscheduler.scheduler").info("Added job %s", "lease")
    logging.getLogger("apscheduler.scheduler").warning("Run time of job %s was missed", "x")
    structlog.get_logger("assetd.test").debug("not at INFO")
    structlog.get_logger("assetd.test").info("assetd started", version="0")
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("a library warning", UserWarning, stacklevel=1)
    lines = _lines(stream.getvalue())
    assert [(x["logger"], x["level"]) for x in lines] == [
        ("apscheduler.scheduler", "warning"), ("assetd.test", "info"),
        ("py.warnings", "warning")]
    assert lines[0]["event"] == "Run time of job x was missed"
    assert lines[1]["event"] == "assetd started" and "a library warning" in lines[2]["event"]
    assert lines[1]["version"] == "0" and lines[0]["timestamp"].endswith("Z")


def test_tracebacks_stay_inside_their_json_line(stream: io.StringIO) -> None:
    """An exception logged by a library, by assetd or left uncaught is the ``exception``
    field of its one JSON line."""
    configure("INFO", stream=stream)
    try:
        raise ValueError("bad header")
    except ValueError as exc:
        logging.getLogger("aiohttp.server").exception("Error handling request")
        structlog.get_logger("assetd.test").error("job raised", exc_info=exc)
        sys.excepthook(type(exc), exc, exc.__traceback__)
    lines = _lines(stream.getvalue())
    assert [x["logger"] for x in lines] == ["aiohttp.server", "assetd.test", "assetd"]
    for line in lines:
        assert line["exception"].startswith("Traceback (most recent call last)")
        assert "ValueError: bad header" in line["exception"]


def test_no_credential_in_any_line(stream: io.StringIO) -> None:
    """A URL with a password or token is redacted whoever logs it, tracebacks included."""
    configure("INFO", stream=stream)
    logging.getLogger("nats").warning("cannot reach nats://daemon:s3cret@h:4222")
    structlog.get_logger("assetd.test").warning("db", url="postgresql://u:pw1@db/x")
    try:
        raise ConnectionError("nats://tok3n@h:4222 refused")
    except ConnectionError:
        logging.getLogger("nats").exception("connect failed")
    text = stream.getvalue()
    assert "s3cret" not in text and "pw1" not in text and "tok3n" not in text
    assert "nats://daemon:***@h:4222" in text and "postgresql://u:***@db/x" in text
    assert len(_lines(text)) == 3


def test_level_applies_to_libraries_too(stream: io.StringIO) -> None:
    """ASSETD_LOG_LEVEL=ERROR silences library warnings as well as assetd's."""
    configure("ERROR", stream=stream)
    logging.getLogger("apscheduler").warning("hidden")
    structlog.get_logger("assetd.test").warning("hidden")
    logging.getLogger("sqlalchemy").error("shown")
    assert [x["event"] for x in _lines(stream.getvalue())] == ["shown"]


def test_console_renderer_on_a_terminal(stream: io.StringIO) -> None:
    """On a terminal (json=False) lines are the console renderer's, not JSON."""
    configure("INFO", json=False, stream=stream)
    logging.getLogger("apscheduler").warning("lib line")
    text = stream.getvalue()
    assert "lib line" in text and "apscheduler" in text and not text.startswith("{")


def _bad_request(port: int) -> None:
    """A request aiohttp refuses (an invalid header): aiohttp.server logs it with a traceback."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n")
        s.recv(4096)


async def test_daemon_stderr_is_only_json_lines(venv_bin: Path, tmp_path: Path) -> None:
    """``assetd run`` with embedded NATS and stderr piped prints only JSON lines, from
    assetd's loggers and from a library's (aiohttp refusing a bad request, traceback
    inside the line)."""
    port = free_port()
    env = {**os.environ, "ASSETD_DATA_DIR": str(tmp_path / "state"),
           "ASSETD_EMBEDDED_NATS_PORT": str(free_port()), "ASSETD_HTTP_PORT": str(port),
           "ASSETD_LOG_LEVEL": "INFO", "ASSETD_FETCH_TIMEOUT": "0.5"}
    for key in ("ASSETD_NATS_URL", "ASSETD_DB_URL"):
        env.pop(key, None)
    proc = await asyncio.create_subprocess_exec(
        str(venv_bin / "assetd"), "run", env=env, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE)
    try:
        await until(lambda: _ready(port), 60, "daemon ready")
        await asyncio.to_thread(_bad_request, port)
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode(errors="replace")
    lines = _lines(err.decode())
    events = {(x["logger"], x["event"]) for x in lines}
    assert {("assetd.daemon", "assetd started"), ("assetd.daemon", "assetd stopped")} <= events
    library = [x for x in lines if x["logger"].startswith("aiohttp")]
    assert library and "Traceback" in library[0]["exception"], lines


async def _ready(port: int) -> bool:
    return (await readyz(port))[0] == 200
