"""mtls-auth: verification, consumer mapping, credentials with rotation windows, errors."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from trio_gw.errors import ConfigError
from trio_gw.plugins.base import Allow, Deny, REGISTRY
from trio_gw.plugins.identity import IDENTITY_HEADERS
from trio_gw.testing.pki import EXPIRED_AT, build_certificate

from .conftest import CA_ID, NOW, OTHER_CA_ID, Pki, document, header, load, request, run


def mtls(**config: Any) -> dict[str, Any]:
    return {"name": "mtls-auth", "config": {"ca_certificates": [CA_ID], **config}}


def fp(cert: Any) -> str:
    return hashlib.sha256(cert.cert_der()).hexdigest()


def test_consumer_by_username_from_cn(pki: Pki) -> None:
    entities = load(document(pki, plugins=[mtls()], consumers=[{"username": "bob", "custom_id": "B-1"}]))
    decision = run(entities, request(pki.bob))
    assert isinstance(decision, Allow) and decision.consumer is not None
    assert decision.consumer.username == "bob"
    assert header(decision, b"x-consumer-username") == b"bob"
    assert header(decision, b"x-consumer-custom-id") == b"B-1"
    assert header(decision, b"x-authenticated-groups") == b"bob"
    assert IDENTITY_HEADERS <= decision.strip_headers


def test_san_is_matched_before_cn(pki: Pki) -> None:
    consumers = [{"username": "alice.clients.example"}, {"username": "alice"}]
    decision = run(load(document(pki, plugins=[mtls()], consumers=consumers)), request(pki.alice))
    assert isinstance(decision, Allow) and decision.consumer and decision.consumer.username == "alice.clients.example"


@pytest.mark.parametrize(
    ("cert", "status", "reason", "message"),
    [
        (None, 401, "no_cert", "No required TLS certificate was sent"),
        ("mallory", 401, "unknown_ca", "TLS certificate failed verification"),
        ("server_only", 401, "bad_eku", "TLS certificate failed verification"),
        ("expired", 401, "expired", "TLS certificate failed verification"),
        ("future", 401, "not_yet_valid", "TLS certificate failed verification"),
        ("carol", 403, "not_allowed", "certificate not allowed"),
    ],
)
def test_refusals_have_stable_reasons(pki: Pki, cert: str | None, status: int, reason: str, message: str) -> None:
    certs = {
        "expired": build_certificate(issuer=pki.ca, common_name="bob", not_before=EXPIRED_AT - 86400,
                                     not_after=EXPIRED_AT),
        "future": build_certificate(issuer=pki.ca, common_name="bob", not_before=NOW + 86400),
        "carol": build_certificate(issuer=pki.ca, common_name="carol"),
    }
    chosen = certs.get(cert or "") or (getattr(pki, cert) if cert else None)
    entities = load(document(pki, plugins=[mtls()], consumers=[{"username": "bob"}]))
    decision = run(entities, request(chosen))
    assert decision == Deny(status, message, reason)


def test_skip_consumer_lookup_and_dn_groups(pki: Pki) -> None:
    entities = load(document(pki, plugins=[mtls(skip_consumer_lookup=True, authenticated_group_by="DN")]))
    decision = run(entities, request(pki.alice))
    assert isinstance(decision, Allow) and decision.consumer is None
    assert header(decision, b"x-authenticated-groups") == b"CN=alice,O=trio-gw tests"
    assert header(decision, b"x-consumer-id") is None


def test_default_consumer_and_anonymous(pki: Pki) -> None:
    consumers = [{"username": "fallback"}, {"username": "anon"}]
    entities = load(document(pki, plugins=[mtls(default_consumer="fallback", anonymous="anon")], consumers=consumers))
    known = run(entities, request(pki.bob))
    assert isinstance(known, Allow) and known.consumer and known.consumer.username == "fallback"
    unknown = run(entities, request(pki.mallory))
    assert isinstance(unknown, Allow) and unknown.consumer and unknown.consumer.username == "anon"
    assert header(unknown, b"x-anonymous-consumer") == b"true"


def test_unknown_consumer_reference_is_refused_at_prepare(pki: Pki) -> None:
    entities = load(document(pki, plugins=[mtls(anonymous="nobody")]))
    with pytest.raises(ConfigError, match="anonymous"):
        run(entities, request(pki.bob))


def test_subject_name_credential_constrained_by_ca(pki: Pki) -> None:
    consumers = [{"username": "svc-a", "mtls_auth_credentials": [{"subject_name": "alice", "ca_certificate": CA_ID}]}]
    entities = load(document(pki, plugins=[mtls(ca_certificates=[CA_ID, OTHER_CA_ID])], consumers=consumers))
    good = run(entities, request(pki.alice))
    assert isinstance(good, Allow) and good.consumer and good.consumer.username == "svc-a"
    assert header(good, b"x-credential-identifier") == good.credential.encode()  # type: ignore[union-attr]
    # Same CN, other CA: the credential does not apply, and nothing else matches.
    assert run(entities, request(pki.mallory)) == Deny(403, "certificate not allowed", "not_allowed")


def test_pinned_self_signed_certificate_needs_no_ca(pki: Pki) -> None:
    consumers = [{"username": "device", "mtls_auth_credentials": [{"certificate": pki.self_signed.cert_pem()}]}]
    entities = load(document(pki, plugins=[{"name": "mtls-auth", "config": {}}], consumers=consumers))
    decision = run(entities, request(pki.self_signed))
    assert isinstance(decision, Allow) and decision.consumer and decision.consumer.username == "device"
    other = build_certificate(common_name="device-8")
    assert run(entities, request(other)).reason == "unknown_ca"  # type: ignore[union-attr]


def test_rotation_windows_and_revocation(pki: Pki) -> None:
    new = build_certificate(issuer=pki.ca, common_name="bob-2025")
    creds = [
        {"fingerprint": f"sha256:{fp(pki.bob)}", "valid_until": NOW + 100},
        {"certificate": new.cert_pem(), "status": "scheduled", "valid_from": NOW + 50},
    ]
    entities = load(document(pki, plugins=[mtls(consumer_by=[])], consumers=[
        {"username": "bob", "mtls_auth_credentials": creds}]))
    assert isinstance(run(entities, request(pki.bob)), Allow)
    assert run(entities, request(new)) == Deny(
        401, "TLS certificate failed verification: its credential is not valid yet", "not_yet_valid")
    later = NOW + 75  # overlap: both work
    assert isinstance(run(entities, request(pki.bob, now=later)), Allow)
    assert isinstance(run(entities, request(new, now=later)), Allow)
    after = NOW + 200
    assert run(entities, request(pki.bob, now=after)).reason == "expired"  # type: ignore[union-attr]
    assert isinstance(run(entities, request(new, now=after)), Allow)
    revoked = load(document(pki, plugins=[mtls()], consumers=[
        {"username": "bob", "mtls_auth_credentials": [{"fingerprint": fp(pki.bob), "status": "revoked"}]}]))
    # A revoked credential does not fall through to consumer_by (bob's username matches the CN).
    assert run(revoked, request(pki.bob)).reason == "revoked"  # type: ignore[union-attr]


def test_certificate_belongs_to_one_consumer(pki: Pki) -> None:
    consumers = [{"username": "a", "mtls_auth_credentials": [{"certificate": pki.bob.cert_pem()}]},
                 {"username": "b", "mtls_auth_credentials": [{"fingerprint": fp(pki.bob)}]}]
    with pytest.raises(ConfigError, match=r"consumers\[1\].mtls_auth_credentials\[0\].certificate: .*already belongs"):
        load(document(pki, plugins=[mtls()], consumers=consumers))


def test_forward_client_cert_rfc9440_and_xfcc(pki: Pki) -> None:
    for fmt, name in (("rfc9440", b"client-cert"), ("xfcc", b"x-forwarded-client-cert")):
        entities = load(document(pki, plugins=[mtls(forward_client_cert=fmt)], consumers=[{"username": "bob"}]))
        decision = run(entities, request(pki.bob))
        assert header(decision, name), fmt


def test_sni_host_mismatch_is_misdirected(pki: Pki) -> None:
    entities = load(document(pki, plugins=[mtls()], consumers=[{"username": "bob"}]))
    decision = run(entities, request(pki.bob, sni="other.example"))
    assert isinstance(decision, Deny) and (decision.status, decision.reason) == (421, "sni_host_mismatch")


def test_require_subscription(pki: Pki) -> None:
    consumers: list[dict[str, Any]] = [
        {"username": "bob"}, {"username": "alice", "subscriptions": [{"service": "billing"}]}]
    entities = load(document(pki, plugins=[mtls(require_subscription=True)], consumers=consumers))
    assert run(entities, request(pki.bob)) == Deny(403, "no active subscription to this API", "no_subscription")
    assert isinstance(run(entities, request(pki.alice)), Allow)
    ended = load(document(pki, plugins=[mtls(require_subscription=True)], consumers=[
        {"username": "alice", "subscriptions": [{"service": "billing", "status": "revoked"}]}]))
    assert run(ended, request(pki.alice)).reason == "no_subscription"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("config", "where"),
    [
        ({"consumer_by": ["email"]}, "consumer_by[0]"),
        ({"authenticated_group_by": "OU"}, "authenticated_group_by"),
        ({"revocation_check_mode": "sometimes"}, "revocation_check_mode"),
        ({"forward_client_cert": "pem"}, "forward_client_cert"),
        ({"ca_certificates": ["not-a-uuid"]}, "ca_certificates[0]"),
        ({"http_proxy_host": "x"}, "http_proxy_host"),
    ],
)
def test_bad_config_is_refused_with_a_path(config: dict[str, Any], where: str) -> None:
    with pytest.raises(ConfigError) as info:
        REGISTRY["mtls-auth"].parse_config(config, "")
    assert where in [p.path for p in info.value.problems]


def test_parsed_config_round_trips(pki: Pki) -> None:
    parse = REGISTRY["mtls-auth"].parse_config
    once = parse({"ca_certificates": [CA_ID]}, "")
    assert parse(once, "") == once
    assert once["revocation_check_mode"] == "IGNORE_CA_ERROR" and once["consumer_by"] == ["username", "custom_id"]
