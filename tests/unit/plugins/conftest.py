"""Shared helpers: a test PKI, declarative configurations, hand-built requests."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from trio_gw.http.facts import RequestFacts
from trio_gw.model.declarative import parse_declarative
from trio_gw.model.entities import Entities
from trio_gw.plugins.base import BoundPlugin, Decision, RequestContext, decide_all, plugins_by_route
from trio_gw.testing.pki import Issued, build_certificate, make_ca

NOW = 1_800_000_000  # 2027-01-15
CA_ID = str(uuid.uuid5(uuid.NAMESPACE_DNS, "client-ca"))
OTHER_CA_ID = str(uuid.uuid5(uuid.NAMESPACE_DNS, "other-ca"))


class Pki:
    def __init__(self) -> None:
        self.ca = make_ca(common_name="Client CA")
        self.other_ca = make_ca(common_name="Other CA")
        self.alice = build_certificate(issuer=self.ca, common_name="alice", dns_names=["alice.clients.example"])
        self.bob = build_certificate(issuer=self.ca, common_name="bob")
        self.mallory = build_certificate(issuer=self.other_ca, common_name="alice")
        self.self_signed = build_certificate(common_name="device-7", dns_names=["device-7.example"])
        self.server_only = build_certificate(issuer=self.ca, common_name="srv", client_auth=False)


@pytest.fixture(scope="session")
def pki() -> Pki:
    return Pki()


def document(pki: Pki, *, plugins: Sequence[Mapping[str, Any]] = (), consumers: Sequence[Mapping[str, Any]] = (),
             **extra: Any) -> dict[str, Any]:
    """A configuration: two CAs, one service with one route (host api.example), the plugins."""
    return {
        "_format_version": "3.0",
        "ca_certificates": [{"id": CA_ID, "cert": pki.ca.cert_pem()},
                            {"id": OTHER_CA_ID, "cert": pki.other_ca.cert_pem()}],
        "services": [{"name": "billing", "host": "up.example",
                      "routes": [{"name": "r", "hosts": ["api.example"], "paths": ["/"]}]}],
        "consumers": list(consumers),
        "plugins": [{"service": "billing", **p} for p in plugins],
        **extra,
    }


def load(doc: Mapping[str, Any]) -> Entities:
    return parse_declarative(doc, now=NOW)


def bound(entities: Entities, options: Mapping[str, Any] | None = None) -> tuple[BoundPlugin, ...]:
    (plugins,) = plugins_by_route(entities, options).values()
    return plugins


def request(
    cert: Issued | bytes | None = None, *, chain: Sequence[Issued] = (), headers: Sequence[tuple[bytes, bytes]] = (),
    tls: bool = True, sni: str | None = "api.example", host: str = "api.example", trusted: bool = False,
    query: str = "", now: float = NOW,
) -> RequestContext:
    der = cert.cert_der() if isinstance(cert, Issued) else cert
    facts = RequestFacts(method="GET", host=host, path="/", query=query, protocol="https" if tls else "http", sni=sni)
    return RequestContext(
        facts=facts, headers=tuple(headers), client_ip="192.0.2.1", trusted_client=trusted, tls=tls, sni=sni,
        peer_certificate_der=der, peer_chain_der=tuple(c.cert_der() for c in chain), now=now,
    )


def run(entities: Entities, req: RequestContext, options: Mapping[str, Any] | None = None) -> Decision:
    return decide_all(bound(entities, options), req)


def header(decision: Decision, name: bytes) -> bytes | None:
    for k, v in getattr(decision, "upstream_headers", ()):
        if k == name:
            return bytes(v)
    return None
