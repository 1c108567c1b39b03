"""Invariants of client-certificate verification and forwarded-certificate headers.

- Any header value, in any format, gives a ``ForwardedCertificate`` or
  ``ForwardedCertificateError``, nothing else.
- format → parse round-trips for rfc9440, xfcc, url_encoded and base64_encoded.
- ``verify_client_certificate`` on arbitrary (or mutated) DER raises
  ``ClientCertRejected`` and nothing else.
"""

from __future__ import annotations

import base64
import urllib.parse
from datetime import UTC, datetime

from hypothesis import example, given
from hypothesis import strategies as st

from trio_gw.testing.pki import Issued, build_certificate, chain_of_depth, make_ca
from trio_gw.tls.client_auth import (
    ClientCertPolicy,
    ClientCertRejected,
    verify_client_certificate,
)
from trio_gw.tls.forwarded_cert import (
    FORWARDED_CERT_FORMATS,
    ForwardedCertificate,
    ForwardedCertificateError,
    format_client_cert_chain_rfc9440,
    format_client_cert_rfc9440,
    format_xfcc,
    parse_forwarded_certificate,
)

NOW = datetime(2025, 6, 1, tzinfo=UTC)
ROOT = make_ca(common_name="property client root")
LEAVES: list[Issued] = [
    chain_of_depth(0),
    chain_of_depth(2, key_kind="rsa"),
    build_certificate(
        issuer=ROOT,
        common_name='we;ird, "cn"=x',
        uris=["spiffe://a/b"],
        dns_names=["a.example"],
        emails=["e@example.org"],
    ),
    build_certificate(issuer=ROOT, key_kind="ed25519", common_name="ed"),
]
POLICY = ClientCertPolicy([ROOT.cert, *(leaf.root.cert for leaf in LEAVES[:2])])
VALID_VALUES = [
    format_client_cert_rfc9440(LEAVES[0].cert_der()),
    format_xfcc(LEAVES[1].cert_der()),
    urllib.parse.quote(LEAVES[2].chain_pem()),
    base64.b64encode(LEAVES[3].cert_der()).decode(),
]


def _expected(leaf: Issued) -> ForwardedCertificate:
    return ForwardedCertificate(
        leaf.cert_der(), tuple(p.cert_der() for p in leaf.parents[:-1])
    )


@st.composite
def mutated(draw: st.DrawFn, values: list[str]) -> str:
    text = draw(st.sampled_from(values))
    for _ in range(draw(st.integers(0, 4))):
        i = draw(st.integers(0, len(text)))
        op = draw(st.sampled_from(["insert", "delete", "replace"]))
        piece = draw(
            st.sampled_from(
                [",", ";", "=", '"', "\\", ":", "%", "+", " ", "\n", "A", "-"]
            )
        )
        if op == "insert":
            text = text[:i] + piece + text[i:]
        elif op == "delete":
            text = text[:i] + text[i + 1 :]
        else:
            text = text[:i] + piece + text[i + 1 :]
    return text


@given(
    value=st.text(max_size=300) | mutated(VALID_VALUES),
    fmt=st.sampled_from(FORWARDED_CERT_FORMATS),
    chain=st.none() | st.text(max_size=50),
)
@example(value='Cert="%', fmt="xfcc", chain=None)
@example(value="::", fmt="rfc9440", chain=":::")
@example(value="-----BEGIN CERTIFICATE-----", fmt="url_encoded", chain=None)
def test_any_header_gives_certificate_or_declared_error(
    value: str, fmt: str, chain: str | None
) -> None:
    try:
        result = parse_forwarded_certificate(value, fmt, chain_value=chain)
    except ForwardedCertificateError:
        return
    assert isinstance(result, ForwardedCertificate) and result.leaf_der[:1] == b"\x30"


@given(
    leaf=st.sampled_from(LEAVES),
    which=st.sampled_from(["rfc9440", "xfcc", "url_encoded", "base64_encoded"]),
)
def test_format_then_parse_round_trips(leaf: Issued, which: str) -> None:
    expected = _expected(leaf)
    if which == "rfc9440":
        got = parse_forwarded_certificate(
            format_client_cert_rfc9440(expected.leaf_der),
            "rfc9440",
            chain_value=format_client_cert_chain_rfc9440(expected.chain_der),
        )
    elif which == "xfcc":
        element = format_xfcc(
            expected.leaf_der, expected.chain_der, by="spiffe://gw", include_chain=True
        )
        got = parse_forwarded_certificate(f"By=x;Hash=00,{element}", "xfcc")
    elif which == "url_encoded":
        got = parse_forwarded_certificate(
            urllib.parse.quote(leaf.chain_pem(), safe=""), which
        )
    else:
        got = parse_forwarded_certificate(
            base64.b64encode(leaf.chain_pem().encode()).decode(), which
        )
    assert got == expected


@given(
    leaf=st.binary(max_size=600)
    | st.sampled_from([leaf.cert_der() for leaf in LEAVES]),
    chain=st.lists(st.binary(max_size=200), max_size=3),
    flips=st.lists(st.integers(0, 10_000), max_size=3),
)
def test_verify_raises_only_client_cert_rejected(
    leaf: bytes, chain: list[bytes], flips: list[int]
) -> None:
    data = bytearray(leaf)
    for flip in flips:
        if data:
            data[flip % len(data)] ^= 0x5A
    try:
        result = verify_client_certificate(bytes(data), chain, POLICY, now=NOW)
    except ClientCertRejected:
        return
    assert result.chain_der[0] == bytes(data)
