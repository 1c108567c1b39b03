"""Kong's ``mtls-auth`` plugin: authenticate API clients by the certificate of the TLS handshake.

Configuration (Kong's names and defaults; see :mod:`trio_gw.plugins.client_cert`):
``ca_certificates`` (CA certificate ids), ``skip_consumer_lookup`` (false),
``consumer_by`` (``["username", "custom_id"]``), ``authenticated_group_by``
(``CN`` | ``DN``), ``default_consumer``, ``anonymous``, ``allow_partial_chain``
(false), ``revocation_check_mode`` (``SKIP`` | ``IGNORE_CA_ERROR`` (default) |
``STRICT``), ``cert_cache_ttl`` (60000 ms: how long a fetched CRL is used),
``http_timeout`` (30000 ms: CRL fetches), ``send_ca_dn`` (the plugin's CA
names are announced in every listener's CertificateRequest).  trio-gw adds ``forward_client_cert`` (``none`` |
``rfc9440`` | ``xfcc``) and ``require_subscription`` (Gravitee plans).

``ca_certificates`` may be empty when every client is registered by its
certificate (``mtls_auth_credentials`` with ``certificate``: Tyk's Certificate
Auth, Gravitee's application certificates).

The listener asks for a client certificate (``CERT_OPTIONAL``) when the SNI can
reach a route with this plugin (:func:`trio_gw.plugins.requirements.client_cert_requirements`);
the route's own policy is applied here on every request, so a resumed TLS
session is re-checked against the current configuration.  When the request's
Host differs from the TLS server name (SNI), the request gets 421
``sni_host_mismatch``: a certificate presented for one host is not reused for
another through connection coalescing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from trio_gw.errors import ConfigError
from trio_gw.model.fields import Context
from trio_gw.plugins.base import Decision, Deny, PluginSpec, PrepareEnv, RequestContext, register
from trio_gw.plugins.client_cert import (
    ClientAuth,
    authenticate,
    for_route,
    parse_client_auth_config,
    prepare_client_auth,
)

#: Kong's mtls-auth priority (runs before key-auth, 1250).
PRIORITY = 1600


def parse_config(raw: Mapping[str, Any], path: str) -> Mapping[str, Any]:
    """Check the config; returns it with every default filled in."""
    ctx = Context(problems=[], now=0)
    out = parse_client_auth_config(raw, ctx)
    if ctx.problems:
        raise ConfigError(ctx.problems)
    return out


def prepare(config: Mapping[str, Any], env: PrepareEnv) -> ClientAuth:
    """Index CAs, consumers and credentials once per snapshot."""
    return prepare_client_auth(config, env)


def decide(auth: ClientAuth, request: RequestContext) -> Decision:
    """Authenticate by the handshake's client certificate."""
    mismatch = sni_host_mismatch(request)
    if mismatch is not None:
        return mismatch
    return authenticate(auth, request.peer_certificate_der, request.peer_chain_der, request)


def sni_host_mismatch(request: RequestContext) -> Deny | None:
    """421 when the TLS server name and the Host header name different hosts."""
    sni = (request.sni or "").lower().rstrip(".")
    host = request.facts.host.rstrip(".")
    if not request.tls or not sni or not host or sni == host:
        return None
    return Deny(421, "Misdirected Request: the TLS server name does not match the Host header",
                "sni_host_mismatch")


SPEC = register(PluginSpec(
    name="mtls-auth", priority=PRIORITY, parse_config=parse_config, decide=decide,
    prepare=prepare, for_route=for_route,
))
