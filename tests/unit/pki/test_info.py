from __future__ import annotations

import base64
import hashlib

import pytest
import trustme
from cryptography.hazmat.primitives import hashes, serialization

from trio_gw.pki.info import (
    CertificateInfo,
    certificate_id,
    describe_certificate,
    fingerprint_sha256,
    format_timestamp,
    spki_pin,
    unix_seconds,
)
from trio_gw.pki.parse import parse_certificates
from trio_gw.testing.pki import (
    DEFAULT_NOT_AFTER,
    EXPIRED_AT,
    build_certificate,
    ca_without_ca_flag,
    cn_only_leaf,
    expired_leaf,
    make_ca,
    self_signed_leaf,
)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def test_fingerprint_matches_openssl_style_digest(ca: trustme.CA) -> None:
    (cert,) = parse_certificates(ca.cert_pem.bytes())
    der = cert.public_bytes(serialization.Encoding.DER)
    assert fingerprint_sha256(cert) == hashlib.sha256(der).hexdigest()
    assert fingerprint_sha256(cert) == cert.fingerprint(hashes.SHA256()).hex()
    assert certificate_id(cert) == "sha256:" + hashlib.sha256(der).hexdigest()


def test_spki_pin_as_in_tls_stack_notes(ca: trustme.CA) -> None:
    leaf = ca.issue_cert("pin.example")
    (cert,) = parse_certificates(leaf.cert_chain_pems[0].bytes())
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    expected = "sha256//" + base64.b64encode(hashlib.sha256(spki).digest()).decode()
    assert spki_pin(cert) == expected


def test_spki_pin_is_stable_across_reissue_with_same_key() -> None:
    root = make_ca()
    first = build_certificate(issuer=root, dns_names=["a.example"])
    again = build_certificate(issuer=root, key=first.key, dns_names=["b.example"])
    assert spki_pin(first.cert) == spki_pin(again.cert)
    assert fingerprint_sha256(first.cert) != fingerprint_sha256(again.cert)


def test_describe_leaf_with_every_san_kind() -> None:
    root = make_ca(common_name="Root")
    leaf = build_certificate(
        issuer=root,
        common_name="api",
        dns_names=["api.example", "*.api.example"],
        ip_addresses=["10.0.0.1", "::1"],
        uris=["spiffe://example/api"],
        emails=["ops@example.com"],
        not_before=1_000,
        not_after=2_000_000,
    )
    info = describe_certificate(leaf.cert)
    assert info.subject == "CN=api,O=trio-gw tests"
    assert info.issuer == "CN=Root,O=trio-gw tests"
    assert info.common_names == ("api",)
    assert info.dns_names == ("api.example", "*.api.example")
    assert info.ip_addresses == ("10.0.0.1", "::1")
    assert info.uris == ("spiffe://example/api",)
    assert info.emails == ("ops@example.com",)
    assert (info.not_before, info.not_after) == (1_000, 2_000_000)
    assert (info.key_type, info.key_size, info.key_curve) == ("ec", 256, "secp256r1")
    assert not info.is_ca and info.path_length is None and not info.is_self_issued
    assert info.serial == leaf.cert.serial_number
    assert info.serial_hex == format(leaf.cert.serial_number, "x")
    assert info.fingerprint_sha256 == fingerprint_sha256(leaf.cert)


def test_describe_trustme_leaf(ca: trustme.CA) -> None:
    leaf = ca.issue_cert("x.example", "127.0.0.1", key_type=trustme.KeyType.RSA)
    info = describe_certificate(parse_certificates(leaf.cert_chain_pems[0].bytes())[0])
    assert info.dns_names == ("x.example",)
    assert info.ip_addresses == ("127.0.0.1",)
    assert (info.key_type, info.key_size, info.key_curve) == ("rsa", 2048, None)


@pytest.mark.parametrize(("kind", "size"), [("ed25519", 256), ("ed448", 456)])
def test_describe_edwards_keys(kind: str, size: int) -> None:
    info = describe_certificate(self_signed_leaf(key_kind=kind).cert)
    assert (info.key_type, info.key_size, info.key_curve) == (kind, size, None)


def test_describe_ca_and_path_length() -> None:
    info = describe_certificate(make_ca(path_length=1).cert)
    assert info.is_ca and info.path_length == 1 and info.is_self_issued
    assert describe_certificate(make_ca().cert).path_length is None


def test_not_a_ca() -> None:
    assert not describe_certificate(ca_without_ca_flag().cert).is_ca
    assert not describe_certificate(ca_without_ca_flag(basic_constraints=True).cert).is_ca


def test_cn_only_leaf_has_no_san() -> None:
    info = describe_certificate(cn_only_leaf(make_ca()).cert)
    assert info.common_names == ("legacy.example",)
    assert info.dns_names == () and info.ip_addresses == ()


def test_self_signed_leaf() -> None:
    info = describe_certificate(self_signed_leaf("self.example").cert)
    assert info.is_self_issued and not info.is_ca


def _window(not_before: int, not_after: int) -> CertificateInfo:
    return describe_certificate(build_certificate(not_before=not_before, not_after=not_after).cert)


def test_validity_predicates_at_the_bounds() -> None:
    info = _window(1_000, 1_000 + 10 * 86_400)
    assert info.is_not_yet_valid(999) and not info.is_valid_at(999)
    assert info.is_valid_at(1_000) and info.is_valid_at(info.not_after)
    assert not info.is_expired(info.not_after) and info.is_expired(info.not_after + 1)


def test_days_to_expiry_rounds_down_and_goes_negative() -> None:
    info = _window(0, 10 * 86_400)
    assert info.days_to_expiry(0) == 10
    assert info.days_to_expiry(1) == 9
    assert info.days_to_expiry(10 * 86_400) == 0
    assert info.days_to_expiry(10 * 86_400 + 1) == -1


def test_expired_leaf_helper() -> None:
    info = describe_certificate(expired_leaf(make_ca()).cert)
    assert info.not_after == EXPIRED_AT and info.is_expired(EXPIRED_AT + 1)


def test_times_far_from_the_epoch() -> None:
    info = _window(-86_400, DEFAULT_NOT_AFTER)
    assert info.not_before == -86_400
    assert format_timestamp(info.not_before) == "1969-12-31T00:00:00Z"
    assert format_timestamp(DEFAULT_NOT_AFTER) == "3000-01-01T00:00:00Z"
    assert format_timestamp(EXPIRED_AT) == "2024-01-01T00:00:00Z"


def test_unix_seconds_of_datetimes() -> None:
    from datetime import datetime, timezone

    assert unix_seconds(datetime(2024, 1, 1, tzinfo=timezone.utc)) == EXPIRED_AT
    assert unix_seconds(datetime(1, 1, 1, tzinfo=timezone.utc)) == -62_135_596_800


def test_info_is_frozen() -> None:
    info = describe_certificate(make_ca().cert)
    with pytest.raises(AttributeError):
        info.subject = "CN=other"  # type: ignore[misc]


def test_describe_ml_dsa_certificate() -> None:
    mldsa = pytest.importorskip("cryptography.hazmat.primitives.asymmetric.mldsa")
    names = [n for n in dir(mldsa) if n.upper() == "MLDSA65PRIVATEKEY"]
    if not names:
        pytest.skip("this cryptography release has no ML-DSA-65")
    leaf = build_certificate(key=getattr(mldsa, names[0]).generate(), dns_names=["pq.example"])
    (parsed,) = parse_certificates(leaf.cert_pem())
    info = describe_certificate(parsed)
    assert (info.key_type, info.key_curve) == ("ml-dsa-65", None)
    assert info.spki_pin.startswith("sha256//")
