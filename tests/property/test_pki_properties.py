"""Invariants of certificate and key parsing.

- Any input gives a value or ``CertificateError``, nothing else (fed in one chunk).
- Every supported encoding of a certificate parses back to the same certificate,
  so fingerprints, certificate ids and SPKI pins do not depend on the encoding.
"""

from __future__ import annotations

import base64
import urllib.parse
from collections.abc import Callable

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from hypothesis import example, given
from hypothesis import strategies as st

from trio_gw.errors import CertificateError
from trio_gw.pki.info import certificate_id, describe_certificate, fingerprint_sha256, spki_pin
from trio_gw.pki.parse import parse_certificates, parse_private_key
from trio_gw.testing.pki import Issued, chain_of_depth, cn_only_leaf, make_ca, self_signed_leaf

_ROOT = make_ca(common_name="property root")
_CERTS: list[Issued] = [
    chain_of_depth(0),
    chain_of_depth(1, key_kind="rsa"),
    cn_only_leaf(_ROOT),
    self_signed_leaf("ed.example", key_kind="ed25519"),
    _ROOT,
]
_SAMPLE_PEM = _CERTS[0].cert_pem()
_SAMPLE_DER = _CERTS[0].cert_der()
_SAMPLE_KEY = _CERTS[0].key_pem()
# Fuzzing found cryptography raising x509.InvalidVersion (not a ValueError) here.
_BAD_VERSION = _SAMPLE_DER.replace(b"\xa0\x03\x02\x01\x02", b"\xa0\x03\x02\x01\x06", 1)


def _pem(c: x509.Certificate) -> str:
    return c.public_bytes(serialization.Encoding.PEM).decode()


def _der(c: x509.Certificate) -> bytes:
    return c.public_bytes(serialization.Encoding.DER)


ENCODINGS: dict[str, Callable[[x509.Certificate], str | bytes]] = {
    "pem": _pem,
    "pem-bytes": lambda c: _pem(c).encode(),
    "pem-crlf": lambda c: _pem(c).replace("\n", "\r\n"),
    "pem-one-line": lambda c: _pem(c).replace("\n", " "),
    "der": _der,
    "base64-der": lambda c: base64.b64encode(_der(c)).decode(),
    "base64-der-wrapped": lambda c: base64.encodebytes(_der(c)).decode(),
    "urlsafe-base64-der": lambda c: base64.urlsafe_b64encode(_der(c)).decode().rstrip("="),
    "base64-pem": lambda c: base64.b64encode(_pem(c).encode()).decode(),
    "nginx-escaped": lambda c: urllib.parse.quote(_pem(c), safe=""),
    "alb-escaped": lambda c: urllib.parse.quote(_pem(c), safe="+=/"),
    "form-encoded": lambda c: urllib.parse.quote_plus(_pem(c)),
    "form-encoded-one-line": lambda c: urllib.parse.quote_plus(_pem(c).replace("\n", " ")),
}


def _value_or_certificate_error(call: Callable[[], object]) -> None:
    try:
        call()
    except CertificateError:
        pass


@given(st.binary(max_size=4096))
@example(b"")
@example(b"\x30")
@example(b"\x30\x82\xff\xff")
@example(_SAMPLE_DER[:-1])
@example(_SAMPLE_DER + b"\x00")
@example(_BAD_VERSION)
@example(base64.b64encode(_BAD_VERSION))
@example(b"-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n")
@example(b"-----BEGIN+CERTIFICATE-----++++-----END+CERTIFICATE-----")
@example(b"%")
@example(b"%ff%fe")
@example(b"\xff\xfe\x00")
def test_any_bytes_give_certificates_or_certificate_error(data: bytes) -> None:
    _value_or_certificate_error(lambda: parse_certificates(data))
    _value_or_certificate_error(lambda: parse_private_key(data))
    _value_or_certificate_error(lambda: parse_private_key(data, b"password"))


@given(st.text(max_size=2048))
@example("\udcff")  # lone surrogate
@example("-----BEGIN PRIVATE KEY-----\n\udcff\n-----END PRIVATE KEY-----")
def test_any_text_gives_certificates_or_certificate_error(text: str) -> None:
    _value_or_certificate_error(lambda: parse_certificates(text))
    _value_or_certificate_error(lambda: parse_private_key(text))


@st.composite
def _mutated(draw: st.DrawFn, original: bytes) -> bytes:
    """A valid input with a few bytes replaced, inserted or cut off."""
    data = bytearray(original)
    for _ in range(draw(st.integers(1, 4))):
        position = draw(st.integers(0, len(data)))
        action = draw(st.sampled_from(["replace", "insert", "truncate"]))
        byte = draw(st.integers(0, 255))
        if action == "replace" and position < len(data):
            data[position] = byte
        elif action == "insert":
            data.insert(position, byte)
        else:
            del data[position:]
    return bytes(data)


@given(
    st.one_of(
        _mutated(_SAMPLE_DER),
        _mutated(_SAMPLE_PEM.encode()),
        _mutated(base64.b64encode(_SAMPLE_DER)),
        _mutated(urllib.parse.quote(_SAMPLE_PEM, safe="").encode()),
    )
)
def test_mutated_certificates_give_certificates_or_certificate_error(data: bytes) -> None:
    _value_or_certificate_error(lambda: [describe_certificate(c) for c in parse_certificates(data)])


@given(_mutated(_SAMPLE_KEY.encode()))
def test_mutated_keys_give_a_key_or_certificate_error(data: bytes) -> None:
    _value_or_certificate_error(lambda: parse_private_key(data))


@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
@given(issued=st.sampled_from(_CERTS))
def test_every_encoding_round_trips(encoding: str, issued: Issued) -> None:
    (parsed,) = parse_certificates(ENCODINGS[encoding](issued.cert))
    assert _der(parsed) == issued.cert_der()
    assert fingerprint_sha256(parsed) == fingerprint_sha256(issued.cert)
    assert certificate_id(parsed) == certificate_id(issued.cert)
    assert spki_pin(parsed) == spki_pin(issued.cert)


@given(
    st.lists(st.sampled_from(_CERTS), min_size=1, max_size=4),
    st.sampled_from(["\n", "\r\n", " ", "\n\n# comment\n"]),
)
def test_pem_chains_keep_every_certificate_in_order(chain: list[Issued], joiner: str) -> None:
    text = joiner.join(i.cert_pem() for i in chain)
    for encoded in (text, base64.b64encode(text.encode()), urllib.parse.quote(text, safe="")):
        parsed = parse_certificates(encoded)
        assert [fingerprint_sha256(c) for c in parsed] == [
            fingerprint_sha256(i.cert) for i in chain
        ]
