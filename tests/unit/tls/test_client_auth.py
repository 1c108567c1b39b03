"""Client-certificate verification (trio_gw.tls.client_auth).

Every rejected case sits next to a passing one that differs only in the
property under test.
"""

from __future__ import annotations

from typing import Any
from collections.abc import Sequence
from datetime import datetime, timedelta

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID

from trio_gw.errors import CertificateError, ConfigError
from trio_gw.testing.pki import (
    EXPIRED_AT,
    Issued,
    build_certificate,
    chain_of_depth,
    cn_only_leaf,
    expired_leaf,
    issue,
    make_ca,
    not_yet_valid_leaf,
    self_signed_leaf,
)
from trio_gw.tls.client_auth import (
    MAX_CERT_SIZE,
    MAX_DEPTH_LIMIT,
    MAX_PRESENTED_CERTS,
    ClientCertPolicy,
    ClientCertReason,
    ClientCertRejected,
    ClientCertResult,
    _classify,
    verify_client_certificate,
)
from trio_gw.tls.revocation import RevocationCheckMode, RevocationStatus

from .conftest import NOW, MakeCrl

R = ClientCertReason
ROOT = make_ca(common_name="client root")
OTHER_ROOT = make_ca(common_name="other client root")


def der(issued: Issued | x509.Certificate) -> bytes:
    cert = issued.cert if isinstance(issued, Issued) else issued
    return cert.public_bytes(Encoding.DER)


def verify(
    leaf: Issued,
    chain: Sequence[Issued] = (),
    policy: ClientCertPolicy | None = None,
    *,
    now: datetime = NOW,
    crls: Sequence[x509.CertificateRevocationList] = (),
) -> ClientCertResult:
    policy = policy or ClientCertPolicy([ROOT.cert])
    return verify_client_certificate(
        der(leaf), [der(c) for c in chain], policy, now=now, crls=crls
    )


def reason_of(
    leaf: Issued,
    chain: Sequence[Issued] = (),
    policy: ClientCertPolicy | None = None,
    **kw: object,
) -> ClientCertReason:
    with pytest.raises(ClientCertRejected) as info:
        verify(leaf, chain, policy, **kw)  # type: ignore[arg-type]
    return info.value.reason


# -- the passing case and its result --------------------------------------------


def test_accepts_and_describes_the_client() -> None:
    leaf = build_certificate(
        issuer=ROOT,
        common_name="alice",
        dns_names=["alice.example"],
        emails=["alice@example.org"],
        uris=["spiffe://corp/alice"],
        ip_addresses=["10.0.0.7"],
    )
    result = verify(leaf)
    assert result.subject == "CN=alice,O=trio-gw tests"
    assert result.common_name == "alice"
    assert result.issuer == ROOT.cert.subject.rfc4514_string()
    assert result.info.dns_names == ("alice.example",)
    assert result.info.emails == ("alice@example.org",)
    assert result.info.uris == ("spiffe://corp/alice",)
    assert result.info.ip_addresses == ("10.0.0.7",)
    assert result.fingerprint_sha256 == leaf.cert.fingerprint(hashes.SHA256()).hex()
    assert result.chain_der == (der(leaf), der(ROOT))
    assert result.revocation == ()


def test_no_certificate() -> None:
    policy = ClientCertPolicy([ROOT.cert])
    for missing in (None, b""):
        with pytest.raises(ClientCertRejected) as info:
            verify_client_certificate(missing, [], policy, now=NOW)
        assert info.value.reason is R.NO_CERT
        assert info.value.error_status_hint == 401
        assert isinstance(info.value, CertificateError)


def test_naive_time_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        verify(issue(ROOT, "a.example"), now=NOW.replace(tzinfo=None))


# -- trust ------------------------------------------------------------------------


def test_wrong_ca_beside_right_ca() -> None:
    assert verify(issue(ROOT, "ok.example")).chain_der[-1] == der(ROOT)
    assert reason_of(issue(OTHER_ROOT, "ok.example")) is R.UNKNOWN_CA


def test_same_issuer_name_other_key_is_unknown_ca() -> None:
    impostor = make_ca(common_name="client root")
    assert reason_of(issue(impostor, "x.example")) is R.UNKNOWN_CA


def test_untrusted_and_expired_reports_unknown_ca_first() -> None:
    # As OpenSSL: trust is decided before validity.
    assert reason_of(expired_leaf(OTHER_ROOT)) is R.UNKNOWN_CA
    assert reason_of(expired_leaf(ROOT)) is R.EXPIRED


def test_trustme_client_certificate_with_critical_san() -> None:
    ca = trustme.CA()
    client = ca.issue_cert("client@example.org", common_name="client one")
    anchor = x509.load_pem_x509_certificate(ca.cert_pem.bytes())
    policy = ClientCertPolicy([anchor])
    leaf = x509.load_pem_x509_certificate(client.cert_chain_pems[0].bytes())
    assert leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).critical
    result = verify_client_certificate(
        der(leaf), [], policy, now=datetime.now().astimezone()
    )
    assert result.info.emails == ("client@example.org",)
    other = ClientCertPolicy([ROOT.cert])
    with pytest.raises(ClientCertRejected) as info:
        verify_client_certificate(der(leaf), [], other, now=datetime.now().astimezone())
    assert info.value.reason is R.UNKNOWN_CA


# -- validity ----------------------------------------------------------------------


def test_expired_and_not_yet_valid_beside_valid() -> None:
    assert verify(issue(ROOT, "valid.example"))
    assert reason_of(expired_leaf(ROOT)) is R.EXPIRED
    assert reason_of(not_yet_valid_leaf(ROOT)) is R.NOT_YET_VALID


def test_validity_bounds_are_inclusive() -> None:
    leaf = expired_leaf(ROOT)
    last = leaf.cert.not_valid_after_utc
    assert verify(leaf, now=last)
    assert reason_of(leaf, now=last + timedelta(seconds=1)) is R.EXPIRED


def test_expired_intermediate_or_root() -> None:
    inter = make_ca(
        issuer=ROOT, common_name="expired intermediate", not_after=EXPIRED_AT
    )
    assert reason_of(issue(inter, "x.example"), [inter]) is R.EXPIRED
    old_root = make_ca(common_name="expired root", not_after=EXPIRED_AT)
    assert (
        reason_of(
            issue(old_root, "x.example"), policy=ClientCertPolicy([old_root.cert])
        )
        is R.EXPIRED
    )
    young = make_ca(
        common_name="future intermediate", issuer=ROOT, not_before=4_102_444_800
    )
    assert reason_of(issue(young, "x.example"), [young]) is R.NOT_YET_VALID


# -- real-world certificate shapes ------------------------------------------------------


def test_cn_only_certificate_is_accepted() -> None:
    result = verify(cn_only_leaf(ROOT, "legacy-client"))
    assert (result.common_name, result.info.dns_names) == ("legacy-client", ())


def test_self_signed_client_certificate_pinned_as_anchor() -> None:
    pinned = self_signed_leaf("device.example")
    policy = ClientCertPolicy([ROOT.cert, pinned.cert])
    assert verify(pinned, policy=policy).chain_der == (der(pinned),)
    assert reason_of(self_signed_leaf("device.example")) is R.UNKNOWN_CA


def test_openssl_req_x509_style_client_certificate() -> None:
    # `openssl req -x509` (default config) makes CA:TRUE client certs.
    cert = build_certificate(common_name="req-x509", is_ca=True)
    assert verify(cert, policy=ClientCertPolicy([cert.cert])).common_name == "req-x509"


def test_ca_without_key_usage_or_with_non_critical_basic_constraints() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "homegrown CA")])
    for critical in (True, False):
        root = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(1)
            .not_valid_before(NOW - timedelta(days=1))
            .not_valid_after(NOW + timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical)
            .sign(key, hashes.SHA256())
        )
        anchor = Issued(root, key)
        assert verify(issue(anchor, "c.example"), policy=ClientCertPolicy([root]))
    not_ca = build_certificate(common_name="not a CA", is_ca=False)
    leaf = issue(not_ca, "c.example")
    assert reason_of(leaf, policy=ClientCertPolicy([not_ca.cert])) is R.UNKNOWN_CA


# -- extended key usage -------------------------------------------------------------


@pytest.mark.parametrize(
    ("client_auth", "server_auth", "accepted"),
    [
        (True, False, True),
        (True, True, True),
        (False, False, True),
        (False, True, False),
    ],
)
def test_eku_rule(client_auth: bool, server_auth: bool, accepted: bool) -> None:
    leaf = issue(ROOT, "e.example", client_auth=client_auth, server_auth=server_auth)
    if accepted:
        assert verify(leaf)
    else:
        assert reason_of(leaf) is R.BAD_EKU


def test_any_extended_key_usage_alone_is_refused() -> None:
    leaf = _with_eku([ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE])
    assert reason_of(leaf) is R.BAD_EKU
    assert verify(
        _with_eku([ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.CODE_SIGNING])
    )


def test_required_eku_is_configurable() -> None:
    server_only = issue(ROOT, "s.example", client_auth=False)
    policy = ClientCertPolicy([ROOT.cert], required_eku=ExtendedKeyUsageOID.SERVER_AUTH)
    assert verify(server_only, policy=policy)
    assert (
        reason_of(issue(ROOT, "c.example", server_auth=False), policy=policy)
        is R.BAD_EKU
    )


def _custom_leaf(*extensions: tuple[x509.ExtensionType, bool]) -> Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .issuer_name(ROOT.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("c.example")]), True)
    )
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical)
    return Issued(builder.sign(ROOT.key, hashes.SHA256()), key, (ROOT,))


def _with_eku(usages: list[x509.ObjectIdentifier]) -> Issued:
    return _custom_leaf((x509.ExtendedKeyUsage(usages), False))


def _key_usage(**bits: bool) -> x509.KeyUsage:
    names = [
        "digital_signature",
        "content_commitment",
        "key_encipherment",
        "data_encipherment",
        "key_agreement",
        "key_cert_sign",
        "crl_sign",
        "encipher_only",
        "decipher_only",
    ]
    return x509.KeyUsage(**{n: bits.get(n, False) for n in names})


def test_leaf_key_usage_must_allow_signing() -> None:
    # OpenSSL's SSL-client purpose: digitalSignature or keyAgreement.
    assert verify(
        _custom_leaf((_key_usage(digital_signature=True, key_cert_sign=True), True))
    )
    assert verify(_custom_leaf((_key_usage(key_agreement=True), True)))
    assert (
        reason_of(_custom_leaf((_key_usage(key_encipherment=True), True)))
        is R.BAD_CERTIFICATE
    )


# -- depth and partial chains ------------------------------------------------------------


def test_depth_at_limit_beside_over_limit() -> None:
    leaf = chain_of_depth(3)
    inters, root = leaf.parents[:-1], leaf.root
    assert (
        len(verify(leaf, inters, ClientCertPolicy([root.cert], max_depth=3)).chain_der)
        == 5
    )
    assert (
        reason_of(leaf, inters, ClientCertPolicy([root.cert], max_depth=2))
        is R.CHAIN_TOO_DEEP
    )


def test_path_length_constraint_violation() -> None:
    root = make_ca(common_name="pathlen root", path_length=0)
    inter = make_ca(issuer=root, common_name="pathlen inter")
    assert (
        reason_of(issue(inter, "p.example"), [inter], ClientCertPolicy([root.cert]))
        is R.CHAIN_TOO_DEEP
    )
    assert verify(issue(root, "p.example"), policy=ClientCertPolicy([root.cert]))


def test_too_many_presented_certificates_rejected_before_path_building() -> None:
    leaf = chain_of_depth(1)
    junk = [make_ca(common_name=f"junk {i}") for i in range(MAX_PRESENTED_CERTS)]
    policy = ClientCertPolicy([leaf.root.cert])
    assert verify(leaf, [leaf.parents[0], *junk[:-1]], policy)
    assert reason_of(leaf, [leaf.parents[0], *junk], policy) is R.CHAIN_TOO_DEEP


def test_leaf_repeated_in_chain_is_ignored() -> None:
    leaf = issue(ROOT, "dup.example")
    assert verify(leaf, [leaf, ROOT]).chain_der == (der(leaf), der(ROOT))


@pytest.mark.parametrize("partial", [True, False])
def test_partial_chain(partial: bool) -> None:
    leaf = chain_of_depth(2)
    inter1, inter2, root = leaf.parents
    # Only the leaf's issuing intermediate is configured (Kong: "you don't
    # need to upload the full chain").
    if partial:
        policy = ClientCertPolicy([inter1.cert], allow_partial_chain=True)
        assert verify(leaf, policy=policy).chain_der == (der(leaf), der(inter1))
    else:
        with pytest.raises(ConfigError, match="allow_partial_chain"):
            ClientCertPolicy([inter1.cert])
        # With the root configured too, the intermediate is chain material, not an anchor.
        policy = ClientCertPolicy([inter1.cert, root.cert])
        assert reason_of(leaf, policy=policy) is R.UNKNOWN_CA  # inter2 missing
        assert verify(leaf, [inter2], policy).chain_der[-1] == der(root)


def test_pinned_ca_issued_leaf_needs_partial_chain() -> None:
    leaf = issue(ROOT, "pinned.example")
    pinned = ClientCertPolicy([leaf.cert], allow_partial_chain=True)
    assert verify(leaf, policy=pinned).chain_der == (der(leaf),)
    other = issue(ROOT, "other.example")
    assert reason_of(other, policy=pinned) is R.UNKNOWN_CA


# -- revocation -----------------------------------------------------------------------------


def test_revoked_beside_not_revoked(make_crl: MakeCrl) -> None:
    good, bad = issue(ROOT, "good.example"), issue(ROOT, "bad.example")
    crl = make_crl(ROOT, [bad.cert.serial_number])
    policy = ClientCertPolicy(
        [ROOT.cert], revocation_check_mode="IGNORE_CA_ERROR", crls=[crl]
    )
    (check,) = verify(good, policy=policy).revocation
    assert check.status is RevocationStatus.GOOD
    assert reason_of(bad, policy=policy) is R.REVOKED
    skip = ClientCertPolicy([ROOT.cert], crls=[crl])
    assert verify(bad, policy=skip).revocation == ()


def test_fetched_crls_are_used(make_crl: MakeCrl) -> None:
    bad = issue(ROOT, "fetched.example")
    policy = ClientCertPolicy(
        [ROOT.cert], revocation_check_mode=RevocationCheckMode.STRICT
    )
    crl = make_crl(ROOT, [bad.cert.serial_number])
    assert reason_of(bad, policy=policy, crls=[crl]) is R.REVOKED


@pytest.mark.parametrize("mode", ["IGNORE_CA_ERROR", "STRICT"])
def test_unusable_crl_by_mode(make_crl: MakeCrl, mode: str) -> None:
    leaf = issue(ROOT, "m.example")
    stale = make_crl(
        ROOT,
        [],
        last_update=NOW - timedelta(days=30),
        next_update=NOW - timedelta(days=1),
    )
    foreign = make_crl(make_ca(common_name="client root"), [leaf.cert.serial_number])
    for crls in ([], [stale], [foreign]):
        policy = ClientCertPolicy([ROOT.cert], revocation_check_mode=mode, crls=crls)
        if mode == "IGNORE_CA_ERROR":
            (check,) = verify(leaf, policy=policy).revocation
            assert check.status is RevocationStatus.UNKNOWN
        else:
            with pytest.raises(ClientCertRejected, match="status unknown") as info:
                verify(leaf, policy=policy)
            # A good certificate whose status cannot be learned is not "revoked" (issue 15).
            assert info.value.reason is R.REVOCATION_UNKNOWN
    fresh = make_crl(ROOT, [])
    assert verify(
        leaf,
        policy=ClientCertPolicy([ROOT.cert], revocation_check_mode=mode, crls=[fresh]),
    )


# -- allowlist, bad input, configuration --------------------------------------------------------


def test_allowlist() -> None:
    alice, bob = issue(ROOT, "alice.example"), issue(ROOT, "bob.example")
    colon_upper = ":".join(f"{b:02X}" for b in alice.cert.fingerprint(hashes.SHA256()))
    policy = ClientCertPolicy(
        [ROOT.cert], allowed_fingerprints=frozenset({colon_upper})
    )
    assert verify(alice, policy=policy)
    with pytest.raises(ClientCertRejected) as info:
        verify(bob, policy=policy)
    assert (info.value.reason, info.value.error_status_hint) == (R.NOT_ALLOWED, 403)


@pytest.mark.parametrize(
    "bad", [b"\x30\x03\x02\x01\x01", b"not a certificate", b"\x30" * 40]
)
def test_garbage_leaf_or_chain(bad: bytes) -> None:
    policy = ClientCertPolicy([ROOT.cert])
    with pytest.raises(ClientCertRejected) as info:
        verify_client_certificate(bad, [], policy, now=NOW)
    assert info.value.reason is R.BAD_CERTIFICATE
    with pytest.raises(ClientCertRejected) as info:
        verify_client_certificate(der(issue(ROOT, "g.example")), [bad], policy, now=NOW)
    assert info.value.reason is R.BAD_CERTIFICATE


def test_oversized_certificate() -> None:
    big = build_certificate(
        issuer=ROOT, dns_names=[f"n{i}.example" for i in range(1500)]
    )
    assert len(der(big)) > MAX_CERT_SIZE
    assert reason_of(big) is R.BAD_CERTIFICATE


def test_policy_validation() -> None:
    with pytest.raises(ConfigError, match="trust anchor"):
        ClientCertPolicy([])
    with pytest.raises(ConfigError, match="max_depth"):
        ClientCertPolicy([ROOT.cert], max_depth=MAX_DEPTH_LIMIT + 1)
    with pytest.raises(ConfigError, match="ca_certificates\\[1\\]"):
        ClientCertPolicy([ROOT.cert, b"junk"])
    with pytest.raises(ConfigError, match="revocation_check_mode"):
        ClientCertPolicy([ROOT.cert], revocation_check_mode="OCSP")
    policy = ClientCertPolicy([der(ROOT)], revocation_check_mode="strict")
    assert policy.trust_anchors == (ROOT.cert,)
    assert policy.revocation_check_mode is RevocationCheckMode.STRICT


# -- cryptography's messages (pinned: a rewording must fail here, not degrade codes) ----------


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        ("validation failed: cert is not valid at validation time", R.EXPIRED),
        (
            "validation failed: candidates exhausted: cert is not valid at validation time",
            R.EXPIRED,
        ),
        (
            "validation failed: candidates exhausted: chain construction exceeds max depth",
            R.CHAIN_TOO_DEEP,
        ),
        (
            "validation failed: candidates exhausted: path length constraint violated",
            R.CHAIN_TOO_DEEP,
        ),
        (
            "validation failed: candidates exhausted: signature does not match",
            R.UNKNOWN_CA,
        ),
        (
            "validation failed: invalid extension: 2.5.29.15: whatever",
            R.BAD_CERTIFICATE,
        ),
    ],
)
def test_message_classification_table(message: str, reason: ClientCertReason) -> None:
    assert _classify(message) is reason


def test_unknown_critical_extension_on_leaf_is_bad_certificate() -> None:
    odd = x509.UnrecognizedExtension(
        x509.ObjectIdentifier("1.3.6.1.4.1.99999.7"), b"\x05\x00"
    )
    assert reason_of(_custom_leaf((odd, True))) is R.BAD_CERTIFICATE
    assert verify(_custom_leaf((odd, False)))


# -- bounded work ------------------------------------------------------------------------------


def test_pathological_same_subject_chain_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    # Many intermediates sharing one subject multiply the candidate paths.  The
    # work is bounded by bounding the input (cryptography's path building cannot
    # be interrupted): counted, not timed — at the bound, path validation runs
    # once per verification; one certificate over it, never.
    import trio_gw.tls.client_auth as client_auth

    root = make_ca(common_name="patho root")
    inters = [
        make_ca(issuer=root, common_name="patho inter")
        for _ in range(MAX_PRESENTED_CERTS + 1)
    ]
    leaf = issue(inters[0], "patho.example")
    policy = ClientCertPolicy([root.cert], max_depth=MAX_DEPTH_LIMIT)
    real = client_auth._verify_path
    calls: list[int] = []

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(len(args[1]))
        return real(*args, **kwargs)

    monkeypatch.setattr(client_auth, "_verify_path", counting)
    at_bound = list(reversed(inters[:MAX_PRESENTED_CERTS]))
    for _ in range(5):
        verify(leaf, at_bound, policy)
    assert calls == [MAX_PRESENTED_CERTS] * 5
    assert reason_of(leaf, list(reversed(inters)), policy) is R.CHAIN_TOO_DEEP
    assert calls == [MAX_PRESENTED_CERTS] * 5  # refused before any path building
