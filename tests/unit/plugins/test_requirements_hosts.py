"""Which handshakes the listener asks for a certificate: the hosts of the routes that need one."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from trio_gw.plugins.requirements import client_cert_requirements

from .conftest import CA_ID, Pki, load

MTLS = {"name": "mtls-auth", "config": {"ca_certificates": [CA_ID]}}


def doc(pki: Pki, routes: list[dict[str, Any]], *, plugins: Sequence[dict[str, Any]] = (),
        services: Sequence[dict[str, Any]] = (), consumers: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
    return {
        "_format_version": "3.0",
        "ca_certificates": [{"id": CA_ID, "cert": pki.ca.cert_pem()}],
        "services": [{"name": "billing", "host": "up.example", "routes": routes}, *services],
        "consumers": list(consumers),
        "plugins": list(plugins),
    }


def hosts(pki: Pki, routes: list[dict[str, Any]], **extra: Any) -> frozenset[str] | None:
    auth = client_cert_requirements(load(doc(pki, routes, **extra)))
    assert auth.request_certificate
    return auth.certificate_hosts


def test_route_plugin_contributes_its_route_hosts_only(pki: Pki) -> None:
    routes: list[dict[str, Any]] = [
        {"name": "secure", "hosts": ["Secure.Example", "*.mtls.example:8443"], "plugins": [MTLS]},
        {"name": "public", "hosts": ["public.example"]}]
    assert hosts(pki, routes) == {"secure.example", "*.mtls.example"}


def test_service_plugin_contributes_every_route_of_the_service(pki: Pki) -> None:
    routes = [{"name": "a", "hosts": ["a.example"]}, {"name": "b", "hosts": ["b.*"]}]
    assert hosts(pki, routes, plugins=[{"service": "billing", **MTLS}]) == {"a.example", "b.*"}


def test_global_plugin_or_host_less_route_asks_every_host(pki: Pki) -> None:
    assert hosts(pki, [{"name": "a", "hosts": ["a.example"]}], plugins=[MTLS]) is None
    routes: list[dict[str, Any]] = [
        {"name": "secure", "paths": ["/secure"], "plugins": [MTLS]}, {"name": "p", "hosts": ["p.example"]}]
    assert hosts(pki, routes) is None


def test_route_snis_narrow_the_hosts(pki: Pki) -> None:
    routes = [{"name": "s", "snis": ["Sni.Example"], "paths": ["/"], "plugins": [MTLS]}]
    assert hosts(pki, routes) == {"sni.example"}


def test_routes_the_tls_listener_does_not_serve_contribute_nothing(pki: Pki) -> None:
    routes = [{"name": "plain", "protocols": ["http"], "paths": ["/"], "plugins": [MTLS]},
              {"name": "secure", "hosts": ["secure.example"], "plugins": [MTLS]}]
    off = {"name": "off", "host": "up.example", "enabled": False,
           "routes": [{"name": "dead", "paths": ["/"], "plugins": [MTLS]}]}
    assert hosts(pki, routes, services=[off]) == {"secure.example"}


def test_bound_keys_ask_on_the_key_auth_routes(pki: Pki) -> None:
    fp = hashlib.sha256(pki.bob.cert_der()).hexdigest()
    consumers = [{"username": "bob", "keyauth_credentials": [{"key": "k", "bound_certificates": [fp]}]}]
    routes: list[dict[str, Any]] = [
        {"name": "keyed", "hosts": ["keyed.example"], "plugins": [{"name": "key-auth"}]},
        {"name": "secure", "hosts": ["secure.example"], "plugins": [MTLS]},
        {"name": "public", "hosts": ["public.example"]}]
    assert hosts(pki, routes, consumers=consumers) == {"keyed.example", "secure.example"}
    unbound = [{"username": "bob", "keyauth_credentials": [{"key": "k"}]}]
    assert hosts(pki, routes, consumers=unbound) == {"secure.example"}


def test_header_cert_auth_asks_nothing(pki: Pki) -> None:
    routes = [{"name": "lb", "hosts": ["lb.example"], "plugins": [
        {"name": "header-cert-auth", "config": {"ca_certificates": [CA_ID], "certificate_header_name": "ssl-client-cert",
                                                "certificate_header_format": "url_encoded"}}]}]
    assert not client_cert_requirements(load(doc(pki, routes))).request_certificate
