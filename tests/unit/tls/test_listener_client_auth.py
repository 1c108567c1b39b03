"""The server-level truststore (ssl_verify_client / ssl_client_certificate) combined with the routes' needs."""

from __future__ import annotations

from typing import Any

import pytest

from trio_gw.runtime.settings import parse_settings
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
