"""Map the NATS credential settings (CONTRACT §8) onto FastStream's security objects."""

from __future__ import annotations

import ssl

from faststream.nats import (
    NatsCredentials,
    NatsNKey,
    NatsSecurity,
    NatsToken,
    NatsUserPassword,
)

from assetd.config import Settings


def nats_security(settings: Settings) -> NatsSecurity | None:
    """The security object for the broker, or None for an open server: the same credential
    :meth:`Settings.nats_connect_options` gives the client (creds file, nkey seed file,
    token or user/password, with TLS), so the daemon and the client never differ."""
    opts = settings.nats_connect_options()
    ctx: ssl.SSLContext | None = opts.get("tls")
    if "user_credentials" in opts:
        return NatsCredentials.from_file(opts["user_credentials"], ssl_context=ctx)
    if "nkeys_seed" in opts:
        return NatsNKey.from_file(opts["nkeys_seed"], ssl_context=ctx)
    if "token" in opts:
        return NatsToken(opts["token"], ssl_context=ctx)
    if "user" in opts:
        return NatsUserPassword(username=opts["user"], password=opts.get("password", ""),
                                ssl_context=ctx)
    if ctx is not None:
        return NatsSecurity(ssl_context=ctx)
    return None
