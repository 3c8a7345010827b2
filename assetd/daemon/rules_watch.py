"""The rules in force: loaded at start, reloaded on SIGHUP and when the file changes.

A file that fails validation, or is over a limit of :mod:`assetd.rules.loader` (size, YAML
nodes counting alias expansions, nesting, number of rules), is refused with its
``FILE:LINE`` errors logged once, and the previous rules stay in force; the file is not read
again until its modification time or size changes (or on SIGHUP). A file that loads with
warnings (a rule that can never match) is used, and its warnings are logged once.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

from assetd.config import Settings
from assetd.rules.loader import LoadedRules, RulesError, load_rules
from assetd.schemas.envelope import iso

log = structlog.get_logger("assetd.rules")


def rules_path(settings: Settings) -> Path | None:
    """``ASSETD_RULES``, else ``./rules.yaml`` if it exists, else None (no rules)."""
    if settings.rules is not None:
        return settings.rules
    default = Path("rules.yaml")
    return default if default.exists() else None


class RulesHolder:
    """Holds the current rules; ``reload`` swaps them only for a file that validates."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.current: LoadedRules | None = None
        self.loaded_at: datetime | None = None
        self.last_error: list[str] | None = None
        self._stamp: tuple[float, int] | None = None
        self._lock = threading.Lock()  # the poll job (a thread) and SIGHUP (the loop)

    def load_initial(self) -> None:
        """Load at start; an invalid file raises RulesError (the daemon refuses to start)."""
        if self.path is not None:
            self._swap(load_rules(self.path))

    def reload(self) -> bool:
        """Reload from disk; keep the old rules (and log why) if the file is refused."""
        if self.path is None:
            return False
        with self._lock:
            stamp = self._file_stamp()  # before reading: a change while reading is seen next
            try:
                new = load_rules(self.path)
            except Exception as exc:  # whatever the file does, the rules in force stay
                errors = (exc.errors if isinstance(exc, RulesError)
                          else [f"{self.path}:0: cannot load: {exc!r}"[:500]])
                self.last_error, self._stamp = errors, stamp  # not read again until it changes
                log.error("rules reload refused; previous rules stay in force",
                          path=str(self.path), errors=errors)
                return False
            if self.current is None or new.sha256 != self.current.sha256:
                self._swap(new, stamp)
                log.info("rules reloaded", path=str(self.path), sha256=new.sha256[:12],
                         count=len(new.rules.rules))
            else:
                self.last_error, self._stamp = None, stamp
            return True

    def _swap(self, new: LoadedRules, stamp: tuple[float, int] | None = None) -> None:
        self.current, self.last_error = new, None
        if new.warnings:  # once per file loaded: a swap happens only for new contents
            log.warning("rules file has rules that can never match", path=new.path,
                        warnings=list(new.warnings))
        self.loaded_at = datetime.now(UTC)
        self._stamp = stamp or self._file_stamp()

    def _file_stamp(self) -> tuple[float, int] | None:
        try:
            st = self.path.stat() if self.path else None
        except OSError:
            return None
        return (st.st_mtime, st.st_size) if st else None

    def check(self) -> None:
        """Reload if the file's modification time or size changed (a scheduled job)."""
        if self.path is not None and self._file_stamp() != self._stamp:
            self.reload()

    def status(self) -> dict[str, Any] | None:
        """The ``rules`` part of the status query."""
        if self.path is None:
            return None
        cur = self.current
        return {
            "path": str(self.path),
            "sha256": cur.sha256 if cur else None,
            "count": len(cur.rules.rules) if cur else 0,
            "loaded_at": iso(self.loaded_at) if self.loaded_at else None,
            "last_error": self.last_error,
        }
