"""CRL parsing and revocation decisions (trio_gw.tls.revocation)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding

from trio_gw.errors import CertificateError
from trio_gw.testing.pki import build_certificate, issue, make_ca
from trio_gw.tls.revocation import (
    MAX_CRL_SIZE,
    RevocationCheckMode,
    RevocationStatus,
    check_revocation,
    crl_distribution_urls,
    is_crl_usable,
    parse_crl,
    parse_revocation_check_mode,
)

from .conftest import NOW, MakeCrl

ROOT = make_ca(common_name="crl root")
OTHER = make_ca(common_name="crl other root")
IMPOSTOR = make_ca(common_name="crl root")  # same name as ROOT, another key
INTER = make_ca(issuer=ROOT, common_name="crl intermediate")
LEAF = issue(ROOT, "leaf.example")
DEEP_LEAF = issue(INTER, "deep.example")


def chain() -> list[x509.Certificate]:
    return [LEAF.cert, ROOT.cert]


def test_parse_crl_pem_and_der(make_crl: MakeCrl) -> None:
    crl = make_crl(ROOT, [1, 2])
    for data in (crl.public_bytes(Encoding.PEM), crl.public_bytes(Encoding.DER)):
        parsed = parse_crl(data)
        assert parsed.get_revoked_certificate_by_serial_number(2) is not None
    assert parse_crl(crl.public_bytes(Encoding.PEM).decode()) == crl


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"  \n",
        b"\x30\x03\x02\x01\x01",
        b"-----BEGIN X509 CRL-----\n!!\n-----END X509 CRL-----",
        b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----",
        b"garbage",
    ],
)
def test_parse_crl_rejects_garbage(data: bytes) -> None:
    with pytest.raises(CertificateError):
        parse_crl(data)


def test_parse_crl_bounds_size() -> None:
    with pytest.raises(CertificateError, match="too large"):
        parse_crl(b"\x30" + b"\x00" * MAX_CRL_SIZE)


def test_mode_parsing() -> None:
    assert parse_revocation_check_mode("strict") is RevocationCheckMode.STRICT
    assert (
        parse_revocation_check_mode(" IGNORE_CA_ERROR ")
        is RevocationCheckMode.IGNORE_CA_ERROR
    )
    assert (
        parse_revocation_check_mode(RevocationCheckMode.SKIP)
        is RevocationCheckMode.SKIP
    )
    with pytest.raises(CertificateError, match="revocation_check_mode"):
        parse_revocation_check_mode("OCSP_ONLY")


def test_good_beside_revoked(make_crl: MakeCrl) -> None:
    crl = make_crl(ROOT, [LEAF.cert.serial_number + 1])
    (good,) = check_revocation(chain(), [crl], now=NOW)
    assert good.status is RevocationStatus.GOOD
    crl = make_crl(
        ROOT, [LEAF.cert.serial_number], reason=x509.ReasonFlags.key_compromise
    )
    (bad,) = check_revocation(chain(), [crl], now=NOW)
    assert (bad.status, bad.detail) == (RevocationStatus.REVOKED, "keyCompromise")


def test_remove_from_crl_entry_is_not_revoked(make_crl: MakeCrl) -> None:
    crl = make_crl(
        ROOT, [LEAF.cert.serial_number], reason=x509.ReasonFlags.remove_from_crl
    )
    (check,) = check_revocation(chain(), [crl], now=NOW)
    assert check.status is RevocationStatus.GOOD


def test_crl_signed_by_another_key_is_not_trusted(make_crl: MakeCrl) -> None:
    # Same issuer name as ROOT, signed by an impostor: must not decide anything,
    # neither "revoked" nor "good".
    forged = make_crl(IMPOSTOR, [LEAF.cert.serial_number])
    (check,) = check_revocation(chain(), [forged], now=NOW)
    assert (check.status, check.detail) == (RevocationStatus.UNKNOWN, "bad signature")
    genuine = make_crl(ROOT, [LEAF.cert.serial_number])
    (check,) = check_revocation(chain(), [forged, genuine], now=NOW)
    assert check.status is RevocationStatus.REVOKED


def test_crl_of_another_issuer_is_ignored(make_crl: MakeCrl) -> None:
    (check,) = check_revocation(
        chain(), [make_crl(OTHER, [LEAF.cert.serial_number])], now=NOW
    )
    assert (check.status, check.detail) == (
        RevocationStatus.UNKNOWN,
        "no CRL for this issuer",
    )


def test_stale_and_future_crls_are_unusable(make_crl: MakeCrl) -> None:
    stale = make_crl(
        ROOT,
        [LEAF.cert.serial_number],
        last_update=NOW - timedelta(days=9),
        next_update=NOW - timedelta(seconds=1),
    )
    future = make_crl(ROOT, [], last_update=NOW + timedelta(hours=1))
    for crl, why in ((stale, "stale"), (future, "not yet valid")):
        assert is_crl_usable(crl, LEAF.cert, ROOT.cert, now=NOW) == why
    fresh = make_crl(ROOT, [])
    assert is_crl_usable(fresh, LEAF.cert, ROOT.cert, now=NOW) is None


def test_issuer_without_crl_sign_cannot_sign_crls(make_crl: MakeCrl) -> None:
    # A leaf-like "issuer" (keyUsage without cRLSign) signing a CRL for its own name.
    signer = build_certificate(common_name="no crl sign", is_ca=False)
    child = issue(signer, "child.example")
    crl = make_crl(signer, [])
    assert (
        is_crl_usable(crl, child.cert, signer.cert, now=NOW) == "issuer lacks cRLSign"
    )


def test_scope_extensions(make_crl: MakeCrl) -> None:
    def idp(**kw: bool) -> tuple[x509.ExtensionType, bool]:
        base = {
            "full_name": None,
            "relative_name": None,
            "only_contains_user_certs": False,
            "only_contains_ca_certs": False,
            "only_some_reasons": None,
            "indirect_crl": False,
            "only_contains_attribute_certs": False,
        }
        base.update(kw)
        return x509.IssuingDistributionPoint(**base), True  # type: ignore[arg-type]

    cases = [
        ([idp(only_contains_ca_certs=True)], "CRL scope excludes this certificate"),
        ([idp(only_contains_user_certs=True)], None),
        ([idp(indirect_crl=True)], "partial or indirect CRL"),
        ([(x509.DeltaCRLIndicator(1), True)], "delta CRL"),
        ([(x509.CRLNumber(7), False)], None),
        (
            [
                (
                    x509.UnrecognizedExtension(
                        x509.ObjectIdentifier("1.3.6.1.4.1.99999.1"), b"\x05\x00"
                    ),
                    True,
                )
            ],
            "unknown critical CRL extension",
        ),
    ]
    for extensions, expected in cases:
        crl = make_crl(ROOT, [], extensions=extensions)
        assert is_crl_usable(crl, LEAF.cert, ROOT.cert, now=NOW) == expected, extensions
    ca_only = make_crl(ROOT, [], extensions=[idp(only_contains_user_certs=True)])
    assert (
        is_crl_usable(ca_only, INTER.cert, ROOT.cert, now=NOW)
        == "CRL scope excludes this certificate"
    )


def test_leaf_only_by_default_full_chain_on_request(make_crl: MakeCrl) -> None:
    full = [DEEP_LEAF.cert, INTER.cert, ROOT.cert]
    crls = [make_crl(INTER, []), make_crl(ROOT, [INTER.cert.serial_number])]
    (leaf_check,) = check_revocation(full, crls, now=NOW)
    assert leaf_check.status is RevocationStatus.GOOD
    checks = check_revocation(full, crls, now=NOW, full_chain=True)
    assert [c.status for c in checks] == [
        RevocationStatus.GOOD,
        RevocationStatus.REVOKED,
    ]
    assert check_revocation([ROOT.cert], crls, now=NOW) == ()  # a pinned anchor alone


def test_distribution_urls() -> None:
    point = x509.DistributionPoint
    uri = x509.UniformResourceIdentifier
    ext = x509.CRLDistributionPoints(
        [
            point(
                [uri("http://crl.example/a.crl"), uri("ftp://x/y")], None, None, None
            ),
            point(
                [uri("http://crl.example/a.crl"), uri("LDAP://dir.example/cn=x")],
                None,
                None,
                None,
            ),
            point(
                [uri("http://indirect.example/c.crl")],
                None,
                None,
                [x509.DirectoryName(ROOT.cert.subject)],
            ),
            point(
                None,
                x509.RelativeDistinguishedName(ROOT.cert.subject.rdns[0]),
                None,
                None,
            ),
        ]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(ROOT.cert.subject)
        .issuer_name(ROOT.cert.subject)
        .public_key(ROOT.key.public_key())
        .serial_number(5)
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=1))
        .add_extension(ext, False)
        .sign(ROOT.key, hashes.SHA256())
    )
    assert crl_distribution_urls(cert) == (
        "http://crl.example/a.crl",
        "LDAP://dir.example/cn=x",
    )
    assert crl_distribution_urls(LEAF.cert) == ()
