"""Forwarded client-certificate headers (trio_gw.tls.forwarded_cert)."""

from __future__ import annotations

import base64
import hashlib
import urllib.parse

import pytest

from trio_gw.testing.pki import build_certificate, chain_of_depth, make_ca
from trio_gw.tls.forwarded_cert import (
    MAX_FORWARDED_CHAIN,
    MAX_HEADER_VALUE_SIZE,
    ForwardedCertificate,
    ForwardedCertificateError,
    _xfcc_elements,
    format_client_cert_chain_rfc9440,
    format_client_cert_rfc9440,
    format_xfcc,
    parse_forwarded_certificate,
)

LEAF = chain_of_depth(2)
LEAF_DER = LEAF.cert_der()
CHAIN_DER = tuple(p.cert_der() for p in LEAF.parents[:-1])
FULL = ForwardedCertificate(LEAF_DER, CHAIN_DER)
ALONE = ForwardedCertificate(LEAF_DER)


def test_base64_of_der_and_of_pem() -> None:
    assert (
        parse_forwarded_certificate(
            base64.b64encode(LEAF_DER).decode(), "base64_encoded"
        )
        == ALONE
    )
    urlsafe = base64.urlsafe_b64encode(LEAF_DER).decode().rstrip("=")
    assert parse_forwarded_certificate(urlsafe, "base64_encoded") == ALONE
    pem = base64.b64encode(LEAF.chain_pem().encode()).decode()
    assert parse_forwarded_certificate(pem, "base64_encoded") == FULL


@pytest.mark.parametrize(
    "value", ["!!!", base64.b64encode(b"hello").decode(), LEAF.cert_pem()]
)
def test_base64_rejects_other_content(value: str) -> None:
    with pytest.raises(ForwardedCertificateError):
        parse_forwarded_certificate(value, "base64_encoded")


def test_url_encoded_nginx_and_alb_styles() -> None:
    nginx = urllib.parse.quote(LEAF.cert_pem(), safe="")  # $ssl_client_escaped_cert
    assert parse_forwarded_certificate(nginx, "url_encoded") == ALONE
    # AWS ALB: "+" and "=" and "/" unescaped, line breaks as spaces, label spaces as "+".
    pem = LEAF.chain_pem()
    alb = pem.replace("\n", " ").replace("BEGIN CERTIFICATE", "BEGIN+CERTIFICATE")
    alb = alb.replace("END CERTIFICATE", "END+CERTIFICATE")
    assert parse_forwarded_certificate(alb, "url_encoded") == FULL
    assert parse_forwarded_certificate(urllib.parse.quote(pem), "url_encoded") == FULL
    with pytest.raises(ForwardedCertificateError, match="no PEM"):
        parse_forwarded_certificate(base64.b64encode(LEAF_DER).decode(), "url_encoded")


def test_rfc9440_round_trip_and_parameters() -> None:
    cert = format_client_cert_rfc9440(LEAF_DER)
    chain = format_client_cert_chain_rfc9440(CHAIN_DER)
    assert cert.startswith(":") and cert.endswith(":")
    assert parse_forwarded_certificate(cert, "rfc9440", chain_value=chain) == FULL
    assert parse_forwarded_certificate(cert, "rfc9440") == ALONE
    assert (
        parse_forwarded_certificate(f"  {cert};x=1 ", "rfc9440", chain_value="")
        == ALONE
    )
    assert format_client_cert_chain_rfc9440([]) == ""
    unpadded = cert.rstrip(":").rstrip("=") + ":"
    assert parse_forwarded_certificate(unpadded, "rfc9440") == ALONE


@pytest.mark.parametrize(
    "value",
    [
        "",
        "  ",
        "MIIB",
        ":not base64!:",
        "::",
        ":AAAA:",
        ":AAAA: junk",
        format_client_cert_rfc9440(LEAF_DER)
        + ", "
        + format_client_cert_rfc9440(LEAF_DER),
    ],
)
def test_rfc9440_rejects(value: str) -> None:
    with pytest.raises(ForwardedCertificateError):
        parse_forwarded_certificate(value, "rfc9440")


def test_rfc9440_chain_bound() -> None:
    one = format_client_cert_rfc9440(CHAIN_DER[0])
    cert = format_client_cert_rfc9440(LEAF_DER)
    ok = ", ".join([one] * MAX_FORWARDED_CHAIN)
    assert (
        len(parse_forwarded_certificate(cert, "rfc9440", chain_value=ok).chain_der)
        == MAX_FORWARDED_CHAIN
    )
    with pytest.raises(ForwardedCertificateError, match="chain certificates"):
        parse_forwarded_certificate(cert, "rfc9440", chain_value=ok + ", " + one)


def test_xfcc_envoy_example_shape() -> None:
    element = format_xfcc(
        LEAF_DER, CHAIN_DER, by="spiffe://gw.example/gw", include_chain=True
    )
    keys = [pair.split("=", 1)[0] for pair in element.split(";")]
    assert keys == ["By", "Hash", "Cert", "Chain", "Subject", "DNS"]
    assert f"Hash={hashlib.sha256(LEAF_DER).hexdigest()}" in element
    assert 'Cert="-----BEGIN%20CERTIFICATE-----%0A' in element
    assert parse_forwarded_certificate(element, "xfcc") == FULL


def test_xfcc_quoting_and_uri_dns_pairs() -> None:
    leaf = build_certificate(
        issuer=make_ca(),
        common_name='odd, "name"; x=y',
        dns_names=["a.example", "b.example"],
        uris=["spiffe://corp/ns/a"],
    )
    element = format_xfcc(leaf.cert_der(), include_hash=False)
    (pairs,) = _xfcc_elements(element)
    assert dict(pairs)["Subject"] == leaf.cert.subject.rfc4514_string()
    assert element.endswith(";URI=spiffe://corp/ns/a;DNS=a.example;DNS=b.example")
    assert parse_forwarded_certificate(element, "xfcc").leaf_der == leaf.cert_der()


def test_xfcc_element_choice() -> None:
    other = make_ca(common_name="proxy")
    first = format_xfcc(LEAF_DER)
    last = format_xfcc(other.cert_der())
    value = f"{first},{last}"
    assert parse_forwarded_certificate(value, "xfcc").leaf_der == other.cert_der()
    assert (
        parse_forwarded_certificate(value, "xfcc", xfcc_element="first").leaf_der
        == LEAF_DER
    )


def test_xfcc_hash_must_match_cert() -> None:
    element = format_xfcc(LEAF_DER).replace(
        hashlib.sha256(LEAF_DER).hexdigest(), "ab" * 32
    )
    with pytest.raises(ForwardedCertificateError, match="Hash"):
        parse_forwarded_certificate(element, "xfcc")
    no_hash = format_xfcc(LEAF_DER, include_hash=False)
    assert parse_forwarded_certificate(no_hash, "xfcc") == ALONE
    upper = format_xfcc(LEAF_DER).replace(
        hashlib.sha256(LEAF_DER).hexdigest(),
        hashlib.sha256(LEAF_DER).hexdigest().upper(),
    )
    assert parse_forwarded_certificate(upper, "xfcc") == ALONE


@pytest.mark.parametrize(
    "value",
    [
        "By=spiffe://x;Hash=" + "ab" * 32,
        'Cert="unterminated',
        "Cert",
        "=x;Cert=y",
        "a=b,,c=d",
        'Cert="' + urllib.parse.quote(LEAF.chain_pem()) + '"',
        "Cert=%2D%2D",
        ",".join(["By=x"] * 17),
    ],
)
def test_xfcc_rejects(value: str) -> None:
    with pytest.raises(ForwardedCertificateError):
        parse_forwarded_certificate(value, "xfcc")


def test_size_and_format_bounds() -> None:
    with pytest.raises(ForwardedCertificateError, match="over"):
        parse_forwarded_certificate("A" * (MAX_HEADER_VALUE_SIZE + 1), "base64_encoded")
    with pytest.raises(ForwardedCertificateError, match="certificate_header_format"):
        parse_forwarded_certificate("x", "pem")
    with pytest.raises(ForwardedCertificateError, match="str"):
        parse_forwarded_certificate(b"abc", "rfc9440")  # type: ignore[arg-type]


def test_format_xfcc_rejects_garbage() -> None:
    with pytest.raises(ForwardedCertificateError):
        format_xfcc(b"\x30\x00")
