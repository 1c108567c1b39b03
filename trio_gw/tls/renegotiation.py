"""Renegotiation policy: refused in both directions, always.

Theory of operation
-------------------
TLS 1.2 renegotiation lets either peer restart the handshake inside an open
connection.  It was the vector of the prefix-injection attack (CVE-2009-3555)
and of client-initiated CPU exhaustion, it can change the peer's identity
mid-connection (after the gateway has already authorised a request), and HTTP/1.1
gains nothing from it.  TLS 1.3 has no renegotiation at all.  trio-gw refuses it
everywhere, and there is no setting to turn it back on.

Facts measured on this stack (``docs/tls-stack.md`` §5):

* Gateway as server: OpenSSL 3.0 already refuses client-initiated
  renegotiation (``s_client`` ``R`` gets a ``no_renegotiation`` warning, then a
  fatal ``handshake_failure``); ``OP_NO_RENEGOTIATION`` gives the same result.
  ``SSL_OP_ALLOW_CLIENT_RENEGOTIATION`` (0x100, no Python constant) would
  re-enable it.  Python cannot initiate a renegotiation itself.  We still OR in
  ``OP_NO_RENEGOTIATION`` on every listener context so the refusal does not rest
  on a library default (or on an ``OPENSSL_CONF`` ``Options`` line).
* Gateway as client: an OpenSSL 3 client **accepts** a server's HelloRequest by
  default, and trio handles it transparently.  With ``OP_NO_RENEGOTIATION`` the
  client answers ``no_renegotiation`` and an OpenSSL server aborts with a fatal
  ``handshake_failure``, which surfaces as an upstream error.  So upstream
  contexts **must** set it (Tyk exposes this as ``proxy_ssl_disable_renegotiation``).
* Secure renegotiation (RFC 5746) is reported as supported for Python peers in
  both directions; the legacy, unsafe variants stay off: the flags in
  ``FORBIDDEN_OPTIONS`` must never be set on any context.

The IO layer ORs ``DOWNSTREAM_OPTIONS`` / ``UPSTREAM_OPTIONS`` into
``ctx.options`` (never assigns it) and may assert ``is_renegotiation_refused``.
``ssl`` is imported for its constants only.
"""

from __future__ import annotations

import ssl

__all__ = [
    "DOWNSTREAM_OPTIONS",
    "FORBIDDEN_OPTIONS",
    "OP_ALLOW_CLIENT_RENEGOTIATION",
    "OP_ALLOW_UNSAFE_LEGACY_RENEGOTIATION",
    "OP_LEGACY_SERVER_CONNECT",
    "UPSTREAM_OPTIONS",
    "is_renegotiation_refused",
]

#: ``SSL_OP_ALLOW_CLIENT_RENEGOTIATION`` (OpenSSL 3 ``SSL_OP_BIT(8)``); no Python constant.
OP_ALLOW_CLIENT_RENEGOTIATION = 1 << 8
#: ``SSL_OP_ALLOW_UNSAFE_LEGACY_RENEGOTIATION`` (``SSL_OP_BIT(18)``): renegotiate without RFC 5746.
OP_ALLOW_UNSAFE_LEGACY_RENEGOTIATION = 1 << 18
#: ``SSL_OP_LEGACY_SERVER_CONNECT`` (``SSL_OP_BIT(2)``): connect to servers without RFC 5746.
#: Python 3.11 has no constant; OpenSSL 3 no longer sets it in ``SSL_OP_ALL``.
OP_LEGACY_SERVER_CONNECT = 1 << 2

#: Flags no trio-gw context may carry.
FORBIDDEN_OPTIONS = (
    OP_ALLOW_CLIENT_RENEGOTIATION | OP_ALLOW_UNSAFE_LEGACY_RENEGOTIATION | OP_LEGACY_SERVER_CONNECT
)
#: OR into every listener (server-side) context: refuse client-initiated renegotiation.
DOWNSTREAM_OPTIONS = int(ssl.OP_NO_RENEGOTIATION)
#: OR into every upstream (client-side) context: refuse server-initiated renegotiation.
UPSTREAM_OPTIONS = int(ssl.OP_NO_RENEGOTIATION)


def is_renegotiation_refused(options: int) -> bool:
    """Return whether a context's ``options`` refuse renegotiation as this policy requires.

    Args:
        options: the value of ``SSLContext.options`` (an int or ``ssl.Options``).

    Returns:
        ``True`` when ``OP_NO_RENEGOTIATION`` is set and no ``FORBIDDEN_OPTIONS`` flag is.
    """
    value = int(options)
    return bool(value & ssl.OP_NO_RENEGOTIATION) and not value & FORBIDDEN_OPTIONS
