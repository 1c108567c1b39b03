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
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class ListenerClientAuth:
    """The handshake side of client-certificate authentication for every TLS listener."""

    request_certificate: bool = False
    anchors_pem: str = ""
    partial_chain: bool = False
    generation: str = ""
    #: CA certificates whose names are announced in the CertificateRequest
    #: (Kong's ``send_ca_dn``; Python's ssl announces none by default).
    announce_pem: tuple[str, ...] = ()

    @classmethod
    def build(
        cls, anchors_pem: Iterable[str], *, partial_chain: bool, announce_pem: Iterable[str] = ()
    ) -> ListenerClientAuth:
        """Ask for certificates trusted by ``anchors_pem`` (deduplicated, order-independent)."""
        unique = sorted({p.strip() + "\n" for p in anchors_pem if p.strip()})
        announce = tuple(sorted({p.strip() + "\n" for p in announce_pem if p.strip()}))
        text = "".join(unique)
        digest = hashlib.sha256(f"{partial_chain}\0{text}\0{''.join(announce)}".encode()).hexdigest()
        return cls(request_certificate=True, anchors_pem=text, partial_chain=partial_chain, generation=digest,
                   announce_pem=announce)


#: No route needs a client certificate: the handshake asks for none.
NO_CLIENT_AUTH = ListenerClientAuth()
