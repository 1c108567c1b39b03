"""Client connections: the facts of a finished TLS handshake, and closing a stream properly.

Python 3.11 has no public API for the client's certificate chain (3.13 does),
so the place that reads it is here, and nowhere else.
"""

from __future__ import annotations

import functools
import ssl

import trio

from trio_gw.errors import CertificateError
from trio_gw.http.facts import ConnectionFacts, shared_text
from trio_gw.pki.info import peer_identity
from trio_gw.net.plain_stream import PlainStream
from trio_gw.net.tls_stream import TlsStream
from trio_gw.tls.resumed_chain import IntermediateCache

_ENCODING_DER = 2  # ssl._ssl.ENCODING_DER (the private chain API's certificate encoding)

#: Fingerprint and subject by certificate bytes: clients reconnect with the same certificate, and parsing
#: it costs ~20 µs per connection (~1 % of an mTLS handshake); 256 entries keep a few hundred KB at most.
_identity_of = functools.lru_cache(maxsize=256)(peer_identity)


def record_tls_facts(stream: TlsStream, conn: ConnectionFacts, chains: IntermediateCache) -> None:
    """Fill ``conn`` with what the handshake of ``stream`` established.

    The plugins verify the client's chain themselves, so what the client sent is
    passed on.  A resumed session has no chain: the intermediates verified
    handshakes showed above this leaf are given back, else a route trusting only
    the root would refuse it (:mod:`trio_gw.tls.resumed_chain`).
    """
    conn.tls = True
    conn.tls_version = shared_text(stream.version())
    cipher = stream.cipher()
    conn.cipher = shared_text(cipher[0]) if cipher else None
    conn.alpn = shared_text(stream.selected_alpn_protocol())
    conn.sni = stream.sni  # shared by the SNI callback
    conn.peer_certificate_der = stream.getpeercert(binary_form=True)
    if conn.peer_certificate_der is None:
        return
    try:  # who the access log names, once per connection (OpenSSL parsed it already: this cannot fail in practice)
        conn.client_cert_fingerprint, conn.client_cert_subject = _identity_of(conn.peer_certificate_der)
    except CertificateError:
        pass
    if stream.session_reused:
        conn.peer_chain_der = chains.chain_for(conn.peer_certificate_der)
        return
    chain, verified = stream.peer_chains()
    conn.peer_chain_der = tuple(c.public_bytes(_ENCODING_DER) for c in chain[1:])
    chains.remember([c.public_bytes(_ENCODING_DER) for c in verified[1:]])


async def close_stream(stream: trio.abc.Stream) -> None:
    """Close a client stream; a TLS one says close_notify first (RFC 8446 §6.1) and lingers.

    :class:`TlsStream` sends close_notify and lingers until the peer's end of
    stream (bounded).  For a ``trio.SSLStream`` (the gateway's own outbound
    fetches), whose ``aclose()`` skips close_notify on ``https_compatible``
    streams, the alert is queued with ``SSLObject.unwrap()``, flushed with a
    short deadline, then the socket is closed.
    """
    if isinstance(stream, (TlsStream, PlainStream)):
        await stream.aclose()  # lingering (a PlainStream of a client connection is made lingering)
        return
    if isinstance(stream, trio.SSLStream):
        transport = stream.transport_stream
        try:
            stream._ssl_object.unwrap()
        except (ssl.SSLError, ValueError):
            pass  # SSLWantReadError: our alert is queued, the peer's is not awaited
        alert = stream._outgoing.read()
        if alert:
            with trio.move_on_after(1):
                try:
                    await transport.send_all(alert)
                except (trio.BrokenResourceError, trio.ClosedResourceError, trio.BusyResourceError):
                    pass
        await trio.aclose_forcefully(transport)
        return
    await trio.aclose_forcefully(stream)
