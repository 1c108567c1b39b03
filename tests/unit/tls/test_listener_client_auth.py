"""The server-level truststore (ssl_verify_client / ssl_client_certificate) combined with the routes' needs."""

from __future__ import annotations

from typing import Any

import pytest

from trio_gw.settings import parse_settings
from trio_gw.snapshot import build_snapshot
from trio_gw.model.entities import Entities
from trio_gw.testing.pki import make_ca
from trio_gw.tls.listener_client_auth import NO_CLIENT_AUTH, ListenerClientAuth, with_server_verification

NOW = 1_800_000_000


@pytest.fixture(scope="module")
def cas() -> tuple[str, str]:
    return make_ca(common_name="server truststore").cert_pem(), make_ca(common_name="route CA").cert_pem()


def test_off_leaves_the_routes_policy_alone(cas: tuple[str, str]) -> None:
    server, route = cas
    assert with_server_verification(NO_CLIENT_AUTH, "off", [server]) is NO_CLIENT_AUTH
    routes = ListenerClientAuth.build([route], partial_chain=True)
    assert with_server_verification(routes, "off", [server]) is routes


def test_optional_asks_everyone_and_trusts_the_union(cas: tuple[str, str]) -> None:
    server, route = cas
    alone = with_server_verification(NO_CLIENT_AUTH, "optional", [server])
    assert alone.request_certificate and not alone.require_certificate
    assert alone.anchors_pem.count("BEGIN CERTIFICATE") == 1
    routes = ListenerClientAuth.build([route], partial_chain=True, announce_pem=[route])
    union = with_server_verification(routes, "optional", [server, route])
    assert union.anchors_pem.count("BEGIN CERTIFICATE") == 2  # deduplicated
    assert union.partial_chain and union.announce_pem == routes.announce_pem
    assert union.generation != routes.generation


def test_on_requires_a_certificate_and_changes_the_generation(cas: tuple[str, str]) -> None:
    server, _ = cas
    optional = with_server_verification(NO_CLIENT_AUTH, "optional", [server])
    required = with_server_verification(NO_CLIENT_AUTH, "on", [server])
    assert required.request_certificate and required.require_certificate
    assert required.anchors_pem == optional.anchors_pem
    assert required.generation != optional.generation  # a new listener context, new ticket keys
    nothing = with_server_verification(NO_CLIENT_AUTH, "on", [])
    assert nothing.require_certificate and nothing.anchors_pem == ""  # every certificate refused


def test_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="ssl_verify_client"):
        with_server_verification(NO_CLIENT_AUTH, "required", [])


def settings(**values: Any) -> Any:
    return parse_settings([("test", values)])


def test_settings_read_nginx_names_and_yaml_booleans() -> None:
    assert settings().ssl_verify_client == "off" and settings().ssl_client_certificate == ()
    assert settings(ssl_verify_client="Optional").ssl_verify_client == "optional"
    assert settings(ssl_verify_client=True).ssl_verify_client == "on"  # YAML `on`
    assert settings(ssl_verify_client=False).ssl_verify_client == "off"
    assert settings(ssl_client_certificate="a.pem, b.pem").ssl_client_certificate == ("a.pem", "b.pem")


def test_snapshot_combines_and_warns(cas: tuple[str, str]) -> None:
    server, _ = cas
    snap = build_snapshot(settings(ssl_verify_client="on"), Entities(), client_truststore=[server], now=NOW)
    assert snap.client_auth.require_certificate and "BEGIN CERTIFICATE" in snap.client_auth.anchors_pem
    assert not any("ssl_verify_client" in w or "ssl_client_certificate" in w for w in snap.warnings)
    unused = build_snapshot(settings(), Entities(), client_truststore=[server], now=NOW)
    assert unused.client_auth == NO_CLIENT_AUTH
    assert any("ssl_verify_client is off" in w for w in unused.warnings)
    empty = build_snapshot(settings(ssl_verify_client="optional"), Entities(), now=NOW)
    assert any("nothing is trusted" in w for w in empty.warnings)


# --- which handshakes are asked (asks_for) ------------------------------------------------------

HOSTS = ["secure.example", "*.wild.example", "pre.*", "Port.Example:8443", "Trailing.Example."]


def test_nothing_requested_asks_nobody() -> None:
    for sni in (None, "", "secure.example", "anything.example"):
        assert not NO_CLIENT_AUTH.asks_for(sni)


def test_hosts_none_asks_every_sni(cas: tuple[str, str]) -> None:
    every = ListenerClientAuth.build([cas[1]], partial_chain=False)
    assert every.certificate_hosts is None
    assert all(every.asks_for(sni) for sni in (None, "public.example", "secure.example"))


def test_asks_only_the_hosts_of_routes_needing_a_certificate(cas: tuple[str, str]) -> None:
    auth = ListenerClientAuth.build([cas[1]], partial_chain=False, hosts=HOSTS)
    assert auth.certificate_hosts == {"secure.example", "*.wild.example", "pre.*", "port.example", "trailing.example"}
    asked = ["secure.example", "SECURE.Example.", "a.wild.example", "a.b.wild.example", "pre.x", "pre.x.y",
             "port.example", "trailing.example", None, ""]
    not_asked = ["public.example", "wild.example", "xwild.example", "pre", "pre.", "secure.example.org",
                 "sub.secure.example", "127.0.0.1"]
    assert [sni for sni in asked if not auth.asks_for(sni)] == []
    assert [sni for sni in not_asked if auth.asks_for(sni)] == []


def test_empty_host_set_asks_only_clients_without_sni(cas: tuple[str, str]) -> None:
    auth = ListenerClientAuth.build([cas[1]], partial_chain=False, hosts=[])
    assert auth.asks_for(None) and not auth.asks_for("secure.example")


def test_required_certificates_and_server_verification_ask_every_host(cas: tuple[str, str]) -> None:
    server, route = cas
    required = ListenerClientAuth.build([route], partial_chain=False, hosts=HOSTS, require_certificate=True)
    assert required.certificate_hosts is None and required.asks_for("public.example")
    routes = ListenerClientAuth.build([route], partial_chain=False, hosts=HOSTS)
    assert with_server_verification(routes, "off", [server]).asks_for("secure.example")
    assert not with_server_verification(routes, "off", [server]).asks_for("public.example")
    for mode in ("optional", "on"):
        assert with_server_verification(routes, mode, [server]).asks_for("public.example")


def test_hosts_are_part_of_the_generation(cas: tuple[str, str]) -> None:
    route = cas[1]
    a = ListenerClientAuth.build([route], partial_chain=False, hosts=["a.example", "b.example"])
    assert a == ListenerClientAuth.build([route], partial_chain=False, hosts=["B.example", "a.example:443", "a.example"])
    others = [ListenerClientAuth.build([route], partial_chain=False, hosts=h) for h in (["a.example"], [], None)]
    assert len({a.generation, *(o.generation for o in others)}) == 4
    assert all(o != a for o in others)  # the listener context is replaced
    # ... but what a certificate's context holds is the same: those are not rebuilt.
    assert {o.trust_key for o in others} == {a.trust_key}
    other_trust = ListenerClientAuth.build(cas, partial_chain=False, hosts=["a.example", "b.example"])
    assert other_trust.trust_key != a.trust_key


def test_replace_keeps_the_lookup_consistent(cas: tuple[str, str]) -> None:
    from dataclasses import replace

    auth = ListenerClientAuth.build([cas[1]], partial_chain=False, hosts=["*.wild.example"])
    assert replace(auth, announce_pem=()).asks_for("x.wild.example")
    assert not replace(auth, certificate_hosts=frozenset({"other.example"})).asks_for("x.wild.example")


def test_a_host_the_router_refuses_is_refused(cas: tuple[str, str]) -> None:
    from trio_gw.errors import ConfigError

    with pytest.raises(ConfigError):
        ListenerClientAuth.build([cas[1]], partial_chain=False, hosts=["a.*.example"])


def test_snapshot_records_the_hosts_of_mtls_routes(cas: tuple[str, str]) -> None:
    from trio_gw.model.declarative import parse_declarative

    ca_id = "6b1f2c3d-4e5f-4a6b-8c7d-8e9f0a1b2c3d"
    doc = {"_format_version": "3.0", "ca_certificates": [{"id": ca_id, "cert": cas[1]}],
           "services": [{"name": "s", "url": "http://up.example", "routes": [
               {"name": "secure", "hosts": ["secure.example"], "plugins": [
                   {"name": "mtls-auth", "config": {"ca_certificates": [ca_id]}}]},
               {"name": "public", "hosts": ["public.example"]}]}]}
    snap = build_snapshot(settings(), parse_declarative(doc, now=NOW), now=NOW)
    assert snap.client_auth.certificate_hosts == {"secure.example"}
    assert snap.client_auth.asks_for("secure.example") and not snap.client_auth.asks_for("public.example")
    optional = build_snapshot(settings(ssl_verify_client="optional"), parse_declarative(doc, now=NOW),
                              client_truststore=[cas[0]], now=NOW)
    assert optional.client_auth.asks_for("public.example")
