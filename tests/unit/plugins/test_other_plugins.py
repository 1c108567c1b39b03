"""mtls-allowlist, header-cert-auth, key-auth binding, listener requirements, framework."""

from __future__ import annotations

import base64
import hashlib
import urllib.parse
from typing import Any

import pytest

from trio_gw.errors import ConfigError
from trio_gw.model.declarative import dump_declarative
from trio_gw.plugins.base import Allow, Deny, plugin_warnings
from trio_gw.plugins.requirements import client_cert_requirements
from trio_gw.testing.pki import EXPIRED_AT, build_certificate

from .conftest import CA_ID, OTHER_CA_ID, Pki, document, header, load, request, run


def fp(cert: Any) -> str:
    return hashlib.sha256(cert.cert_der()).hexdigest()


# -- mtls-allowlist ----------------------------------------------------------------------


def allowlist(*entries: str) -> dict[str, Any]:
    return {"name": "mtls-allowlist", "config": {"certificates": list(entries)}}


def test_allowlist_by_fingerprint_and_by_ca(pki: Pki) -> None:
    entities = load(document(pki, plugins=[allowlist(f"sha256:{fp(pki.self_signed)}", OTHER_CA_ID)]))
    assert isinstance(run(entities, request(pki.self_signed)), Allow)
    assert isinstance(run(entities, request(pki.mallory)), Allow)  # issued by the listed CA
    assert run(entities, request(pki.bob)) == Deny(403, "certificate not allowed", "not_allowed")
    assert run(entities, request(None)) == Deny(401, "No required TLS certificate was sent", "no_cert")
    expired = build_certificate(issuer=pki.other_ca, common_name="old", not_before=EXPIRED_AT - 9, not_after=EXPIRED_AT)
    assert run(entities, request(expired)).reason == "expired"  # type: ignore[union-attr]


def test_allowlist_refuses_a_host_other_than_the_sni(pki: Pki) -> None:
    """Regression: a route needing a client certificate answers 421 when Host and SNI disagree
    (docs/architecture.md secure defaults); mtls-allowlist did not check it, only mtls-auth did."""
    entities = load(document(pki, plugins=[allowlist(f"sha256:{fp(pki.self_signed)}")]))
    refused = run(entities, request(pki.self_signed, host="other.example"))
    assert isinstance(refused, Deny) and (refused.status, refused.reason) == (421, "sni_host_mismatch")
    assert isinstance(run(entities, request(pki.self_signed, host="api.example")), Allow)
    assert isinstance(run(entities, request(pki.self_signed, sni=None, host="other.example")), Allow)


def test_allowlist_unknown_id_is_refused(pki: Pki) -> None:
    entities = load(document(pki, plugins=[allowlist("5c7d6b8e-8f2c-4a5e-9a4b-2f9f6a8d3c11")]))
    with pytest.raises(ConfigError, match=r"certificates\[0\]"):
        run(entities, request(pki.bob))


def test_allowlist_config_errors() -> None:
    from trio_gw.plugins.base import REGISTRY

    with pytest.raises(ConfigError):
        REGISTRY["mtls-allowlist"].parse_config({"certificates": ["nope"]}, "")
    with pytest.raises(ConfigError):
        REGISTRY["mtls-allowlist"].parse_config({}, "")


# -- header-cert-auth --------------------------------------------------------------------


def hca(**config: Any) -> dict[str, Any]:
    base = {"ca_certificates": [CA_ID], "certificate_header_name": "X-Client-Cert",
            "certificate_header_format": "base64_encoded"}
    return {"name": "header-cert-auth", "config": {**base, **config}}


def b64(cert: Any) -> bytes:
    return base64.b64encode(cert.cert_der())


def test_header_from_trusted_source_authenticates(pki: Pki) -> None:
    entities = load(document(pki, plugins=[hca()], consumers=[{"username": "bob"}]))
    decision = run(entities, request(tls=False, sni=None, trusted=True, headers=[(b"x-client-cert", b64(pki.bob))]))
    assert isinstance(decision, Allow) and decision.consumer and decision.consumer.username == "bob"
    assert b"x-client-cert" in decision.strip_headers


def test_header_from_elsewhere_is_ignored(pki: Pki) -> None:
    entities = load(document(pki, plugins=[hca()], consumers=[{"username": "bob"}]))
    decision = run(entities, request(tls=False, sni=None, trusted=False, headers=[(b"x-client-cert", b64(pki.bob))]))
    assert decision == Deny(401, "No required TLS certificate was sent", "no_cert")
    open_ = load(document(pki, plugins=[hca(secure_source=False)], consumers=[{"username": "bob"}]))
    assert isinstance(run(open_, request(tls=False, sni=None, headers=[(b"x-client-cert", b64(pki.bob))])), Allow)


def test_tls_certificate_wins_over_header(pki: Pki) -> None:
    entities = load(document(pki, plugins=[hca()], consumers=[{"username": "bob"}]))
    decision = run(entities, request(pki.mallory, trusted=True, headers=[(b"x-client-cert", b64(pki.bob))]))
    assert decision.reason == "unknown_ca"  # type: ignore[union-attr]


def test_header_formats(pki: Pki) -> None:
    pem = urllib.parse.quote(pki.bob.cert_pem()).encode()
    for fmt, value in (("url_encoded", pem), ("rfc9440", b":" + b64(pki.bob) + b":"),
                       ("xfcc", b'Hash=x;Cert="' + pem + b'"')):
        entities = load(document(pki, plugins=[hca(certificate_header_format=fmt)], consumers=[{"username": "bob"}]))
        decision = run(entities, request(tls=False, sni=None, trusted=True, headers=[(b"x-client-cert", value)]))
        if fmt == "xfcc":  # a Hash that is not the certificate's is refused
            assert decision.reason == "bad_certificate"  # type: ignore[union-attr]
        else:
            assert isinstance(decision, Allow), fmt


def test_unreadable_header_is_bad_certificate(pki: Pki) -> None:
    entities = load(document(pki, plugins=[hca()]))
    decision = run(entities, request(tls=False, sni=None, trusted=True, headers=[(b"x-client-cert", b"garbage!")]))
    assert isinstance(decision, Deny) and (decision.status, decision.reason) == (401, "bad_certificate")


def test_header_cert_auth_requires_header_settings() -> None:
    from trio_gw.plugins.base import REGISTRY

    with pytest.raises(ConfigError) as info:
        REGISTRY["header-cert-auth"].parse_config({}, "")
    assert {p.path for p in info.value.problems} == {"certificate_header_name", "certificate_header_format"}


# -- key-auth with certificate binding -----------------------------------------------------


def keyed(pki: Pki, **config: Any) -> Any:
    consumers = [{"username": "bob", "keyauth_credentials": [
        {"key": "plain-key"}, {"key": "bound-key", "bound_certificates": [f"sha256:{fp(pki.bob)}"]}]}]
    return load(document(pki, plugins=[{"name": "key-auth", "config": config}], consumers=consumers))


def test_key_auth_header_and_query(pki: Pki) -> None:
    entities = keyed(pki)
    by_header = run(entities, request(headers=[(b"apikey", b"plain-key")]))
    assert isinstance(by_header, Allow) and by_header.consumer and by_header.consumer.username == "bob"
    assert isinstance(run(entities, request(query="apikey=plain-key")), Allow)
    assert run(entities, request()).reason == "no_key"  # type: ignore[union-attr]
    assert run(entities, request(headers=[(b"apikey", b"nope")])).reason == "invalid_key"  # type: ignore[union-attr]


def test_bound_key_needs_its_certificate(pki: Pki) -> None:
    entities = keyed(pki)
    assert isinstance(run(entities, request(pki.bob, headers=[(b"apikey", b"bound-key")])), Allow)
    for cert in (None, pki.alice):
        decision = run(entities, request(cert, headers=[(b"apikey", b"bound-key")]))
        assert isinstance(decision, Deny) and (decision.status, decision.reason) == (401, "binding_mismatch")


def test_bound_key_on_a_connection_for_another_host_is_misdirected(pki: Pki) -> None:
    # The connection was opened for public.example, whose handshake asked for no
    # certificate: 421 sends the client to a connection of its own, not 401.
    entities = keyed(pki)
    on_other = request(headers=[(b"apikey", b"bound-key")], sni="public.example", host="api.example")
    decision = run(entities, on_other)
    assert isinstance(decision, Deny) and (decision.status, decision.reason) == (421, "sni_host_mismatch")
    # With the right certificate the key is accepted whatever the connection (nothing to retry).
    assert isinstance(run(entities, request(pki.bob, headers=[(b"apikey", b"bound-key")], sni="public.example")),
                      Allow)
    # A plain key never depends on the connection.
    assert isinstance(run(entities, request(headers=[(b"apikey", b"plain-key")], sni="public.example")), Allow)


def test_unsafe_token_only_mode_is_reported(pki: Pki) -> None:
    entities = keyed(pki)
    unsafe = {"allow_unsafe_dynamic_mtls_token": True}
    assert isinstance(run(entities, request(headers=[(b"apikey", b"bound-key")]), unsafe), Allow)
    # Another client's certificate is still refused.
    assert run(entities, request(pki.alice, headers=[(b"apikey", b"bound-key")]), unsafe).reason == "binding_mismatch"  # type: ignore[union-attr]
    assert plugin_warnings(entities, unsafe) and not plugin_warnings(entities, {})


def test_hide_credentials_strips_the_key_header(pki: Pki) -> None:
    decision = run(keyed(pki, hide_credentials=True), request(headers=[(b"apikey", b"plain-key")]))
    assert isinstance(decision, Allow) and b"apikey" in decision.strip_headers


# -- listener requirements -------------------------------------------------------------------


def test_requirements_union_and_digest(pki: Pki) -> None:
    none = client_cert_requirements(load(document(pki)))
    assert not none.request_certificate and none.anchors_pem == ""
    consumers = [{"username": "d", "mtls_auth_credentials": [{"certificate": pki.self_signed.cert_pem()}]}]
    doc = document(pki, plugins=[{"name": "mtls-auth", "config": {"ca_certificates": [CA_ID]}}], consumers=consumers)
    first = client_cert_requirements(load(doc))
    assert first.request_certificate and first.anchors_pem.count("BEGIN CERTIFICATE") == 2
    assert not first.partial_chain
    pinned = document(pki, plugins=[allowlist(f"sha256:{fp(pki.bob)}", OTHER_CA_ID)])
    second = client_cert_requirements(load(pinned))
    assert second.request_certificate and second.anchors_pem.count("BEGIN CERTIFICATE") == 1
    assert first.generation != second.generation
    assert client_cert_requirements(load(doc)).generation == first.generation
    leaf_id = "3f0e9a52-7d4e-4f7b-9c55-0d4c3b2a1f00"
    leaf = document(pki, plugins=[allowlist(leaf_id)], certificates=[
        {"id": leaf_id, "cert": pki.alice.cert_pem(), "key": pki.alice.key_pem()}])
    assert client_cert_requirements(load(leaf)).partial_chain  # a CA-issued leaf pinned as an anchor


# -- declarative and framework --------------------------------------------------------------


def test_credentials_survive_dump_and_load(pki: Pki) -> None:
    consumers = [{"username": "bob", "mtls_auth_credentials": [
        {"certificate": pki.bob.cert_pem(), "valid_from": 10, "status": "scheduled"}, {"subject_name": "bob"}],
        "keyauth_credentials": [{"key": "k", "bound_certificates": [fp(pki.bob)]}],
        "subscriptions": [{"service": "billing"}]}]
    entities = load(document(pki, consumers=consumers))
    assert len(entities.credentials) == 4
    again = load(dump_declarative(entities, include_keys=True))
    assert again.credentials == entities.credentials


@pytest.mark.parametrize(
    ("cred", "where"),
    [
        ({}, "consumers[0].mtls_auth_credentials[0]"),
        ({"subject_name": "x", "fingerprint": "ab" * 32}, "consumers[0].mtls_auth_credentials[0].subject_name"),
        ({"fingerprint": "abc"}, "consumers[0].mtls_auth_credentials[0].fingerprint"),
        ({"subject_name": "x", "status": "paused"}, "consumers[0].mtls_auth_credentials[0].status"),
        ({"subject_name": "x", "valid_from": 5, "valid_until": 4}, "consumers[0].mtls_auth_credentials[0].valid_until"),
        ({"subject_name": "x", "ca_certificate": "9d4b1f0e-1c4c-4ad4-8f3c-1b2f3e4d5a6b"},
         "consumers[0].mtls_auth_credentials[0].ca_certificate"),
    ],
)
def test_credential_problems_have_paths(pki: Pki, cred: dict[str, Any], where: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(document(pki, consumers=[{"username": "a", "mtls_auth_credentials": [cred]}]))
    assert where in [p.path for p in info.value.problems]


def test_ssl_plugin_still_works(pki: Pki) -> None:
    entities = load(document(pki, plugins=[{"name": "ssl", "config": {"only_https": True}}]))
    assert run(entities, request(tls=False, sni=None)).reason == "https_required"  # type: ignore[union-attr]


def test_crl_fetch_settings_take_the_strictest_plugin() -> None:
    from trio_gw.model.entities import Entities, Plugin
    from trio_gw.plugins.crl_cache import crl_fetch_settings

    assert crl_fetch_settings(Entities()) == (60.0, 30.0)  # Kong's defaults
    plugins = {
        "a": Plugin(id="a", name="mtls-auth", config={"cert_cache_ttl": 120000, "http_timeout": 5000}),
        "b": Plugin(id="b", name="header-cert-auth", config={"cert_cache_ttl": 30000, "http_timeout": 9000}),
        "c": Plugin(id="c", name="mtls-auth", config={"cert_cache_ttl": 1000}, enabled=False),
        "d": Plugin(id="d", name="ssl", config={}),
    }
    assert crl_fetch_settings(Entities(plugins=plugins)) == (30.0, 5.0)
