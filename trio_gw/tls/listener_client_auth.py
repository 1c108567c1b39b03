"""What a TLS listener asks of clients in the handshake (pure).

Theory of operation
-------------------
OpenSSL takes ``verify_mode``, verify flags and ticket keys from the listener's
*initial* context only, and the trust store from the context the SNI callback
swaps in (tls-stack-notes §1).  Per-route client-certificate policy therefore
cannot live in the handshake.  The rule (DESIGN.md): when any route needs a
client certificate, every listener context asks for one with ``CERT_OPTIONAL``
and trusts the *union* of the anchors those routes name (plus allowlisted
leaves, which need ``VERIFY_X509_PARTIAL_CHAIN``); each route then checks the
presented leaf against its own policy on every request.  When nothing needs a
certificate, nothing is asked, so browsers are never prompted.

``generation`` digests everything that decides which certificates the handshake
accepts; when it changes the listener context is replaced, which also
invalidates every outstanding session ticket — a resumed session can never
carry a client past a changed allowlist (notes §10).

The node may also ask for client certificates on its own, with a server-level
truststore (nginx ``ssl_verify_client`` / ``ssl_client_certificate``, Gravitee
``http.ssl.clientAuth`` + truststore): :func:`with_server_verification`.
``optional`` asks every client (``CERT_OPTIONAL``); ``on`` requires a
certificate in every handshake (``CERT_REQUIRED``: without one, TLS 1.3 ends
with the ``certificate_required`` alert, TLS 1.2 with ``handshake_failure``).
Either way the handshake trusts the union of the server truststore and the
routes' anchors, and each route still applies its own plugins on every
request: a certificate the server truststore admits is refused by an
``mtls-auth`` route whose CAs did not issue it (401 ``unknown_ca``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class ListenerClientAuth:
    """The handshake side of client-certificate authentication for every TLS listener."""

    request_certificate: bool = False
    #: Every handshake must carry a trusted certificate (``ssl_verify_client on``).
    require_certificate: bool = False
    anchors_pem: str = ""
    partial_chain: bool = False
    generation: str = ""
    #: CA certificates whose names are announced in the CertificateRequest
    #: (Kong's ``send_ca_dn``; Python's ssl announces none by default).
    announce_pem: tuple[str, ...] = ()

    @classmethod
    def build(
        cls, anchors_pem: Iterable[str], *, partial_chain: bool, announce_pem: Iterable[str] = (),
        require_certificate: bool = False,
    ) -> ListenerClientAuth:
        """Ask for certificates trusted by ``anchors_pem`` (deduplicated, order-independent)."""
        unique = sorted({p.strip() + "\n" for p in anchors_pem if p.strip()})
        announce = tuple(sorted({p.strip() + "\n" for p in announce_pem if p.strip()}))
        text = "".join(unique)
        digest = hashlib.sha256(
            f"{partial_chain}\0{require_certificate}\0{text}\0{''.join(announce)}".encode()
        ).hexdigest()
        return cls(request_certificate=True, require_certificate=require_certificate, anchors_pem=text,
                   partial_chain=partial_chain, generation=digest, announce_pem=announce)


#: No route needs a client certificate: the handshake asks for none.
NO_CLIENT_AUTH = ListenerClientAuth()


#: Values of ``ssl_verify_client`` (nginx's names).
VERIFY_CLIENT_MODES = ("off", "optional", "on")


def with_server_verification(
    routes: ListenerClientAuth, mode: str, truststore_pem: Iterable[str]
) -> ListenerClientAuth:
    """Combine what the routes need with the node's ``ssl_verify_client`` / ``ssl_client_certificate``.

    Args:
        routes: what the routes' plugins need (``client_cert_requirements``).
        mode: ``off`` (only the routes decide), ``optional`` (ask every client)
            or ``on`` (require a certificate in every handshake).
        truststore_pem: the server truststore: PEM CA certificates, one per item.

    Returns:
        The listener policy: the union of the routes' anchors and the
        truststore, with the routes' partial-chain flag and CA announcements.
        With ``off`` the routes' policy unchanged (the truststore is not used).

    Raises:
        ValueError: an unknown ``mode``.
    """
    if mode not in VERIFY_CLIENT_MODES:
        raise ValueError(f"ssl_verify_client: expected one of {', '.join(VERIFY_CLIENT_MODES)}, got {mode!r}")
    if mode == "off":
        return routes
    anchors = [*_split_pem(routes.anchors_pem), *truststore_pem]
    return ListenerClientAuth.build(anchors, partial_chain=routes.partial_chain, announce_pem=routes.announce_pem,
                                    require_certificate=mode == "on")


def _split_pem(text: str) -> list[str]:
    end = "-----END CERTIFICATE-----"
    return [block + end for block in text.split(end) if block.strip()]
