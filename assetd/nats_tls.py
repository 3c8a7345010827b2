"""The client TLS context for NATS, from file names: light to import (the relay's child
process builds it without the settings' pydantic models)."""

from __future__ import annotations

import ssl


def tls_context(ca: str | None, cert: str | None, key: str | None) -> ssl.SSLContext:
    """Trust ``ca`` (else the system's CAs); present ``cert`` (with ``key``) if given."""
    ctx = ssl.create_default_context(cafile=ca)
    if cert:
        ctx.load_cert_chain(cert, key)
    return ctx
