"""Kong's ``header-cert-auth`` (Gravitee ``clientAuthHeader``): the client certificate from a header.

Behind a TLS-terminating load balancer, the certificate arrives in a header
set by that load balancer.  Configuration: Kong's ``certificate_header_name``
(required), ``certificate_header_format`` (``base64_encoded`` |
``url_encoded``, plus ``rfc9440`` and ``xfcc``), ``secure_source`` (default
true: the header is believed only from the node's ``trusted_ips``), and every
option of ``mtls-auth`` (same verification and consumer mapping).

* A header from anywhere else than ``trusted_ips`` (with ``secure_source``)
  is ignored, as if absent.
* The header (and ``Client-Cert-Chain`` for ``rfc9440``) is always removed
  before proxying, whoever sent it.
* When the request itself came over TLS with a client certificate, that
  certificate wins over the header (Gravitee).
* A header that holds no certificate in the configured format gets 401
  ``bad_certificate`` (or the ``anonymous`` consumer).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from trio_gw.errors import ConfigError
from trio_gw.model.entities import Route
from trio_gw.model.fields import Context, Fields
from trio_gw.model.values import InvalidValue
from trio_gw.plugins.base import Allow, Decision, Deny, PluginSpec, PrepareEnv, RequestContext, register
from trio_gw.plugins.client_cert import (
    ClientAuth,
    authenticate,
    for_route as _auth_for_route,
    parse_client_auth_config,
    prepare_client_auth,
)
from trio_gw.plugins.identity import consumer_headers
from trio_gw.tls.forwarded_cert import (
    FORWARDED_CERT_FORMATS,
    ForwardedCertificateError,
    parse_forwarded_certificate,
)

#: Kong's header-cert-auth priority.
PRIORITY = 1550
_OWN = ("certificate_header_name", "certificate_header_format", "secure_source")


@dataclass(frozen=True)
class HeaderCertAuth:
    """The prepared plugin: the shared client-auth core and the header to read."""

    auth: ClientAuth
    header: bytes
    chain_header: bytes | None
    fmt: str
    secure_source: bool


def parse_config(raw: Mapping[str, Any], path: str) -> Mapping[str, Any]:
    """Check the config; returns it with every default filled in."""
    ctx = Context(problems=[], now=0)
    out = parse_client_auth_config(raw, ctx, _OWN)
    f = Fields(raw, "", ctx)
    name = f.string("certificate_header_name", _header_name, required=True)
    fmt = f.choice("certificate_header_format", FORWARDED_CERT_FORMATS, None)
    if f.get("certificate_header_format") is None:
        f.report("certificate_header_format", "required field missing")
    out.update(certificate_header_name=name, certificate_header_format=fmt,
               secure_source=f.boolean("secure_source", True))
    if ctx.problems:
        raise ConfigError(ctx.problems)
    return out


def _header_name(value: str) -> str:
    if not value.isascii() or not all(c.isalnum() or c in "-_" for c in value):
        raise InvalidValue("expected a header name (letters, digits, '-' and '_')")
    return value.lower()


def prepare(config: Mapping[str, Any], env: PrepareEnv) -> HeaderCertAuth:
    """Index CAs, consumers and credentials once per snapshot."""
    header = str(config["certificate_header_name"]).encode("ascii")
    fmt = str(config["certificate_header_format"])
    chain = b"client-cert-chain" if fmt == "rfc9440" else None
    strip = frozenset({header} | ({chain} if chain else set()))
    auth = prepare_client_auth(config, env, strip)
    return HeaderCertAuth(auth, header, chain, fmt, bool(config.get("secure_source", True)))


def for_route(prepared: HeaderCertAuth, route: Route) -> HeaderCertAuth:
    """Bind the route's service (subscriptions)."""
    auth = _auth_for_route(prepared.auth, route)
    return prepared if auth is prepared.auth else HeaderCertAuth(
        auth, prepared.header, prepared.chain_header, prepared.fmt, prepared.secure_source
    )


def decide(plugin: HeaderCertAuth, request: RequestContext) -> Decision:
    """Authenticate by the TLS client certificate, else by the trusted header."""
    if request.tls and request.peer_certificate_der:
        return authenticate(plugin.auth, request.peer_certificate_der, request.peer_chain_der, request)
    value = request.header(plugin.header)
    if value is None or (plugin.secure_source and not request.trusted_client):
        return authenticate(plugin.auth, None, (), request)
    chain = request.header(plugin.chain_header) if plugin.chain_header else None
    try:
        found = parse_forwarded_certificate(
            value.decode("latin-1"), plugin.fmt, chain_value=chain.decode("latin-1") if chain else None
        )
    except ForwardedCertificateError:
        auth = plugin.auth
        if auth.anonymous is not None:
            return Allow(consumer_headers(auth.anonymous, anonymous=True), auth.anonymous, auth.strip)
        return Deny(401, "TLS certificate failed verification: the certificate header cannot be read",
                    "bad_certificate")
    return authenticate(plugin.auth, found.leaf_der, found.chain_der, request)


SPEC = register(PluginSpec(
    name="header-cert-auth", priority=PRIORITY, parse_config=parse_config, decide=decide,
    prepare=prepare, for_route=for_route,
))
