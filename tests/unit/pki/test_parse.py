from __future__ import annotations

from collections.abc import Iterator

import re

import base64
import urllib.parse
from contextlib import nullcontext

import pytest
import trustme
from cryptography.hazmat.primitives import serialization

from trio_gw.errors import CertificateError
from trio_gw.pki.parse import (
    DEFAULT_MAX_INPUT_SIZE,
    has_private_key_block,
    parse_certificates,
    parse_der,
    parse_pem_chain,
    parse_private_key,
)
from trio_gw.pki.keys import key_matches_certificate, key_type
from trio_gw.testing.pki import Issued, chain_of_depth, make_ca, issue


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def leaf(ca: trustme.CA) -> trustme.LeafCert:
    return ca.issue_cert("api.example")


@pytest.fixture(scope="module")
def rsa_leaf() -> Issued:
    return issue(make_ca(key_kind="rsa"), "rsa.example", key_kind="rsa")


def _pem(leaf: trustme.LeafCert) -> str:
    return leaf.cert_chain_pems[0].bytes().decode()


def _der(leaf: trustme.LeafCert) -> bytes:
    return parse_certificates(_pem(leaf))[0].public_bytes(serialization.Encoding.DER)


# --- certificates: accepted encodings -------------------------------------------------


def test_pem_single(leaf: trustme.LeafCert) -> None:
    (cert,) = parse_certificates(_pem(leaf))
    assert cert.public_bytes(serialization.Encoding.DER) == _der(leaf)


def test_pem_bytes_and_str_agree(leaf: trustme.LeafCert) -> None:
    assert parse_certificates(_pem(leaf)) == parse_certificates(_pem(leaf).encode())


def test_pem_chain_keeps_order() -> None:
    leaf = chain_of_depth(2)
    certs = parse_pem_chain(leaf.chain_pem() + leaf.root.cert_pem())
    assert [c.subject for c in certs] == [
        leaf.cert.subject,
        leaf.parents[0].cert.subject,
        leaf.parents[1].cert.subject,
        leaf.root.cert.subject,
    ]


def test_pem_with_surrounding_text_and_key_block(leaf: trustme.LeafCert) -> None:
    text = "subject=CN=x\nBag Attributes\n" + _pem(leaf) + leaf.private_key_pem.bytes().decode()
    assert len(parse_certificates(text)) == 1


@pytest.mark.parametrize(
    "damage",
    [
        lambda p: p.replace("\n", "\r\n"),
        lambda p: p.replace("\n", "\t\t\n"),  # trailing tabs, as in Kong's docs sample
        lambda p: "        " + p.replace("\n", "\n        "),  # YAML block indentation
        lambda p: p.replace("\n", " "),  # ALB: line breaks become spaces
    ],
    ids=["crlf", "trailing-tabs", "indented", "one-line"],
)
def test_pem_whitespace_damage_is_harmless(leaf: trustme.LeafCert, damage: object) -> None:
    assert callable(damage)
    (cert,) = parse_certificates(damage(_pem(leaf)))
    assert cert.public_bytes(serialization.Encoding.DER) == _der(leaf)


def test_der(leaf: trustme.LeafCert) -> None:
    assert parse_der(_der(leaf)).public_bytes(serialization.Encoding.DER) == _der(leaf)
    assert len(parse_certificates(_der(leaf))) == 1


def test_base64_of_der(leaf: trustme.LeafCert) -> None:
    encoded = base64.b64encode(_der(leaf)).decode()
    assert parse_certificates(encoded)[0] == parse_der(_der(leaf))


def test_urlsafe_base64_without_padding(leaf: trustme.LeafCert) -> None:
    encoded = base64.urlsafe_b64encode(_der(leaf)).decode().rstrip("=")
    assert parse_certificates(encoded)[0] == parse_der(_der(leaf))


def test_base64_of_pem_gravitee(leaf: trustme.LeafCert) -> None:
    encoded = base64.b64encode(_pem(leaf).encode())
    assert parse_certificates(encoded)[0] == parse_der(_der(leaf))


def test_nginx_escaped_cert(leaf: trustme.LeafCert) -> None:
    escaped = urllib.parse.quote(_pem(leaf), safe="")
    assert parse_certificates(escaped)[0] == parse_der(_der(leaf))


def test_alb_url_encoded_keeps_plus_and_slash(leaf: trustme.LeafCert) -> None:
    escaped = urllib.parse.quote(_pem(leaf), safe="+=/")
    assert parse_certificates(escaped)[0] == parse_der(_der(leaf))


def test_alb_plus_for_spaces(leaf: trustme.LeafCert) -> None:
    escaped = urllib.parse.quote_plus(_pem(leaf).replace("\n", " "), safe="/=")
    # BEGIN+CERTIFICATE, and "+" both as base64 and as the old line breaks.
    assert "+CERTIFICATE" in escaped
    assert parse_certificates(escaped)[0] == parse_der(_der(leaf))


# --- certificates: rejections ---------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ("", "empty input"),
        (b"  \n", "empty input"),
        ("hello, world!", "not PEM, DER or base64"),
        ("helloworld", "neither DER nor PEM"),
        ("-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n", "not valid base64"),
        ("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "unparsable certificate"),
        ("-----BEGIN CERTIFICATE-----\nAAAA\n-----END FOO-----\n", "no certificate found"),
        (b"\x30\x03\x02\x01\x00", "unparsable certificate"),
        ("AAAA", "neither DER nor PEM"),
        ("%ZZ", "not PEM, DER or base64"),
    ],
)
def test_rejections_are_certificate_errors(data: str | bytes, reason: str) -> None:
    with pytest.raises(CertificateError, match=reason):
        parse_certificates(data)


def test_key_only_pem_says_so(leaf: trustme.LeafCert) -> None:
    with pytest.raises(CertificateError, match=r"no certificate found \(only a private key\)"):
        parse_certificates(leaf.private_key_pem.bytes())


def test_trailing_garbage_after_der_is_rejected(leaf: trustme.LeafCert) -> None:
    with pytest.raises(CertificateError):
        parse_der(_der(leaf) + b"\x00")


def test_second_block_broken_names_its_position(leaf: trustme.LeafCert) -> None:
    broken = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
    with pytest.raises(CertificateError, match="certificate 2"):
        parse_certificates(_pem(leaf) + broken)


def test_too_large_input() -> None:
    with pytest.raises(CertificateError, match="too large"):
        parse_certificates("A" * (DEFAULT_MAX_INPUT_SIZE + 1))
    with pytest.raises(CertificateError, match="too large"):
        parse_certificates(b"A" * (DEFAULT_MAX_INPUT_SIZE + 1))


@pytest.mark.parametrize("value", [None, 12, ["pem"], {"cert": "x"}])
def test_wrong_type(value: object) -> None:
    with pytest.raises(CertificateError, match="expected text or bytes"):
        parse_certificates(value)  # type: ignore[arg-type]


# --- private keys ---------------------------------------------------------------------


# Ed25519 has no traditional (non-PKCS#8) encoding.
@pytest.mark.parametrize(
    ("kind", "fmt"),
    [("ec", "pkcs8"), ("ec", "traditional"), ("rsa", "pkcs8"), ("rsa", "traditional"),
     ("ed25519", "pkcs8")],
)
def test_private_key_formats(kind: str, fmt: str) -> None:
    leaf = issue(make_ca(), "k.example", key_kind=kind)
    key = parse_private_key(leaf.key_pem(fmt=fmt))
    assert key_type(key) == kind
    assert key_matches_certificate(key, leaf.cert)


def test_encrypted_pkcs8_with_password(rsa_leaf: Issued) -> None:
    key = parse_private_key(rsa_leaf.key_pem(password=b"s3cret"), b"s3cret")
    assert key_matches_certificate(key, rsa_leaf.cert)


def test_legacy_encrypted_pem_with_password(rsa_leaf: Issued) -> None:
    pem = rsa_leaf.key_pem(password=b"s3cret", fmt="traditional")
    assert "Proc-Type" in pem
    assert key_matches_certificate(parse_private_key(pem, b"s3cret"), rsa_leaf.cert)


@pytest.mark.parametrize("fmt", ["pkcs8", "traditional"])
def test_encrypted_key_without_password(rsa_leaf: Issued, fmt: str) -> None:
    with pytest.raises(CertificateError, match="key is encrypted and no password was given"):
        parse_private_key(rsa_leaf.key_pem(password=b"s3cret", fmt=fmt))


def test_wrong_password(rsa_leaf: Issued) -> None:
    with pytest.raises(CertificateError, match="wrong password"):
        parse_private_key(rsa_leaf.key_pem(password=b"s3cret"), b"nope")


def test_password_for_unencrypted_key_is_ignored(rsa_leaf: Issued) -> None:
    assert key_matches_certificate(parse_private_key(rsa_leaf.key_pem(), b"pw"), rsa_leaf.cert)


def test_pkcs1_body_labelled_private_key(rsa_leaf: Issued) -> None:
    """Kong's documentation sample: PKCS#1 content under a PKCS#8 label."""
    pem = rsa_leaf.key_pem(fmt="traditional").replace("RSA PRIVATE KEY", "PRIVATE KEY")
    assert key_matches_certificate(parse_private_key(pem), rsa_leaf.cert)


def test_key_after_certificate_tyk_bundle(rsa_leaf: Issued) -> None:
    bundle = rsa_leaf.cert_pem() + rsa_leaf.key_pem()
    assert key_matches_certificate(parse_private_key(bundle), rsa_leaf.cert)


def test_der_key(rsa_leaf: Issued) -> None:
    der = rsa_leaf.key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    assert key_matches_certificate(parse_private_key(der), rsa_leaf.cert)


def test_two_keys_rejected(rsa_leaf: Issued) -> None:
    with pytest.raises(CertificateError, match="exactly one private key, found 2"):
        parse_private_key(rsa_leaf.key_pem() + rsa_leaf.key_pem())


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ("", "empty input"),
        ("just text", "no PEM private key found"),
        ("-----BEGIN PRIVATE KEY-----\n!!\n-----END PRIVATE KEY-----\n", "not valid base64"),
        ("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "unparsable key"),
        (b"\x30\x03\x02\x01\x00", "unparsable key"),
    ],
)
def test_key_rejections(data: str | bytes, reason: str) -> None:
    with pytest.raises(CertificateError, match=reason):
        parse_private_key(data)


def test_key_error_never_quotes_the_key(rsa_leaf: Issued) -> None:
    pem = rsa_leaf.key_pem()
    body_line = pem.splitlines()[3]
    damaged = pem.replace(body_line, body_line[::-1])
    with pytest.raises(CertificateError) as info:
        parse_private_key(damaged)
    assert body_line not in str(info.value) and body_line[::-1] not in str(info.value)
    assert len(str(info.value)) < 300


def test_x25519_key_cannot_sign() -> None:
    from cryptography.hazmat.primitives.asymmetric import x25519

    pem = x25519.X25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(CertificateError, match="unsupported key type X25519"):
        parse_private_key(pem)


# --- private-key detection ------------------------------------------------------------


def test_has_private_key_block(leaf: trustme.LeafCert) -> None:
    key = leaf.private_key_pem.bytes().decode()
    assert has_private_key_block(_pem(leaf) + key)
    assert has_private_key_block(urllib.parse.quote(key, safe=""))
    assert has_private_key_block(base64.b64encode(key.encode()))
    assert not has_private_key_block(_pem(leaf))
    assert not has_private_key_block(_der(leaf))
    assert not has_private_key_block(42)  # type: ignore[arg-type]


def test_ml_dsa_key_is_refused_for_tls() -> None:
    mldsa = pytest.importorskip("cryptography.hazmat.primitives.asymmetric.mldsa")
    names = [n for n in dir(mldsa) if n.upper() == "MLDSA44PRIVATEKEY"]
    if not names:
        pytest.skip("this cryptography release has no ML-DSA-44")
    pem = getattr(mldsa, names[0]).generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(CertificateError, match="unsupported key type ML-DSA-44"):
        parse_private_key(pem)


def test_invalid_x509_version_is_a_certificate_error(leaf: trustme.LeafCert) -> None:
    """cryptography raises x509.InvalidVersion (not a ValueError); found by fuzzing."""
    der = _der(leaf).replace(b"\xa0\x03\x02\x01\x02", b"\xa0\x03\x02\x01\x06", 1)
    with pytest.raises(CertificateError, match="not a valid X509 version"):
        parse_certificates(der)


def test_many_unclosed_pem_markers_take_one_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    """A BEGIN..END regex was quadratic here: 41 s for 272 KB of markers.

    Bounded work, counted rather than timed: each parse scans the text with the
    marker pattern once, and every marker is looked at once.
    """
    from trio_gw.pki import encoding

    data = "-----BEGIN A-----" * (DEFAULT_MAX_INPUT_SIZE // 17)
    markers = data.count("-----BEGIN")
    real = encoding._PEM_MARKER
    scans: list[int] = []

    class Counting:
        def finditer(self, text: str) -> Iterator[re.Match[str]]:
            scans.append(0)
            for match in real.finditer(text):
                scans[-1] += 1
                yield match

    monkeypatch.setattr(encoding, "_PEM_MARKER", Counting())
    for parse in (parse_certificates, parse_private_key, has_private_key_block):
        scans.clear()
        expect = pytest.raises(CertificateError) if parse is not has_private_key_block else nullcontext()
        with expect:
            parse(data)
        assert 1 <= len(scans) <= 2, parse  # the text (and at most one other reading of it)
        assert all(n <= markers for n in scans), parse


def test_mismatched_end_label_is_not_a_block(leaf: trustme.LeafCert) -> None:
    pem = _pem(leaf)
    with pytest.raises(CertificateError, match="no certificate found"):
        parse_certificates(pem.replace("END CERTIFICATE", "END X509 CRL"))
    # a stray BEGIN before a real block does not hide it
    assert len(parse_certificates("-----BEGIN CERTIFICATE-----\n" + pem)) == 1


@pytest.mark.parametrize("serial_byte", [b"\x00", b"\xff"], ids=["zero", "negative"])
def test_non_positive_serial_is_rejected_without_a_warning(serial_byte: bytes) -> None:
    """cryptography only warns (and will raise later); fuzzing found the warning."""
    import warnings

    from trio_gw.testing.pki import build_certificate

    valid = build_certificate(serial=0x7F).cert_der()
    der = valid.replace(b"\xa0\x03\x02\x01\x02\x02\x01\x7f", b"\xa0\x03\x02\x01\x02\x02\x01" + serial_byte)
    assert der != valid
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(CertificateError, match="serial number is not positive"):
            parse_certificates(der)
        with pytest.raises(CertificateError, match="serial number is not positive"):
            parse_certificates(base64.b64encode(der))


def test_positive_serial_with_leading_zero_byte() -> None:
    from trio_gw.testing.pki import build_certificate

    der = build_certificate(serial=0x80).cert_der()  # encoded as 00 80
    assert parse_certificates(der)[0].serial_number == 0x80


def test_oversized_key_is_refused_before_loading() -> None:
    from trio_gw.pki.parse import DEFAULT_MAX_KEY_DER_SIZE

    body = base64.encodebytes(b"\x30" + b"\x00" * DEFAULT_MAX_KEY_DER_SIZE).decode()
    pem = f"-----BEGIN PRIVATE KEY-----\n{body}-----END PRIVATE KEY-----\n"
    with pytest.raises(CertificateError, match="key too large"):
        parse_private_key(pem)


def _dsa_private_key_pem() -> bytes:
    import warnings

    with warnings.catch_warnings():  # cryptography 51 deprecates DSA: only this test makes such a key
        warnings.simplefilter("ignore")
        from cryptography.hazmat.primitives.asymmetric import dsa

        key = dsa.generate_private_key(key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def test_dsa_key_is_refused_by_name() -> None:
    with pytest.raises(CertificateError, match=r"unsupported key type DSA \(supported: RSA, ECDSA, Ed25519, Ed448\)"):
        parse_private_key(_dsa_private_key_pem())


def test_an_ecdsa_key_beside_it_is_accepted(leaf: trustme.LeafCert) -> None:
    assert parse_private_key(leaf.private_key_pem.bytes()) is not None


def test_importing_the_package_touches_no_deprecated_name() -> None:
    """`make run` printed five CryptographyDeprecationWarnings (DSA) before its banner."""
    import subprocess
    import sys

    code = ("import trio_gw.runtime.cli, trio_gw.runtime.gateway, trio_gw.testing.pki, trio_gw.tls.revocation, "
            "trio_gw.pki.keys; from trio_gw.pki.keys import key_type, key_size")
    done = subprocess.run([sys.executable, "-W", "error", "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""


def test_a_wrong_password_is_named_even_when_the_padding_happens_to_be_valid(rsa_leaf: Issued) -> None:
    """About one wrong password in 256 decrypts to valid CBC padding and garbage that then
    fails to parse: it is still "wrong password", never "unparsable key" (a flaky
    message seen in CI).  The legacy format's key derivation is fast enough to try many."""
    pem = rsa_leaf.key_pem(password=b"s3cret", fmt="traditional")
    messages = set()
    for i in range(1500):
        with pytest.raises(CertificateError) as info:
            parse_private_key(pem, f"nope-{i}".encode())
        messages.add(str(info.value))
    assert messages == {"cannot decrypt key: wrong password?"}
