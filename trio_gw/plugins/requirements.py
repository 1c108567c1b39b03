"""What the proxy listeners must do in the handshake for the client-certificate plugins.

Theory of operation
-------------------
The SNI callback cannot change the verify mode or the trust store flags
(tls-stack-notes §2), so the per-route plugins need the *listener* to ask
every client for a certificate (``CERT_OPTIONAL``) and to trust the union of
what any route accepts; each route then applies its own policy per request
(``mtls-auth``, ``mtls-allowlist``, ``key-auth`` binding).
:func:`client_cert_requirements` computes that listener policy from the
configuration, with a digest that changes exactly when it does: the IO layer
replaces the listener context when the digest changes, which also invalidates
outstanding session tickets (tls-stack-notes §10).

Trust anchors are: the CA certificates of every enabled ``mtls-auth``
plugin; the CA certificates and pinned leaves of every ``mtls-allowlist``;
and the certificates registered in ``mtls_auth`` credentials (PEM or
certificate id).  A pinned leaf that is not self-signed, an intermediate CA,
or a plugin with ``allow_partial_chain`` needs ``VERIFY_X509_PARTIAL_CHAIN``.
``header-cert-auth`` needs nothing from the handshake.  ``key-auth`` with
keys bound to certificates asks for a certificate but adds no anchor: a bound
certificate must also be trusted through one of the above.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.serialization import Encoding

from trio_gw.model.entities import Entities
from trio_gw.pki.info import describe_certificate
from trio_gw.pki.parse import parse_certificates
from trio_gw.tls.listener_client_auth import NO_CLIENT_AUTH, ListenerClientAuth

__all__ = ["CLIENT_CERT_PLUGINS", "client_cert_requirements"]

#: Plugins that need the client certificate of the handshake.
CLIENT_CERT_PLUGINS = ("mtls-auth", "mtls-allowlist")


def client_cert_requirements(entities: Entities) -> ListenerClientAuth:
    """Compute the listener policy the configuration needs.

    Args:
        entities: the configuration.

    Returns:
        The :class:`~trio_gw.tls.listener_client_auth.ListenerClientAuth`:
        :data:`~trio_gw.tls.listener_client_auth.NO_CLIENT_AUTH` when no
        route needs a certificate or nothing could be trusted (an empty
        trust store would refuse every certificate anyway).
    """
    plugins = [p for p in entities.plugins.values() if p.enabled]
    wanted = [p for p in plugins if p.name in CLIENT_CERT_PLUGINS]
    partial = any(p.config.get("allow_partial_chain") for p in wanted)
    pems: list[str] = []
    announce: list[str] = []
    for p in wanted:
        ids = p.config.get("ca_certificates", ()) if p.name == "mtls-auth" else p.config.get("certificates", ())
        for entry in ids:
            stored = entities.ca_certificates.get(entry) or entities.certificates.get(entry)
            if stored is not None:
                pems.append(stored.cert)
                if p.name == "mtls-auth" and p.config.get("send_ca_dn"):
                    announce.append(stored.cert)
    if any(p.name == "mtls-auth" for p in wanted):
        pems.extend(_credential_pems(entities))
    bound_keys = any(p.name == "key-auth" for p in plugins) and any(
        c.bound_certificates for c in entities.credentials.values() if c.kind == "key_auth"
    )
    anchors: dict[str, str] = {}
    for pem in pems:
        cert = parse_certificates(pem)[0]
        info = describe_certificate(cert)
        anchors[info.fingerprint_sha256] = cert.public_bytes(Encoding.PEM).decode("ascii")
        partial = partial or not info.is_self_issued
    if not (wanted or bound_keys) or not anchors:
        return NO_CLIENT_AUTH
    return ListenerClientAuth.build(anchors.values(), partial_chain=partial, announce_pem=announce)


def _credential_pems(entities: Entities) -> list[str]:
    found = []
    for cred in entities.credentials.values():
        if cred.kind != "mtls_auth" or cred.status == "revoked":
            continue
        if cred.certificate is not None:
            found.append(cred.certificate)
        elif cred.certificate_id is not None and cred.certificate_id in entities.certificates:
            found.append(entities.certificates[cred.certificate_id].cert)
    return found
