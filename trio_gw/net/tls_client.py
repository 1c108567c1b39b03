"""Upstream TLS client contexts, compiled per service and cached.

Theory of operation
-------------------
Every https service gets one context built off the event loop when the snapshot
is installed (``prepare``), cached by the content of what configures it, so the
request path only does a dict lookup.  Secure defaults (DESIGN.md): verification
on against the system roots unless the service names ``ca_certificates``;
``VERIFY_X509_STRICT`` and no CN fallback for hostnames; renegotiation refused
(``OP_NO_RENEGOTIATION``); TLS 1.2–1.3.
"""

from __future__ import annotations

import hashlib
import ssl
from collections.abc import Mapping
from typing import TYPE_CHECKING

from trio_gw.model.entities import Service
from trio_gw.net.contexts import load_pem_pair

if TYPE_CHECKING:
    from trio_gw.snapshot import Snapshot


def _profile_key(service: Service, snapshot: Snapshot) -> str:
    h = hashlib.sha256()
    h.update(repr((service.tls_verify, service.tls_verify_depth, service.client_certificate)).encode())
    for ca_id in service.ca_certificates:
        ca = snapshot.entities.ca_certificates.get(ca_id)
        h.update(ca.cert.encode() if ca else ca_id.encode())
    if service.client_certificate:
        cert = snapshot.entities.certificates.get(service.client_certificate)
        if cert:
            h.update(cert.cert.encode() + cert.key.encode())
    return h.hexdigest()


def new_client_context(service: Service, snapshot: Snapshot) -> ssl.SSLContext:
    """Build the context for ``service`` (slow: call off the event loop)."""
    if service.ca_certificates:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        cadata = "".join(
            snapshot.entities.ca_certificates[ca_id].cert for ca_id in service.ca_certificates
        )
        ctx.load_verify_locations(cadata=cadata)
    else:
        ctx = ssl.create_default_context()
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.options |= ssl.OP_NO_RENEGOTIATION
    ctx.verify_flags |= ssl.VERIFY_X509_STRICT
    ctx.hostname_checks_common_name = False
    if service.tls_verify is False:
        ctx.check_hostname = False  # must precede CERT_NONE (notes §6)
        ctx.verify_mode = ssl.CERT_NONE
    if service.client_certificate:
        cert = snapshot.entities.certificates[service.client_certificate]
        load_pem_pair(ctx, cert.cert, cert.key)
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


class UpstreamTls:
    """Client contexts per service for the live snapshot."""

    def __init__(self) -> None:
        self._by_key: dict[str, ssl.SSLContext] = {}
        self._by_service: Mapping[str, ssl.SSLContext] = {}
        self._pending: dict[str, ssl.SSLContext] = {}

    def prepare(self, snapshot: Snapshot) -> None:
        """Build contexts for every https service of ``snapshot`` (runs in a worker thread)."""
        by_key: dict[str, ssl.SSLContext] = {}
        by_service: dict[str, ssl.SSLContext] = {}
        for service in snapshot.entities.services.values():
            if service.protocol != "https":
                continue
            key = _profile_key(service, snapshot)
            ctx = by_key.get(key) or self._by_key.get(key) or new_client_context(service, snapshot)
            by_key[key] = ctx
            by_service[service.id] = ctx
        self._pending_key, self._pending = by_key, by_service

    def activate(self) -> None:
        self._by_key, self._by_service = self._pending_key, self._pending

    def context_for(self, service: Service) -> ssl.SSLContext:
        """The compiled context of ``service`` (a dict lookup)."""
        return self._by_service[service.id]
