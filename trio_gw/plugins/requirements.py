"""What the proxy listeners must do in the handshake for the client-certificate plugins.

Theory of operation
-------------------
The SNI callback cannot change the verify flags, and changes the verify mode
only through a guarded ctypes shim (docs/tls-stack.md §1, §3), so the per-route
plugins need the *listener* to ask for a certificate (``CERT_OPTIONAL``) and
to trust the union of what any route accepts; the callback then stops asking
clients whose SNI cannot reach such a route (below).  Each route then
applies its own policy per request (``mtls-auth``, ``mtls-allowlist``,
``key-auth`` binding).  :func:`client_cert_requirements` computes that
listener policy from the configuration, with a digest that changes exactly
when it does: the IO layer replaces the listener context when the digest
changes, which also invalidates outstanding session tickets (docs/tls-stack.md
§10).

Trust anchors are: the CA certificates of every enabled ``mtls-auth``
plugin; the CA certificates and pinned leaves of every ``mtls-allowlist``;
and the certificates registered in ``mtls_auth`` credentials (PEM or
certificate id).  A pinned leaf that is not self-signed, an intermediate CA,
or a plugin with ``allow_partial_chain`` needs ``VERIFY_X509_PARTIAL_CHAIN``.
``header-cert-auth`` needs nothing from the handshake.  ``key-auth`` with
keys bound to certificates asks for a certificate but adds no anchor: a bound
certificate must also be trusted through one of the above.

Which handshakes are asked (``certificate_hosts``, see
:mod:`trio_gw.tls.listener_client_auth`): only those whose SNI can reach a
route one of those plugins applies to (route, service, or — for a global or
consumer-only plugin — every route).  A route contributes its ``snis`` when it
lists some (the router requires the SNI to be one of them), else its
``hosts``; a route with neither matches any Host, so every host is asked.
Routes the TLS listeners do not serve (no ``https`` protocol, a missing or
disabled service) contribute nothing.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.serialization import Encoding

from trio_gw.errors import ConfigError
from trio_gw.model.entities import Entities, Plugin, Route
from trio_gw.pki.info import describe_certificate
from trio_gw.pki.parse import parse_certificates
from trio_gw.tls.listener_client_auth import NO_CLIENT_AUTH, ListenerClientAuth, canonical_host_pattern

__all__ = ["CLIENT_CERT_PLUGINS", "certificate_hosts", "client_cert_requirements"]

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
    needing = [*wanted, *(p for p in plugins if p.name == "key-auth")] if bound_keys else wanted
    return ListenerClientAuth.build(anchors.values(), partial_chain=partial, announce_pem=announce,
                                    hosts=certificate_hosts(entities, needing))


def certificate_hosts(entities: Entities, plugins: list[Plugin]) -> list[str] | None:
    """The host patterns a TLS client can name (SNI) to reach a route one of ``plugins`` applies to.

    Args:
        entities: the configuration.
        plugins: enabled plugins that need the handshake's certificate.

    Returns:
        Route ``snis`` or ``hosts`` entries as configured; ``None`` when
        every host must be asked (a global or consumer-only plugin, a route
        with neither hosts nor snis, an entry the router would refuse).
    """
    by_service: dict[str, list[Route]] = {}
    for route in entities.routes.values():
        if route.service is not None:
            by_service.setdefault(route.service, []).append(route)
    found: list[str] = []
    for plugin in plugins:
        if plugin.route is not None:
            own = entities.routes.get(plugin.route)
            routes = [own] if own is not None else []
        elif plugin.service is not None:
            routes = by_service.get(plugin.service, [])
        else:
            return None
        for route in routes:
            service = entities.services.get(route.service or "")
            if service is None or not service.enabled or "https" not in route.protocols:
                continue
            names = route.snis or route.hosts
            if not names:
                return None
            found.extend(names)
    try:
        for name in found:
            canonical_host_pattern(name)
    except ConfigError:
        return None
    return found


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
