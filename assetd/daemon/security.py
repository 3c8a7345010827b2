"""Map the NATS credential settings (CONTRACT §8) onto FastStream's security objects."""

from __future__ import annotations

import ssl

from faststream.nats import NatsCredentials, NatsSecurity, NatsToken, NatsUserPassword

from assetd.config import Settings


def nats_security(settings: Settings) -> NatsSecurity | None:
    """The security object for the broker, or None for an open server."""
    ctx: ssl.SSLContext | None = settings.nats_connect_options().get("tls")
    if settings.nats_creds:
        return NatsCredentials.from_file(settings.nats_creds, ssl_context=ctx)
    if settings.nats_token:
        return NatsToken(settings.nats_token.get_secret_value(), ssl_context=ctx)
    if settings.nats_user:
        password = settings.nats_password.get_secret_value() if settings.nats_password else ""
        return NatsUserPassword(username=settings.nats_user, password=password, ssl_context=ctx)
    if ctx is not None:
        return NatsSecurity(ssl_context=ctx)
    return None
