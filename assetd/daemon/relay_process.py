"""The relay's publishing in a process of its own: a second core for the NATS work.

Under load the daemon is bound by its one GIL, and a third of that is nats-py's per-message
work on the event loop. Publishing the outbox is the largest piece of it that needs nothing
of the daemon's state: every outbound event written, then its PubAck read and matched
(docs/benchmarks.md). :class:`ProcessPublisher` keeps :class:`BatchPublisher`'s contract —
``publish(messages, timeout)`` returns once JetStream acknowledged every message, or raises
nats-py's ``NoStreamResponseError``, its ``APIError`` or ``TimeoutError`` — and runs it in a
child (``python -m assetd.daemon.relay_child``) on a NATS connection of its own, with the
daemon's servers and credentials. What to publish, the published marks and the outbox stay
the relay's, in the daemon: the child only publishes what it is handed.

The two talk over the child's stdin and a pipe of its own (the child's stdout goes to
stderr, so that nothing it prints can break a frame): frames of a 4-byte length and
a pickle, a request ``(number, messages, timeout)`` and its reply ``(number, error)``, the
error ``None`` or ``(kind, code, description)``; the first frame is what the child needs of
the daemon's settings, and its reply says whether the child reached NATS. The child ends
when its stdin closes (the daemon stopped or died), not at SIGINT or SIGTERM. A child that
dies or stops answering fails the publish in hand (the relay retries it, as after any
publish failure; JetStream drops what was stored twice by its id) and the next publish
starts a new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pickle
import signal
import struct
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from nats.js.errors import APIError, NoStreamResponseError

from assetd.daemon.publisher import BatchPublisher, Message

if TYPE_CHECKING:  # (the child imports no more than it needs: it starts with the daemon)
    from assetd.config import Settings

log = logging.getLogger("assetd.relay")  # the child's (rendered by assetd.logs' formatter)

_LENGTH = struct.Struct(">I")
_START_TIMEOUT = 30.0  # the child's imports (its first connection: startup_timeout more)
_KINDS: dict[str, type[Exception]] = {"timeout": TimeoutError,
                                      "no_stream": NoStreamResponseError}
# what a child that died or fell out of step looks like on the daemon's side of the pipes
_BROKEN = (TimeoutError, OSError, asyncio.IncompleteReadError, EOFError,
           pickle.UnpicklingError)


class RelayProcessError(ConnectionError):
    """The relay's child process ended, could not start, or could not reach NATS."""


class RelayProcessSpawnError(RelayProcessError):
    """The operating system refused to start the child (its interpreter not executable by
    this user, no processes or file descriptors left)."""


class ProcessPublisher:
    """``publish(messages, timeout)`` of :class:`BatchPublisher`, in a child process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.StreamReader | None = None
        self._transport: asyncio.BaseTransport | None = None  # the replies' pipe
        self._ready = False  # the child has its settings and reached NATS
        self._numbers = 0
        self._lock = asyncio.Lock()

    @property
    def pid(self) -> int | None:
        """The child's pid while it runs."""
        return self._proc.pid if self._proc is not None else None

    @property
    def _running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    async def spawn(self) -> None:
        """Start the child's interpreter (its imports take ~0.5 s) without connecting yet:
        the daemon does this first and :meth:`start` once NATS is up."""
        async with self._lock:
            if not self._running:
                await self._spawn()

    async def start(self) -> None:
        """Have the child connect now (the daemon's start), not at the first publish."""
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
            try:
                proc.stdin.write(_frame((number, list(messages), timeout)))
                await proc.stdin.drain()
                got, error = await asyncio.wait_for(_read(reader), timeout + 5.0)
            except _BROKEN as exc:
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
        """The running, connected child: spawned and handed its settings if need be."""
        if not self._running:
            await self._spawn()
        assert self._proc is not None and self._reader is not None
        proc, reader = self._proc, self._reader
        if self._ready:
            return proc, reader
        assert proc.stdin is not None
        try:  # (its secrets too: it is our own child)
            proc.stdin.write(_frame(_child_config(self.settings)))
            await proc.stdin.drain()
            _, error = await asyncio.wait_for(
                _read(reader), _START_TIMEOUT + self.settings.startup_timeout)
        except _BROKEN:
            code = await self._end()
            raise RelayProcessError(f"the relay's process did not start (exit code {code})") \
                from None
        if error is not None:
            await self._end()
            raise _error(*error)
        self._ready = True
        import structlog  # (the daemon's: loaded already; the child does without)
        structlog.get_logger("assetd.relay").info("relay process started", pid=proc.pid)
        return proc, reader

    async def _spawn(self) -> None:
        await self._end()
        read_fd, write_fd = os.pipe()  # the replies: not the child's stdout
        replies = os.fdopen(read_fd, "rb", buffering=0)
        try:
            websocket = any(u.startswith("ws") for u in self.settings.nats_servers)
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "assetd.daemon.relay_child", str(write_fd),
                *(["--websocket"] if websocket else []),
                stdin=asyncio.subprocess.PIPE, pass_fds=(write_fd,))
        except OSError as exc:
            replies.close()
            raise RelayProcessSpawnError(f"cannot start {sys.executable}: {exc}") from None
        except BaseException:
            replies.close()
            raise
        finally:
            os.close(write_fd)
        self._proc = proc  # (ended by _end() whatever happens next)
        reader = asyncio.StreamReader(limit=2**31 - 1)
        self._transport, _ = await asyncio.get_running_loop().connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), replies)
        self._reader = reader

    async def _end(self) -> int | None:
        """Close the child's stdin and wait for it (killed after 5 s); its exit code."""
        proc, self._proc, self._reader, self._ready = self._proc, None, None, False
        transport, self._transport = self._transport, None
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
        finally:
            if transport is not None:
                transport.close()


def _child_config(settings: Settings) -> dict[str, Any]:
    """What the child needs of the settings, as plain values (no pydantic to import)."""
    from assetd.schemas import wire

    options = settings.nats_connect_options()
    options.pop("tls", None)  # an SSLContext does not pickle: the child builds its own
    return {"servers": settings.nats_servers, "options": options,
            "tls": settings.nats_tls_files(), "startup_timeout": settings.startup_timeout,
            "log_level": settings.log_level, "inbox_prefix": wire.DAEMON_INBOX}


def _frame(obj: Any) -> bytes:
    body = pickle.dumps(obj, protocol=5)
    return _LENGTH.pack(len(body)) + body


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
        with contextlib.suppress(BrokenPipeError):  # the daemon is gone: stdin ends next
            out.write(_frame((number, error)))

    try:
        config: dict[str, Any] = await _read(reader)
    except asyncio.IncompleteReadError:
        return  # the daemon ended before it got this far (a failed start): nothing to say
    from assetd.logs import configure
    configure(config["log_level"])
    import nats

    from assetd.nats_tls import tls_context

    async def nats_error(exc: Exception) -> None:  # one line; nats-py reconnects for ever
        log.warning("relay process: NATS error: %s", str(exc)[:300] or type(exc).__name__)

    options = dict(config["options"])
    if config["tls"]:
        options["tls"] = tls_context(*config["tls"])
    wait = config["startup_timeout"]
    try:  # (the first connection is bounded as the daemon's own is; after it, no limit)
        nc = await asyncio.wait_for(nats.connect(
            servers=config["servers"], max_reconnect_attempts=-1, reconnect_time_wait=1,
            inbox_prefix=config["inbox_prefix"], name="assetd-relay", connect_timeout=5,
            error_cb=nats_error, **options), wait)
    except Exception as exc:
        reason = f"none within {wait:g} s" if isinstance(exc, TimeoutError) \
            else str(exc)[:300]
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
    """``python -m assetd.daemon.relay_child <reply fd>`` (started by the daemon); its
    daemon gone (a closed pipe) ends it without a word."""
    reply_fd = int(sys.argv[1])
    os.dup2(2, 1)  # anything printed goes to stderr, never into a frame
    # A terminal's Ctrl-C and a service manager's SIGTERM reach the whole process group:
    # the daemon stops gracefully and still publishes through this process, which ends
    # when the daemon closes its stdin (or dies)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    with contextlib.suppress(KeyboardInterrupt, BrokenPipeError):
        try:
            import uvloop
        except ImportError:
            asyncio.run(_serve(reply_fd))
        else:
            uvloop.run(_serve(reply_fd))


if __name__ == "__main__":
    main()
