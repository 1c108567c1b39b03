"""Upstream TLS client contexts, compiled per profile and cached.

Theory of operation
-------------------
The pure layer decides (``tls.upstream.select_upstream_profile``: service >
host map > global settings); this module carries it out.  When a snapshot is
installed, ``prepare`` (in a worker thread, off the event loop) reads the
files the settings name, computes every https service's profile and compiles
one context per *distinct* profile with :func:`compile_client_context`.
Contexts are cached by profile (frozen, hashable, material included), so an
unchanged service keeps its context — and its pooled connections — across
reloads, while a rotated certificate, CA or policy gives a new context, hence
a new pool key: the next new connection presents the new certificate and old
connections drain.  The request path does one dict lookup (``plan_for``).

Every context: ``PROTOCOL_TLS_CLIENT``; trust = the profile's CAs or the system
roots; ``VERIFY_X509_STRICT`` and ``hostname_checks_common_name = False``
(DESIGN.md); depth via the OpenSSL shim; ``OP_NO_RENEGOTIATION`` (the gateway
refuses server-initiated renegotiation and never starts one); ALPN http/1.1.
``tls_verify: false`` → ``CERT_NONE``; the CN check → ``CERT_REQUIRED`` without
the context's own name check (``tls.upstream_identity`` judges the name).

``compile_client_context`` takes only a profile, so other TLS clients of the
gateway (e.g. PostgreSQL with Kong's ``pg_ssl*``) can reuse it.
"""

from __future__ import annotations

import ssl
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from trio_gw.errors import ConfigError
from trio_gw.model.entities import Service
from trio_gw.net.contexts import load_pem_pair
from trio_gw.net.openssl_shim import set_tls13_ciphersuites, set_verify_depth
from trio_gw.tls.proxy_url import ForwardProxy, parse_proxy_url
from trio_gw.tls.upstream import (
    UpstreamTlsDefaults,
    UpstreamTlsProfile,
    parse_upstream_defaults,
    select_upstream_profile,
)

if TYPE_CHECKING:
    from trio_gw.snapshot import Snapshot


def compile_client_context(profile: UpstreamTlsProfile, *, alpn: tuple[str, ...] = ("http/1.1",)) -> ssl.SSLContext:
    """Build the client context that carries out ``profile`` (slow: call off the event loop).

    Raises:
        CertificateError: the client certificate or key is unusable.
        ConfigError: the verify depth or TLS 1.3 suites cannot be set on this interpreter.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if profile.trusted_cas:
        ctx.load_verify_locations(cadata="".join(profile.trusted_cas))
    else:
        ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
    policy = profile.policy
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TLS 1.0/1.1 only when configured
        ctx.minimum_version = policy.versions.minimum
        ctx.maximum_version = policy.versions.maximum
    if policy.ciphers.openssl_ciphers is not None:
        ctx.set_ciphers(policy.ciphers.openssl_ciphers)
    if policy.ciphers.tls13_ciphersuites is not None:
        set_tls13_ciphersuites(ctx, policy.ciphers.tls13_ciphersuites)
    ctx.options |= profile.options_to_set
    ctx.verify_flags |= ssl.VERIFY_X509_STRICT
    ctx.hostname_checks_common_name = False
    if not profile.check_hostname_in_handshake:
        ctx.check_hostname = False  # must precede CERT_NONE (notes §6)
    ctx.verify_mode = ssl.CERT_REQUIRED if profile.verify else ssl.CERT_NONE
    if profile.verify_depth is not None:
        set_verify_depth(ctx, profile.verify_depth)
    if profile.client_certificate is not None:
        load_pem_pair(ctx, profile.client_certificate.chain_pem, profile.client_certificate.key_pem)
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    return ctx


def new_proxy_context() -> ssl.SSLContext:
    """The context for ``https://`` forward proxies: system roots, full verification, no certificate (as Tyk).

    The system roots are OpenSSL's default paths, read when this is called, so
    ``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` select them (as for Go, hence Tyk): the
    way to trust a private proxy CA.  A service's ``tls_verify`` and
    ``ca_certificates`` concern the origin beyond the proxy, never the proxy.
    """
    ctx = ssl.create_default_context()
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.options |= ssl.OP_NO_RENEGOTIATION
    return ctx


@dataclass(frozen=True)
class UpstreamPlan:
    """How to reach one service: TLS profile and context (https), forward proxy (optional)."""

    context: ssl.SSLContext | None = None
    profile: UpstreamTlsProfile | None = None
    proxy: ForwardProxy | None = None
    proxy_context: ssl.SSLContext | None = None


_DIRECT = UpstreamPlan()


def _read_text(path: str, where: str) -> str:
    try:
        return Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}", where) from exc


class UpstreamTls:
    """Upstream plans per service for the live snapshot (built by ``prepare``, swapped by ``activate``)."""

    def __init__(self) -> None:
        self._by_profile: dict[UpstreamTlsProfile, ssl.SSLContext] = {}
        self._plans: Mapping[str, UpstreamPlan] = {}
        self._pending: tuple[dict[UpstreamTlsProfile, ssl.SSLContext], dict[str, UpstreamPlan]] | None = None
        self._proxy_context: ssl.SSLContext | None = None

    def prepare(self, snapshot: Snapshot) -> None:
        """Compute every service's plan for ``snapshot`` (runs in a worker thread; reads files).

        Raises:
            ConfigError: a setting or service field cannot be used (named by path).
            CertificateError: a client certificate or key is unusable.
        """
        defaults = parse_upstream_defaults(snapshot.settings.as_mapping(), snapshot.entities, _read_text)
        by_profile: dict[UpstreamTlsProfile, ssl.SSLContext] = {}
        plans: dict[str, UpstreamPlan] = {}
        now = int(time.time())
        for service in snapshot.entities.services.values():
            plans[service.id] = self._plan(service, snapshot, defaults, by_profile, now)
        self._pending = (by_profile, plans)

    def _plan(
        self, service: Service, snapshot: Snapshot, defaults: UpstreamTlsDefaults,
        by_profile: dict[UpstreamTlsProfile, ssl.SSLContext], now: int,
    ) -> UpstreamPlan:
        proxy = None
        if service.proxy_url:
            proxy = parse_proxy_url(service.proxy_url, path=f"services.{service.name or service.id}.proxy_url")
        proxy_context = self._https_proxy_context() if proxy is not None and proxy.tls else None
        if service.protocol != "https":
            return _DIRECT if proxy is None else UpstreamPlan(proxy=proxy, proxy_context=proxy_context)
        profile = select_upstream_profile(service, snapshot.entities, defaults, now=now, read_text=_read_text)
        ctx = by_profile.get(profile) or self._by_profile.get(profile) or compile_client_context(profile)
        by_profile[profile] = ctx
        return UpstreamPlan(ctx, profile, proxy, proxy_context)

    def _https_proxy_context(self) -> ssl.SSLContext:
        if self._proxy_context is None:
            self._proxy_context = new_proxy_context()
        return self._proxy_context

    def activate(self) -> None:
        """Make the plans of the last ``prepare`` live (one swap, on the event loop)."""
        if self._pending is not None:
            self._by_profile, self._plans = self._pending
            self._pending = None

    def plan_for(self, service: Service) -> UpstreamPlan:
        """The plan of ``service`` (a dict lookup); direct plain http when it has none."""
        return self._plans.get(service.id, _DIRECT)

    def context_for(self, service: Service) -> ssl.SSLContext:
        """The compiled context of an https ``service``."""
        ctx = self.plan_for(service).context
        if ctx is None:
            raise KeyError(service.id)
        return ctx
