"""The relay's publishing in a process of its own: a second core for the NATS work.

Under load the daemon is bound by its one GIL, and a third of that is nats-py's per-message
work on the event loop. Publishing the outbox is the largest piece of it that needs nothing
of the daemon's state: every outbound event written, then its PubAck read and matched
(docs/benchmarks.md). :class:`ProcessPublisher` keeps :class:`BatchPublisher`'s contract —
``publish(messages, timeout)`` returns once JetStream acknowledged every message, or raises
nats-py's ``NoStreamResponseError``, its ``APIError`` or ``TimeoutError`` — and runs it in a
child (``python -m assetd.daemon.relay_process``) on a NATS connection of its own, with the
daemon's servers and credentials. What to publish, the published marks and the outbox stay
the relay's, in the daemon: the child only publishes what it is handed.

The two talk over the child's stdin and a pipe of its own (the child's stdout goes to
stderr, so that nothing it prints can break a frame): frames of a 4-byte length and
a pickle, a request ``(number, messages, timeout)`` and its reply ``(number, error)``, the
error ``None`` or ``(kind, code, description)``; the first request is the daemon's
settings, its reply says whether the child reached NATS. The child ends when its stdin
closes (the daemon stopped or died), not at SIGINT or SIGTERM. A child that dies or stops
answering fails the publish in hand (the relay retries it, as after any publish failure;
JetStream drops what was stored twice by its id) and the next publish starts a new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pickle
import signal
import struct
import sys
from collections.abc import Sequence
from typing import Any

import structlog
from nats.js.errors import APIError, NoStreamResponseError

from assetd.config import Settings
from assetd.daemon.publisher import BatchPublisher, Message
from assetd.schemas import wire

log = structlog.get_logger("assetd.relay")

_LENGTH = struct.Struct(">I")
_START_TIMEOUT = 30.0  # the child's imports (its first connection: startup_timeout more)
_KINDS: dict[str, type[Exception]] = {"timeout": TimeoutError,
                                      "no_stream": NoStreamResponseError}


class RelayProcessError(ConnectionError):
    """The relay's child process ended, could not start, or could not reach NATS."""


class ProcessPublisher:
    """``publish(messages, timeout)`` of :class:`BatchPublisher`, in a child process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.StreamReader | None = None
        self._numbers = 0
        self._lock = asyncio.Lock()

    @property
    def pid(self) -> int | None:
        """The child's pid while it runs."""
        return self._proc.pid if self._proc is not None else None

    async def start(self) -> None:
        """Start the child now (the daemon's start), not at the first publish."""
        async with self._lock:
            await self._child()

    async def publish(self, messages: Sequence[Message], timeout: float) -> None:
        """Publish ``messages`` in order; return once JetStream acknowledged each of them."""
        if not messages:
            return
        async with self._lock:  # one batch at a time, as the relay asks
            proc, reader = await self._child()
            self._numbers += 1
            number = self._numbers
            assert proc.stdin is not None
            body = pickle.dumps((number, list(messages), timeout), protocol=5)
            try:
                proc.stdin.write(_LENGTH.pack(len(body)) + body)
                await proc.stdin.drain()
                got, error = await asyncio.wait_for(_read(reader), timeout + 5.0)
            except (TimeoutError, OSError, asyncio.IncompleteReadError, EOFError,
                    pickle.UnpicklingError) as exc:
                code = await self._end()  # a child out of step is not trusted again
                if isinstance(exc, TimeoutError):
                    raise TimeoutError("the relay's process did not answer in time") from None
                raise RelayProcessError(f"the relay's process ended (exit code {code})") \
                    from None
            if got != number:
                await self._end()
                raise RelayProcessError("the relay's process answered out of turn")
        if error is not None:
            raise _error(*error)

    async def close(self) -> None:
        """End the child: its stdin closes, it exits; killed if it does not within 5 s."""
        async with self._lock:
            await self._end()

    async def _child(self) -> tuple[asyncio.subprocess.Process, asyncio.StreamReader]:
        if self._proc is not None and self._proc.returncode is None:
            assert self._reader is not None
            return self._proc, self._reader
        await self._end()
        read_fd, write_fd = os.pipe()  # the replies: not the child's stdout
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "assetd.daemon.relay_process", str(write_fd),
                stdin=asyncio.subprocess.PIPE, pass_fds=(write_fd,))
        finally:
            os.close(write_fd)
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=2**31 - 1)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader),
                                     os.fdopen(read_fd, "rb", buffering=0))
        assert proc.stdin is not None
        config = pickle.dumps(self.settings, protocol=5)  # (secrets too: it is our own child)
        proc.stdin.write(_LENGTH.pack(len(config)) + config)
        self._proc, self._reader = proc, reader
        try:
            await proc.stdin.drain()
            _, error = await asyncio.wait_for(
                _read(reader), _START_TIMEOUT + self.settings.startup_timeout)
        except (TimeoutError, OSError, asyncio.IncompleteReadError, EOFError,
                pickle.UnpicklingError):
            code = await self._end()
            raise RelayProcessError(f"the relay's process did not start (exit code {code})") \
                from None
        if error is not None:
            await self._end()
            raise _error(*error)
        log.info("relay process started", pid=proc.pid)
        return proc, reader

    async def _end(self) -> int | None:
        """Close the child's stdin and wait for it (killed after 5 s); its exit code."""
        proc, self._proc, self._reader = self._proc, None, None
        if proc is None:
            return None
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            return await asyncio.wait_for(proc.wait(), 5.0)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            return await proc.wait()


async def _read(reader: asyncio.StreamReader) -> Any:
    (size,) = _LENGTH.unpack(await reader.readexactly(_LENGTH.size))
    return pickle.loads(await reader.readexactly(size))


def _error(kind: str, code: int | None, description: str) -> Exception:
    """The exception a publish raised in the child, as nats-py raised it there."""
    if kind == "api":
        return APIError(code=code, description=description)
    if kind in _KINDS:
        return _KINDS[kind](description)
    return RelayProcessError(description)


def _reply_error(exc: BaseException) -> tuple[str, int | None, str]:
    if isinstance(exc, NoStreamResponseError):
        return "no_stream", None, str(exc)
    if isinstance(exc, APIError):
        return "api", exc.code, exc.description or str(exc)
    if isinstance(exc, TimeoutError):
        return "timeout", None, str(exc) or "acknowledgements missing"
    return "other", None, f"{type(exc).__name__}: {exc}"[:500]


# -- the child -----------------------------------------------------------------------------


async def _serve(reply_fd: int) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=2**31 - 1)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin.buffer)
    out = os.fdopen(reply_fd, "wb", buffering=0)

    def reply(number: int, error: tuple[str, int | None, str] | None) -> None:
        body = pickle.dumps((number, error), protocol=5)
        out.write(_LENGTH.pack(len(body)) + body)

    settings: Settings = await _read(reader)
    from assetd.logs import configure
    configure(settings.log_level)
    import nats

    async def nats_error(exc: Exception) -> None:  # one line; nats-py reconnects for ever
        log.warning("relay process: NATS error", error=str(exc)[:300] or type(exc).__name__)

    try:  # (the first connection is bounded as the daemon's own is; after it, no limit)
        nc = await asyncio.wait_for(nats.connect(
            servers=settings.nats_servers, max_reconnect_attempts=-1, reconnect_time_wait=1,
            inbox_prefix=wire.DAEMON_INBOX, name="assetd-relay", connect_timeout=5,
            error_cb=nats_error, **settings.nats_connect_options()), settings.startup_timeout)
    except Exception as exc:
        reason = f"none within {settings.startup_timeout:g} s" \
            if isinstance(exc, TimeoutError) else str(exc)[:300]
        reply(0, ("other", None, f"the relay's process could not connect to NATS: {reason}"))
        return
    reply(0, None)
    publisher = BatchPublisher(nc)
    try:
        while True:
            try:
                number, messages, timeout = await _read(reader)
            except asyncio.IncompleteReadError:
                return  # the daemon closed our stdin: stop
            try:
                await publisher.publish(messages, timeout)
            except Exception as exc:
                reply(number, _reply_error(exc))
            else:
                reply(number, None)
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(nc.close(), 5)


def main() -> None:
    """``python -m assetd.daemon.relay_process <reply fd>`` (started by the daemon)."""
    reply_fd = int(sys.argv[1])
    os.dup2(2, 1)  # anything printed goes to stderr, never into a frame
    # A terminal's Ctrl-C and a service manager's SIGTERM reach the whole process group:
    # the daemon stops gracefully and still publishes through this process, which ends
    # when the daemon closes its stdin (or dies)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    with contextlib.suppress(KeyboardInterrupt):
        try:
            import uvloop
            uvloop.run(_serve(reply_fd))
        except ImportError:
            asyncio.run(_serve(reply_fd))


if __name__ == "__main__":
    main()
