"""Building ``ssl.SSLContext`` objects: the only place contexts are made.

Theory of operation
-------------------
Policy is decided by the pure ``trio_gw.tls`` modules; this module only carries
it out on OpenSSL objects.  Contexts are expensive (0.2–20 ms, 13–840 KiB, see
``docs/tls-stack.md`` §1), so callers build them off the event loop
(``trio.to_thread.run_sync``) and cache them; nothing here runs per request.

Certificates and keys never touch the filesystem: ``load_cert_chain`` only
accepts paths, so the PEM goes through anonymous ``memfd`` files
(``/proc/self/fd/N``) that vanish when closed.
"""

from __future__ import annotations

import os
import ssl
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from trio_gw.errors import CertificateError
from trio_gw.net.openssl_shim import (
    set_groups_list,
    set_no_auto_chain,
    set_read_ahead,
    set_session_cache_size,
    set_session_timeout,
    set_tls13_ciphersuites,
)
from trio_gw.tls.downstream import DownstreamTlsPolicy

#: Read TLS streams in records of this size (docs/tls-stack.md §9: fastest on this stack).
TLS_RECEIVE_SIZE = 16384
#: ALPN offered by an ssl listener without the ``http2`` flag.
ALPN_HTTP11: tuple[str, ...] = ("http/1.1",)
#: ALPN offered by an ssl listener with the ``http2`` flag (Kong's ``http2``, Tyk's
#: ``enable_http2``): h2 preferred, HTTP/1.1 for clients that do not speak it.
ALPN_H2: tuple[str, ...] = ("h2", "http/1.1")


@contextmanager
def _memfd(data: bytes, name: str) -> Iterator[str]:
    fd = os.memfd_create(name, os.MFD_CLOEXEC)
    try:
        os.write(fd, data)
        yield f"/proc/self/fd/{fd}"
    finally:
        os.close(fd)


def load_pem_pair(ctx: ssl.SSLContext, chain_pem: str | bytes, key_pem: str | bytes) -> None:
    """Load a PEM chain and its private key into ``ctx`` without writing files.

    Raises:
        CertificateError: the key does not match or either part is unusable
            (the message never contains key material).
    """
    chain = chain_pem.encode() if isinstance(chain_pem, str) else chain_pem
    key = key_pem.encode() if isinstance(key_pem, str) else key_pem
    try:
        with _memfd(chain, "tls-chain") as chain_path, _memfd(key, "tls-key") as key_path:
            ctx.load_cert_chain(chain_path, key_path)
    except ssl.SSLError as exc:
        if "KEY_VALUES_MISMATCH" in str(exc):
            raise CertificateError("private key does not match the certificate") from exc
        raise CertificateError(f"certificate or key not usable by OpenSSL ({exc.reason})") from exc


def load_dh_params(ctx: ssl.SSLContext, policy: DownstreamTlsPolicy) -> None:
    """Load the policy's DH parameters, if any (the DHE suites are skipped without them: ``tls.dhparams``)."""
    if policy.dh_params is not None:
        with _memfd(policy.dh_params.pem, "dh-params") as dh_path:
            ctx.load_dh_params(dh_path)


def new_server_context(
    policy: DownstreamTlsPolicy, *, alpn: Sequence[str] = ALPN_HTTP11, dh_params: bool = True
) -> ssl.SSLContext:
    """A server context carrying ``policy`` (versions, ciphers, options, tickets).

    Per-SNI contexts (certificate, ALPN, TLS 1.2 ciphers) are made with the same
    function; OpenSSL takes versions, options and ticket keys from the listener's
    context only (docs/tls-stack.md §1), so both must agree.  The ALPN list, on the
    contrary, comes from the context the SNI callback swapped in: a listener
    offering ``h2`` needs certificate contexts built with the same ``alpn``; so do
    the DH parameters.  ``dh_params=False`` leaves them to the caller
    (:func:`load_dh_params`), which knows whether the context will hold an RSA key.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ciphers = policy.ciphers.openssl_ciphers
    if ciphers is not None:
        ctx.set_ciphers(ciphers)
    with warnings.catch_warnings():
        # TLS 1.0/1.1 only when explicitly configured; the policy already warned.
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = policy.versions.minimum
        ctx.maximum_version = policy.versions.maximum
    ctx.options |= policy.options_to_set
    ctx.options &= ~policy.options_to_clear
    ctx.num_tickets = policy.session.num_tickets
    set_session_timeout(ctx, policy.session.timeout_seconds)
    set_session_cache_size(ctx, policy.session.cache_sessions)  # used in the listener context (OpenSSL's session_ctx)
    set_read_ahead(ctx)  # one read per request instead of a header read and a body read
    set_no_auto_chain(ctx)  # the configured chain, not one rebuilt from the client CAs at every handshake
    suites = policy.ciphers.tls13_ciphersuites
    if suites is not None:
        set_tls13_ciphersuites(ctx, suites)
    groups = policy.groups.openssl_list
    if groups is not None:
        set_groups_list(ctx, groups)
    if dh_params:
        load_dh_params(ctx, policy)
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    return ctx
