"""Identity headers sent to upstreams, and the headers clients must never set.

On an authenticated request the auth plugins add Kong's consumer headers
(``X-Consumer-ID``, ``X-Consumer-Username``, ``X-Consumer-Custom-ID``,
``X-Credential-Identifier``, ``X-Anonymous-Consumer``), ``X-Authenticated-Groups``
and, when configured, the client certificate (RFC 9440 ``Client-Cert`` /
``Client-Cert-Chain``, or Envoy's ``X-Forwarded-Client-Cert``).

An upstream trusts these headers, so a client must never be able to send them:
every name in :data:`IDENTITY_HEADERS` is stripped from the client's request
before the plugins' headers are added.  The auth plugins strip them on their
routes (``Allow.strip_headers``); the proxy should strip them on every route.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from trio_gw.model.entities import Consumer
from trio_gw.tls.forwarded_cert import (
    format_client_cert_chain_rfc9440,
    format_client_cert_rfc9440,
    format_xfcc,
)

__all__ = [
    "FORWARD_FORMATS",
    "IDENTITY_HEADERS",
    "certificate_headers",
    "consumer_headers",
]

Header = tuple[bytes, bytes]

#: Headers only the gateway may set toward upstreams (lowercase).
IDENTITY_HEADERS: Final = frozenset({
    b"x-consumer-id", b"x-consumer-username", b"x-consumer-custom-id", b"x-credential-identifier",
    b"x-anonymous-consumer", b"x-authenticated-groups", b"client-cert", b"client-cert-chain",
    b"x-forwarded-client-cert",
})  # fmt: skip
#: Values of ``forward_client_cert``: how the client certificate is passed upstream.
FORWARD_FORMATS: Final = ("none", "rfc9440", "xfcc")


def consumer_headers(
    consumer: Consumer | None,
    *,
    credential: str | None = None,
    anonymous: bool = False,
    groups: str | None = None,
) -> tuple[Header, ...]:
    """Kong's upstream headers for an authenticated (or anonymous) request.

    Args:
        consumer: the consumer, if one was identified.
        credential: the id of the credential that matched.
        anonymous: the consumer is the plugin's ``anonymous`` fallback.
        groups: the ``X-Authenticated-Groups`` value (a CN or a DN).

    Returns:
        The headers, lowercase names, values safe for HTTP/1.1.
    """
    out: list[Header] = []
    if consumer is not None:
        out.append((b"x-consumer-id", _value(consumer.id)))
        if consumer.username is not None:
            out.append((b"x-consumer-username", _value(consumer.username)))
        if consumer.custom_id is not None:
            out.append((b"x-consumer-custom-id", _value(consumer.custom_id)))
    if credential is not None:
        out.append((b"x-credential-identifier", _value(credential)))
    if anonymous:
        out.append((b"x-anonymous-consumer", b"true"))
    if groups:
        out.append((b"x-authenticated-groups", _value(groups)))
    return tuple(out)


def certificate_headers(fmt: str, leaf_der: bytes, chain_der: Sequence[bytes] = ()) -> tuple[Header, ...]:
    """The client certificate as upstream headers.

    Args:
        fmt: one of :data:`FORWARD_FORMATS`.
        leaf_der: the client certificate (DER).
        chain_der: the certificates after it (DER).

    Returns:
        ``()`` for ``none``; ``Client-Cert`` (+ ``Client-Cert-Chain``) for
        ``rfc9440``; ``X-Forwarded-Client-Cert`` for ``xfcc``.
    """
    if fmt == "rfc9440":
        out = [(b"client-cert", format_client_cert_rfc9440(leaf_der).encode("ascii"))]
        if chain_der:
            out.append((b"client-cert-chain", format_client_cert_chain_rfc9440(chain_der).encode("ascii")))
        return tuple(out)
    if fmt == "xfcc":
        return ((b"x-forwarded-client-cert", _value(format_xfcc(leaf_der, chain_der))),)
    return ()


def _value(text: str) -> bytes:
    """A header value: UTF-8, with control characters (CR, LF, NUL ...) replaced by spaces."""
    return "".join(c if c.isprintable() else " " for c in text).encode("utf-8")
