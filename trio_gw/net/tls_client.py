"""Upstream TLS client contexts, compiled per profile and cached.

Theory of operation
-------------------
The pure layer decides (``tls.upstream.select_upstream_profile``: service >
host map > global settings); this module carries it out.  When a generation is
built (in a worker thread, off the event loop), :class:`UpstreamPlanner` reads
the files the settings name, computes every service's profile and compiles one
context per *distinct* profile with :func:`compile_client_context`.  Contexts
are cached by profile (frozen, hashable, material included), so an unchanged
service keeps its context — and its pooled connections — across reloads, while
a rotated certificate, CA or policy gives a new context, hence a new pool key:
the next new connection presents the new certificate and old connections drain.
Each service's :class:`UpstreamPlan` (context, pool key, timeouts, forward
proxy) lives in the generation; a request takes the plan of the generation it
pinned, so a service deleted or changed while the request is in flight never
changes how that request is sent.

Every context: ``PROTOCOL_TLS_CLIENT``; trust = the profile's CAs or the system
roots; ``VERIFY_X509_STRICT`` and ``hostname_checks_common_name = False``
(docs/architecture.md); depth via the OpenSSL shim; ``OP_NO_RENEGOTIATION`` (the gateway
refuses server-initiated renegotiation and never starts one); ALPN http/1.1.
``tls_verify: false`` → ``CERT_NONE``; the CN check → ``CERT_REQUIRED`` without
the context's own name check (``tls.upstream_identity`` judges the name).

``compile_client_context`` takes only a profile, so other TLS clients of the
gateway (e.g. PostgreSQL with Kong's ``pg_ssl*``) can reuse it.
"""

from __future__ import annotations

import itertools
import ssl
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from trio_gw.errors import ConfigError
from trio_gw.model.entities import Service
from trio_gw.net.contexts import load_pem_pair
from trio_gw.net.openssl_shim import ShimUnavailable, set_no_auto_chain, set_tls13_ciphersuites, set_verify_depth
from trio_gw.net.upstream import PoolKey
from trio_gw.tls.proxy_url import ForwardProxy, parse_proxy_url
from trio_gw.tls.upstream import (
    UpstreamTlsDefaults,
    UpstreamTlsProfile,
    parse_upstream_defaults,
    select_upstream_profile,
)

if TYPE_CHECKING:
    from trio_gw.snapshot import Snapshot


#: ALPN offered to https upstreams with ``proxy_enable_http2`` (``net.upstream_h2`` speaks ``h2``).
ALPN_H2_FIRST = ("h2", "http/1.1")


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
        ctx.check_hostname = False  # must precede CERT_NONE (docs/tls-stack.md §6)
    ctx.verify_mode = ssl.CERT_REQUIRED if profile.verify else ssl.CERT_NONE
    if profile.verify_depth is not None:
        set_verify_depth(ctx, profile.verify_depth)
    if profile.client_certificate is not None:
        load_pem_pair(ctx, profile.client_certificate.chain_pem, profile.client_certificate.key_pem)
        try:
            set_no_auto_chain(ctx)  # the certificate's own chain, not one built from the upstream's trusted CAs
        except ShimUnavailable:
            pass  # OpenSSL's default: the same chain completed from the trusted CAs, at some CPU per handshake
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


@dataclass(frozen=True, slots=True)
class UpstreamPlan:
    """How to reach one service, computed once per generation: the request path only reads it.

    ``key`` is the pool key (scheme, host, port, SNI, TLS context serial, proxy);
    timeouts are in seconds; ``peer`` is ``host:port`` for the access log.
    """

    key: PoolKey
    peer: str
    connect_timeout: float
    read_timeout: float
    write_timeout: float
    context: ssl.SSLContext | None = None
    profile: UpstreamTlsProfile | None = None
    proxy: ForwardProxy | None = None
    proxy_context: ssl.SSLContext | None = None
    #: The plan for a WebSocket handshake when this one offers ``h2`` (``proxy_enable_http2``): the same
    #: upstream with ``http/1.1`` alone by ALPN, since only HTTP/1.1 carries an ``Upgrade``; else None.
    websocket: UpstreamPlan | None = None


def _read_text(path: str, where: str) -> str:
    try:
        return Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}", where) from exc


class UpstreamPlanner:
    """Computes every service's :class:`UpstreamPlan` for a generation, reusing compiled contexts.

    Owned by the generation builder and used from its worker thread only (builds
    are serialised): contexts are cached by profile (frozen, hashable, material
    included), so an unchanged service keeps its context, its serial and hence
    its pooled connections across reloads.
    """

    def __init__(self) -> None:
        self._by_profile: dict[tuple[UpstreamTlsProfile, bool], tuple[ssl.SSLContext, int]] = {}
        self._serials = itertools.count(1)
        self._proxy_context: ssl.SSLContext | None = None

    def plans(self, snapshot: Snapshot, *, now: int) -> dict[str, UpstreamPlan]:
        """Every service's plan (blocking: reads files, compiles contexts).

        Raises:
            ConfigError: a setting or service field cannot be used (named by path).
            CertificateError: a client certificate or key is unusable.
        """
        defaults = parse_upstream_defaults(snapshot.settings.as_mapping(), snapshot.entities, _read_text)
        used: dict[tuple[UpstreamTlsProfile, bool], tuple[ssl.SSLContext, int]] = {}
        http2 = bool(snapshot.settings.proxy_enable_http2)
        plans = {service.id: self._plan(service, snapshot, defaults, used, now, http2)
                 for service in snapshot.entities.services.values()}
        self._by_profile = used  # contexts no service uses any more are released
        return plans

    def _plan(
        self, service: Service, snapshot: Snapshot, defaults: UpstreamTlsDefaults,
        used: dict[tuple[UpstreamTlsProfile, bool], tuple[ssl.SSLContext, int]], now: int, http2: bool,
    ) -> UpstreamPlan:
        proxy = None
        if service.proxy_url:
            proxy = parse_proxy_url(service.proxy_url, path=f"services.{service.name or service.id}.proxy_url")
        proxy_context = self._https_proxy_context() if proxy is not None and proxy.tls else None
        context, profile, serial = None, None, 0
        if service.protocol == "https":
            profile = select_upstream_profile(service, snapshot.entities, defaults, now=now, read_text=_read_text)
            # proxy_enable_http2: offer h2 first by ALPN; the upstream's choice decides each connection's protocol
            context, serial = self._context(profile, http2, used)
        key = PoolKey(service.protocol, service.host, service.port, service.host if context is not None else None,
                      serial, proxy.identity if proxy is not None else None)
        plan = UpstreamPlan(
            key=key, peer=f"{service.host}:{service.port}",
            connect_timeout=service.connect_timeout / 1000, read_timeout=service.read_timeout / 1000,
            write_timeout=service.write_timeout / 1000,
            context=context, profile=profile, proxy=proxy, proxy_context=proxy_context,
        )
        if http2 and profile is not None:
            context, serial = self._context(profile, False, used)
            plan = replace(plan, websocket=replace(plan, key=replace(key, tls_serial=serial), context=context))
        return plan

    def _context(
        self, profile: UpstreamTlsProfile, http2: bool,
        used: dict[tuple[UpstreamTlsProfile, bool], tuple[ssl.SSLContext, int]],
    ) -> tuple[ssl.SSLContext, int]:
        """The compiled context of ``profile`` offering h2 or not, and its serial (reused across generations)."""
        cache_key = (profile, http2)
        compiled = used.get(cache_key) or self._by_profile.get(cache_key)
        if compiled is None:
            compiled = (compile_client_context(profile, alpn=ALPN_H2_FIRST if http2 else ("http/1.1",)),
                        next(self._serials))
        used[cache_key] = compiled
        return compiled

    def _https_proxy_context(self) -> ssl.SSLContext:
        if self._proxy_context is None:
            self._proxy_context = new_proxy_context()
        return self._proxy_context
