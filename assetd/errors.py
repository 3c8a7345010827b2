"""One hierarchy of errors for assetd; every name ends in ``Error``."""

from __future__ import annotations


class AssetdError(Exception):
    """Base of every error assetd raises on purpose."""


class RejectedError(AssetdError):
    """An inbound event is bad input: dead-letter it with this reason, never retry it."""

    def __init__(self, reason: str, errors: list[dict[str, object]] | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.errors = errors or []


class QueryError(AssetdError):
    """A query cannot be answered; ``code`` is one of CONTRACT §7's error codes."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class NoAnswerError(QueryError):
    """No daemon answered the query (none running, or none within the timeout)."""

    def __init__(self, message: str) -> None:
        super().__init__("internal", message)


class NotFoundError(QueryError):
    """The asset, instance or alias named does not exist."""

    def __init__(self, message: str) -> None:
        super().__init__("not_found", message)


class InvalidError(QueryError):
    """The request is malformed or names an invalidated instance."""

    def __init__(self, message: str) -> None:
        super().__init__("invalid", message)


class ConfigError(AssetdError):
    """The configuration cannot work (port taken, binary missing, bad URL)."""


class ConnectError(AssetdError):
    """NATS cannot be reached, or refused this client's credentials."""
