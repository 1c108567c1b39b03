"""Kong's acme config, the renewal plan, backoff and the challenge building blocks (trio_gw.tls.acme)."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import given
from hypothesis import strategies as st

from trio_gw.errors import ConfigError
from trio_gw.testing.pki import issue, make_ca
from trio_gw.tls.acme import (
    ACME_FIELDS,
    ACME_IDENTIFIER_OID,
    LETSENCRYPT_DIRECTORY,
    AcmeAction,
    AcmeConfig,
    AcmeFailure,
    build_csr,
    build_tls_alpn01_certificate,
    generate_certificate_key,
    http01_token,
    is_domain_allowed,
    wants_certificate,
    key_authorization,
    offers_acme_tls,
    parse_acme_config,
    parse_alpn_extension,
    plan_certificate,
    select_preferred_chain,
)

NOW = 1_800_000_000
DAY = 86400
TOKEN = "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA"


def config(**raw: Any) -> AcmeConfig:
    return parse_acme_config({"account_email": "ops@example.com", "tos_accepted": True, **raw})


def problems(raw: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_acme_config(raw, "plugins[0].config")
    return [str(p) for p in info.value.problems]


def test_kong_defaults() -> None:
    c = parse_acme_config({"account_email": "ops@example.com", "api_uri": "https://ca.example/dir"})
    assert (c.tos_accepted, c.cert_type, c.rsa_key_size, c.renew_threshold_days) == (False, "rsa", 4096, 14)
    assert config().api_uri == LETSENCRYPT_DIRECTORY
    assert (c.domains, c.allow_any_domain, c.fail_backoff_minutes, c.eab_kid, c.preferred_chain) == (
        (), False, 5, None, None)


def test_full_config() -> None:
    c = config(api_uri="https://127.0.0.1:14000/dir", tos_accepted=True, cert_type="ecc", rsa_key_size=2048,
               renew_threshold_days=30, domains=["API.example.com", "*.example.org."], fail_backoff_minutes=1,
               eab_kid="kid-1", eab_hmac_key="zWNDZM6eQGHW", preferred_chain="ISRG Root X1", storage="shm")
    assert c.domains == ("api.example.com", "*.example.org") and c.cert_type == "ecc" and c.eab_kid == "kid-1"


@pytest.mark.parametrize("raw, expected", [
    ({"tos_accepted": True}, ["plugins[0].config.account_email: required field missing"]),
    ({"account_email": "nobody", "tos_accepted": True}, ["plugins[0].config.account_email: expected an email address"]),
    ({"account_email": "a@b.example", "tos_accepted": True, "cert_type": "dsa"},
     ["plugins[0].config.cert_type: expected one of 'rsa', 'ecc', got 'dsa'"]),
    ({"account_email": "a@b.example", "tos_accepted": True, "rsa_key_size": 1024},
     ["plugins[0].config.rsa_key_size: expected one of 2048, 3072, 4096, got 1024"]),
    ({"account_email": "a@b.example", "tos_accepted": True, "domains": ["bad domain"]},
     ["plugins[0].config.domains[0]: expected a host name or *.domain"]),
    ({"account_email": "a@b.example", "tos_accepted": True, "eab_kid": "kid-1"},
     ["plugins[0].config.eab_hmac_key: eab_kid and eab_hmac_key are set together (external account binding)"]),
    ({"account_email": "a@b.example", "tos_accepted": True, "api_uri": "ftp://x"},
     ["plugins[0].config.api_uri: expected the ACME directory URL (https://...)"]),
    ({"account_email": "a@b.example", "tos_accepted": True, "eab_kid": "k", "eab_hmac_key": "not base64!"},
     ["plugins[0].config.eab_hmac_key: expected the base64url-encoded HMAC key the CA gave"]),
    ({"account_email": "a@b.example", "tos_accepted": True, "storage": "redis"},
     ["plugins[0].config.storage: 'redis' is not supported yet (supported: kong, shm)"]),
    ({"account_email": "a@b.example", "tos_accepted": True, "renew_threshold_days": -1},
     ["plugins[0].config.renew_threshold_days: expected an integer between 0 and 365, got -1"]),
    ({"account_email": "a@b.example"},
     ["plugins[0].config.tos_accepted: terms of service must be accepted, see https://letsencrypt.org/repository/"]),
    ({"account_email": "a@b.example", "tos_accepted": True, "storage_config": "redis"},
     ["plugins[0].config.storage_config: expected a mapping, got 'redis'"]),
    ({"account_email": "a@b.example", "tos_accepted": True, "acount_key": {}},
     ["plugins[0].config.acount_key: unknown field (did you mean 'account_email'?)"]),
])
def test_config_errors_name_the_key(raw: dict[str, Any], expected: list[str]) -> None:
    found = problems(raw)
    assert [f.split(" (did you mean")[0] for f in found] == [e.split(" (did you mean")[0] for e in expected]


def test_the_eab_key_never_shows_in_repr() -> None:
    c = config(eab_kid="kid-1", eab_hmac_key="c2VjcmV0LWtleQ")
    assert "c2VjcmV0LWtleQ" not in repr(c) and "***" in repr(c)


@pytest.mark.parametrize("host, allowed", [
    ("example.com", True), ("a.example.org", True), ("A.Example.Org.", True), ("a.b.example.org", False),
    ("example.org", False), ("other.com", False), ("*.example.org", False), ("", False),
])
def test_domain_matching(host: str, allowed: bool) -> None:
    assert is_domain_allowed(config(domains=["example.com", "*.example.org"]), host) is allowed


def test_allow_any_domain() -> None:
    assert is_domain_allowed(config(allow_any_domain=True), "anything.example")
    assert not is_domain_allowed(config(allow_any_domain=True), "not a host")


def test_a_handshake_wants_a_certificate_only_for_listed_domains() -> None:
    listed = config(domains=["*.example.org"])
    assert wants_certificate(listed, "a.example.org") and not wants_certificate(listed, "other.com")
    anything = config(allow_any_domain=True)  # anyone could invent names: POST /acme only
    assert is_domain_allowed(anything, "a.example.org") and not wants_certificate(anything, "a.example.org")
    both = config(allow_any_domain=True, domains=["*.example.org"])
    assert wants_certificate(both, "a.example.org") and not wants_certificate(both, "x.other.com")
    assert not wants_certificate(config(domains=["127.0.0.1"]), "127.0.0.1")
    assert config(challenge="tls-alpn-01").challenge == "tls-alpn-01" and config().challenge == "http-01"
    assert problems({"account_email": "a@b.c", "challenge": "dns-01"})[0].startswith("plugins[0].config.challenge")


def test_plan() -> None:
    c = config(domains=["a.example"], renew_threshold_days=14, fail_backoff_minutes=5)
    plan = lambda **kw: plan_certificate(c, "a.example", **{"last_failure": None, "now": NOW, **kw})  # noqa: E731
    assert plan(not_after=None).action is AcmeAction.ISSUE
    assert plan(not_after=NOW + 30 * DAY).action is AcmeAction.NOTHING
    assert plan(not_after=NOW + 30 * DAY).check_at == NOW + 16 * DAY
    assert plan(not_after=NOW + 14 * DAY).action is AcmeAction.RENEW
    assert plan(not_after=NOW - DAY).action is AcmeAction.RENEW
    failed = AcmeFailure("a.example", NOW - 60, "challenge_failed")
    assert plan(not_after=None, last_failure=failed).action is AcmeAction.WAIT
    waiting = plan(not_after=NOW + DAY, last_failure=failed)
    assert (waiting.action, waiting.reason, waiting.check_at) == (AcmeAction.WAIT, "backing_off", NOW + 240)
    assert plan(not_after=None, now=NOW + 240, last_failure=failed).action is AcmeAction.ISSUE
    assert plan_certificate(c, "b.example", not_after=None, last_failure=None, now=NOW).reason == "domain_not_allowed"


@given(st.none() | st.integers(NOW - 400 * DAY, NOW + 400 * DAY), st.none() | st.integers(NOW - 3 * DAY, NOW),
       st.integers(0, 365), st.integers(0, 600))
def test_plan_properties(not_after: int | None, failed_at: int | None, threshold: int, backoff: int) -> None:
    c = config(domains=["a.example"], renew_threshold_days=threshold, fail_backoff_minutes=backoff)
    failure = AcmeFailure("a.example", failed_at, "x") if failed_at is not None else None
    plan = plan_certificate(c, "a.example", not_after=not_after, last_failure=failure, now=NOW)
    in_backoff = failed_at is not None and NOW < failed_at + backoff * 60
    due = not_after is None or NOW >= not_after - threshold * DAY
    if plan.action in (AcmeAction.ISSUE, AcmeAction.RENEW):
        assert due and not in_backoff  # never contacts the CA early, or while backing off
    if due and not in_backoff:
        assert plan.action is (AcmeAction.ISSUE if not_after is None else AcmeAction.RENEW)
    if plan.check_at is not None:
        assert plan.check_at > NOW


def test_key_authorization_agrees_with_the_acme_library() -> None:
    from acme import challenges
    from cryptography.hazmat.primitives import hashes
    from josepy.jwk import JWKRSA

    jwk = JWKRSA(key=rsa.generate_private_key(public_exponent=65537, key_size=2048))
    chall = challenges.HTTP01(token=challenges.HTTP01.TOKEN_SIZE * b"\x01")
    expected = chall.key_authorization(jwk)
    assert key_authorization(chall.encode("token"), jwk.thumbprint(hash_function=hashes.SHA256)) == expected
    with pytest.raises(ValueError):
        key_authorization("short", b"x")


@pytest.mark.parametrize("target, token", [
    (f"/.well-known/acme-challenge/{TOKEN}", TOKEN),
    (f"/.well-known/acme-challenge/{TOKEN}?x=1", TOKEN),
    ("/.well-known/acme-challenge/", None),
    ("/.well-known/acme-challenge/../etc/passwd", None),
    (f"/.well-known/acme-challenge/{TOKEN}/x", None),
    (f"/other/{TOKEN}", None),
])
def test_http01_token(target: str, token: str | None) -> None:
    assert http01_token(target) == token


def encode_alpn(names: list[bytes]) -> bytes:
    body = b"".join(bytes([len(n)]) + n for n in names)
    return len(body).to_bytes(2, "big") + body


@given(st.lists(st.binary(min_size=1, max_size=40), max_size=6))
def test_alpn_extension_round_trip(names: list[bytes]) -> None:
    assert parse_alpn_extension(encode_alpn(names)) == tuple(n.decode("latin-1") for n in names)


@pytest.mark.parametrize("data", [b"", b"\x00", b"\x00\x05\x03abc", b"\x00\x01\x00", b"\x00\x03\x05ab"])
def test_malformed_alpn_extension(data: bytes) -> None:
    assert parse_alpn_extension(data) == ()


def test_offers_acme_tls() -> None:
    assert offers_acme_tls(parse_alpn_extension(encode_alpn([b"acme-tls/1"])))
    assert not offers_acme_tls(parse_alpn_extension(encode_alpn([b"h2", b"http/1.1"])))


def test_tls_alpn01_certificate_is_rfc8737() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = build_tls_alpn01_certificate("a.example", f"{TOKEN}.thumb", key, now=NOW)
    ext = cert.extensions.get_extension_for_oid(ACME_IDENTIFIER_OID)
    assert ext.critical
    assert ext.value.value == b"\x04\x20" + hashlib.sha256(f"{TOKEN}.thumb".encode()).digest()  # type: ignore[attr-defined]
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["a.example"]
    cert.verify_directly_issued_by(cert)


def test_keys_and_csr() -> None:
    assert isinstance(generate_certificate_key("ecc"), ec.EllipticCurvePrivateKey)
    key = generate_certificate_key("rsa", 2048)
    assert isinstance(key, rsa.RSAPrivateKey) and key.key_size == 2048
    csr = x509.load_pem_x509_csr(build_csr(key, ["a.example", "b.example"]))
    assert csr.is_signature_valid
    assert csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName) == ["a.example", "b.example"]


def test_preferred_chain() -> None:
    root_a, root_b = make_ca(common_name="Root A"), make_ca(common_name="Root B")
    leaf_a, leaf_b = issue(root_a, "x.example"), issue(root_b, "x.example")
    chains = [leaf_a.cert_pem(), leaf_b.cert_pem()]
    assert select_preferred_chain(chains, "Root B") == chains[1]
    assert select_preferred_chain(chains, "Root C") == chains[0]
    assert select_preferred_chain(chains, None) == chains[0]
    with pytest.raises(ValueError):
        select_preferred_chain([], "Root A")


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                                         max_size=3), max_leaves=6)


@given(st.dictionaries(st.sampled_from([*ACME_FIELDS, "other"]), json_values, max_size=8))
def test_any_config_gives_a_config_or_config_error(raw: dict[str, Any]) -> None:
    """Invariant of every reader: a value, or ConfigError with a path per problem; nothing else."""
    try:
        parse_acme_config(raw, "config")
    except ConfigError as exc:
        assert all(p.path.startswith("config") for p in exc.problems)
