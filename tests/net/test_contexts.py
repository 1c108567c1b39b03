"""What server contexts get beyond Python's ``ssl`` defaults (through the guarded shim), and what they rely on."""

from __future__ import annotations

import ssl

import trustme

from trio_gw.net.contexts import new_server_context
import pytest

from trio_gw.net.openssl_shim import SSL_MODE_NO_AUTO_CHAIN, modes, read_ahead, session_cache_size, set_session_cache_size
from trio_gw.testing.memory_tls import memory_handshake
from trio_gw.tls.downstream import parse_downstream_policy

_SSL_MODE_RELEASE_BUFFERS = 0x10


def test_server_contexts_size_their_session_cache_from_ssl_session_cache_size() -> None:
    assert session_cache_size(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)) == 20_480  # OpenSSL's own
    assert session_cache_size(new_server_context(parse_downstream_policy({}))) == 40_000  # Kong's 10m
    small = parse_downstream_policy({"ssl_session_cache_size": "32k"})
    assert session_cache_size(new_server_context(small)) == 125


def test_a_session_cache_is_never_made_unbounded() -> None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with pytest.raises(ValueError):
        set_session_cache_size(ctx, 0)  # OpenSSL reads 0 as "no limit"
    assert session_cache_size(ctx) == 20_480


def test_server_contexts_read_ahead() -> None:
    assert read_ahead(new_server_context(parse_downstream_policy({})))


def test_python_contexts_do_not_read_ahead_by_themselves() -> None:
    """Why the shim sets it: CPython leaves it off."""
    assert not read_ahead(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER))


def test_idle_connections_release_their_buffers() -> None:
    """CPython sets SSL_MODE_RELEASE_BUFFERS itself (as nginx does): an idle connection holds no
    16 KiB record buffers.  The idle-memory figures in docs/performance.md rely on it."""
    assert modes(new_server_context(parse_downstream_policy({}))) & _SSL_MODE_RELEASE_BUFFERS
    assert modes(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)) & _SSL_MODE_RELEASE_BUFFERS


# --- what a listener sends: its configured chain, nothing rebuilt from the client CAs -------------------


def _chain_the_client_receives(server_ctx: ssl.SSLContext, ca: trustme.CA, client_cert: trustme.LeafCert) -> int:
    """Certificates in the server's Certificate message, after a TLS 1.3 mTLS handshake over memory BIOs."""
    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ca.configure_trust(client_ctx)
    client_cert.configure_cert(client_ctx)
    client, server = memory_handshake(client_ctx, server_ctx, server_hostname="gw.example")
    assert server.getpeercert(binary_form=True) is not None  # the client certificate was verified
    return len(client._sslobj.get_unverified_chain())  # type: ignore[attr-defined]  # public in 3.13


def _mtls_listener(ctx: ssl.SSLContext, ca: trustme.CA, leaf: trustme.LeafCert) -> ssl.SSLContext:
    leaf.configure_cert(ctx)  # the leaf alone: no intermediates configured
    ca.configure_trust(ctx)  # ssl_client_certificate: the CA that also issued the listener's certificate
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def test_server_contexts_do_not_build_chains() -> None:
    assert modes(new_server_context(parse_downstream_policy({}))) & SSL_MODE_NO_AUTO_CHAIN
    assert not modes(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)) & SSL_MODE_NO_AUTO_CHAIN  # CPython leaves it off


def test_mtls_listener_sends_its_certificate_not_the_client_ca() -> None:
    """A leaf configured alone is sent alone, though the client-CA store holds its issuer (as nginx)."""
    ca = trustme.CA()
    leaf, client = ca.issue_cert("gw.example"), ca.issue_cert("client@example.com")
    listener = _mtls_listener(new_server_context(parse_downstream_policy({})), ca, leaf)
    assert _chain_the_client_receives(listener, ca, client) == 1


def test_without_the_mode_openssl_appends_the_client_ca() -> None:
    """The control: OpenSSL's default builds the chain from the client-CA store and sends the CA too."""
    ca = trustme.CA()
    leaf, client = ca.issue_cert("gw.example"), ca.issue_cert("client@example.com")
    listener = _mtls_listener(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER), ca, leaf)
    assert _chain_the_client_receives(listener, ca, client) == 2


def test_a_configured_chain_is_sent_whole() -> None:
    """Intermediates in the certificate file are sent, as before: the mode only stops building one."""
    root = trustme.CA()
    intermediate = root.create_child_ca()
    leaf, client = intermediate.issue_cert("gw.example"), root.issue_cert("client@example.com")
    listener = new_server_context(parse_downstream_policy({}))
    leaf.configure_cert(listener)  # leaf + intermediate
    root.configure_trust(listener)
    listener.verify_mode = ssl.CERT_REQUIRED
    assert _chain_the_client_receives(listener, root, client) == 2


def test_upstream_contexts_with_a_client_certificate_do_not_build_chains() -> None:
    """The certificate presented to an upstream is its own chain, not one completed from the trusted CAs."""
    from trio_gw.net.tls_client import compile_client_context
    from trio_gw.tls.upstream import ClientCertificate, UpstreamTlsProfile

    ca = trustme.CA()
    cert = ca.issue_cert("gateway@example.com")
    material = ClientCertificate(chain_pem="".join(b.bytes().decode() for b in cert.cert_chain_pems),
                                 key_pem=cert.private_key_pem.bytes().decode())
    trusted = (ca.cert_pem.bytes().decode(),)
    with_cert = compile_client_context(UpstreamTlsProfile(trusted_cas=trusted, client_certificate=material))
    assert modes(with_cert) & SSL_MODE_NO_AUTO_CHAIN
    without = compile_client_context(UpstreamTlsProfile(trusted_cas=trusted))
    assert not modes(without) & SSL_MODE_NO_AUTO_CHAIN  # nothing to send, nothing changed
