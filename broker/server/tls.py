"""TLS for the listener, optionally requiring client certificates (mutual TLS)."""

from __future__ import annotations

import ssl

from linemq.broker.config import Config


class TLSConfigError(ValueError):
    pass


def tls_context(config: Config) -> ssl.SSLContext | None:
    """None when TLS is off; a server context when --tls-cert/--tls-key are given."""
    if config.tls_cert is None and config.tls_key is None:
        if config.tls_client_ca is not None:
            raise TLSConfigError("--tls-client-ca needs --tls-cert and --tls-key")
        return None
    if config.tls_cert is None or config.tls_key is None:
        raise TLSConfigError("--tls-cert and --tls-key go together")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(config.tls_cert, config.tls_key)
    if config.tls_client_ca is not None:
        context.load_verify_locations(config.tls_client_ca)
        context.verify_mode = ssl.CERT_REQUIRED
    return context
