"""Fuzz target ``forwarded-cert``: client certificates forwarded in HTTP headers, in every format.

Drives :func:`trio_gw.tls.forwarded_cert.parse_forwarded_certificate`, which
the ``header-cert-auth`` plugin calls on a header set by a TLS-terminating load
balancer (and catches only :class:`ForwardedCertificateError`).

Input layout: the first byte is a header, the rest the header value(s).

- bits 0–1 of the first byte pick the format (``FORWARDED_CERT_FORMATS``, in
  order: ``base64_encoded``, ``url_encoded``, ``rfc9440``, ``xfcc``; so a text
  seed starts with ``0``–``3``);
- bit 2 decodes the value as UTF-8 with surrogate escapes (lone surrogates
  reach the parser) instead of Latin-1 (what the plugin does);
- bit 7 passes the format name in upper case (an unknown format).

The rest is split at the first NUL byte: before it the header value (for
``rfc9440`` the ``Client-Cert`` value), after it the ``Client-Cert-Chain``
value (``chain_value``; absent when there is no NUL).  XFCC values are read
with both ``xfcc_element="last"`` and ``"first"``.  Whatever parses is
formatted again in every format (``format_client_cert_rfc9440``,
``format_client_cert_chain_rfc9440``, ``format_xfcc``, base64 and URL-encoded
PEM) and parsed back.
"""

from __future__ import annotations

import base64
import urllib.parse
from collections.abc import Sequence
from typing import Literal

from cryptography.hazmat.primitives.serialization import Encoding

from fuzz.targets._support import InvariantViolation
from trio_gw.pki.info import describe_certificate, fingerprint_sha256
from trio_gw.pki.parse import parse_der
from trio_gw.tls.forwarded_cert import (
    FORWARDED_CERT_FORMATS,
    MAX_FORWARDED_CHAIN,
    MAX_HEADER_VALUE_SIZE,
    ForwardedCertificate,
    ForwardedCertificateError,
    format_client_cert_chain_rfc9440,
    format_client_cert_rfc9440,
    format_xfcc,
    parse_forwarded_certificate,
)

INVARIANT = """\
Any header value(s), in any format, give a ``ForwardedCertificate`` or
``ForwardedCertificateError`` (what the plugin catches), nothing else — not
even a bare ``CertificateError``.  A result has a leaf and at most
``MAX_FORWARDED_CHAIN`` chain certificates, each of them DER that parses,
re-encodes to the same bytes, can be fingerprinted and described.  A result
formatted again as RFC 9440 ``Client-Cert``/``Client-Cert-Chain``, as an XFCC
element (``format_xfcc``, alone and after another element), as base64 and as
URL-encoded PEM parses back to the same DER.  ``format_xfcc`` on any bytes
gives an element or ``ForwardedCertificateError``.
"""

_BASE64, _URL, _RFC9440, _XFCC = FORWARDED_CERT_FORMATS
_UTF8 = 0x04
_DASHES = "-" * 5  # PEM armour is built, never written literally in the source
_UNKNOWN_FORMAT = 0x80


def decode_input(data: bytes) -> tuple[str, str, str | None]:
    """The format, header value and chain value (or None) an input stands for."""
    flags = data[0] if data else 0
    fmt = FORWARDED_CERT_FORMATS[flags & 0x03]
    if flags & _UNKNOWN_FORMAT:
        fmt = fmt.upper()
    value, sep, chain = data[1:].partition(b"\x00")

    def text(raw: bytes) -> str:
        return raw.decode("utf-8", "surrogateescape") if flags & _UTF8 else raw.decode("latin-1")

    return fmt, text(value), text(chain) if sep else None


def encode_input(fmt: str, value: str | bytes, chain: str | bytes | None = None) -> bytes:
    """The input that stands for ``fmt``, ``value`` and ``chain`` (ASCII or Latin-1 text)."""
    def raw(text: str | bytes) -> bytes:
        return text.encode("latin-1") if isinstance(text, str) else text

    out = b"%d" % FORWARDED_CERT_FORMATS.index(fmt) + raw(value)
    return out if chain is None else out + b"\x00" + raw(chain)


def parse(value: str, fmt: str, chain_value: str | None = None,
          element: Literal["first", "last"] = "last") -> ForwardedCertificate | None:
    """Parse and check one header; None for ``ForwardedCertificateError``."""
    try:
        found = parse_forwarded_certificate(value, fmt, chain_value=chain_value, xfcc_element=element)
    except ForwardedCertificateError:
        return None
    _check_result(found)
    return found


def _check_result(found: object) -> None:
    if not isinstance(found, ForwardedCertificate):
        raise InvariantViolation(f"parse_forwarded_certificate returned {type(found).__name__}")
    if not isinstance(found.leaf_der, bytes) or not found.leaf_der:
        raise InvariantViolation("result has no leaf")
    if not isinstance(found.chain_der, tuple) or len(found.chain_der) > MAX_FORWARDED_CHAIN:
        raise InvariantViolation(f"chain is not a tuple of at most {MAX_FORWARDED_CHAIN}: {found.chain_der!r:.80}")
    for der in (found.leaf_der, *found.chain_der):
        if not isinstance(der, bytes):
            raise InvariantViolation(f"a certificate is {type(der).__name__}, not DER bytes")
        cert = parse_der(der)  # a CertificateError here escapes: the result held a non-certificate
        if cert.public_bytes(Encoding.DER) != der:
            raise InvariantViolation("a returned certificate does not re-encode to the same DER")
        fingerprint_sha256(cert)
        describe_certificate(cert)


def _pem(ders: Sequence[bytes]) -> str:
    out = []
    for der in ders:
        body = base64.b64encode(der).decode("ascii")
        lines = "\n".join(body[i : i + 64] for i in range(0, len(body), 64))
        out.append(f"{_DASHES}BEGIN CERTIFICATE{_DASHES}\n{lines}\n{_DASHES}END CERTIFICATE{_DASHES}\n")
    return "".join(out)


def _round_trips(found: ForwardedCertificate) -> None:
    """Format ``found`` in every format, parse it back, expect the same DER."""
    leaf, chain = found.leaf_der, found.chain_der
    xfcc_chain = chain[1:] if chain and chain[0] == leaf else chain  # Envoy's Chain starts with the leaf
    pem = _pem((leaf, *chain))
    element = format_xfcc(leaf, chain, include_chain=True, by="spiffe://gw.test/ns/fuzz")
    other = format_xfcc(leaf, include_hash=False, include_subject=False, include_uri=False, include_dns=False)
    cases: list[tuple[str, str, str | None, Literal["first", "last"], ForwardedCertificate]] = [
        ("rfc9440", format_client_cert_rfc9440(leaf), format_client_cert_chain_rfc9440(chain), "last", found),
        ("xfcc", element, None, "last", ForwardedCertificate(leaf, xfcc_chain)),
        ("xfcc", element + "," + other, None, "first", ForwardedCertificate(leaf, xfcc_chain)),
        ("xfcc", other + "," + element, None, "last", ForwardedCertificate(leaf, xfcc_chain)),
        ("url_encoded", urllib.parse.quote(pem, safe=""), None, "last", found),  # nginx
        ("url_encoded", urllib.parse.quote(pem, safe="+=/"), None, "last", found),  # AWS ALB
        ("base64_encoded", base64.b64encode(pem.encode()).decode(), None, "last", found),
    ]
    if not chain:
        cases.append(("base64_encoded", base64.b64encode(leaf).decode(), None, "last", found))
    for fmt, value, chain_value, element_choice, expected in cases:
        if len(value) > MAX_HEADER_VALUE_SIZE or len(chain_value or "") > MAX_HEADER_VALUE_SIZE:
            continue
        try:
            again = parse_forwarded_certificate(value, fmt, chain_value=chain_value, xfcc_element=element_choice)
        except ForwardedCertificateError as exc:
            raise InvariantViolation(f"{fmt} round trip ({element_choice}) rejected: {exc}") from exc
        if again != expected:
            raise InvariantViolation(f"{fmt} round trip ({element_choice}) gave other certificates: "
                                     f"{len(again.chain_der)} vs {len(expected.chain_der)} chain certificates")


def fuzz_one(data: bytes) -> None:
    """Parse the header(s) ``data`` stands for; check results and their round trips."""
    fmt, value, chain_value = decode_input(data)
    elements: tuple[Literal["first", "last"], ...] = ("last", "first") if fmt == _XFCC else ("last",)
    for element in elements:
        found = parse(value, fmt, chain_value, element)
        if found is not None:
            _round_trips(found)
    try:
        formatted = format_xfcc(data[1:])
    except ForwardedCertificateError:
        return
    if not isinstance(formatted, str):
        raise InvariantViolation(f"format_xfcc returned {type(formatted).__name__}")
    again = parse(formatted, _XFCC)
    if again is None or again.leaf_der != data[1:]:
        raise InvariantViolation("format_xfcc output of a certificate does not parse back to it")


#: Hand-written seeds: header syntax without certificates.
SEEDS: dict[str, bytes] = {
    "base64-garbage": encode_input(_BASE64, "TUlJQg=="),
    "base64-pem-label": encode_input(_BASE64, base64.b64encode(f"{_DASHES}BEGIN CERTIFICATE{_DASHES}\nMIIB\n".encode())),
    "url-alb-label": encode_input(_URL, f"{_DASHES}BEGIN+CERTIFICATE{_DASHES}+MIIB+{_DASHES}END+CERTIFICATE{_DASHES}+"),
    "url-escaped-label": encode_input(_URL, "%2D%2D%2D%2D%2DBEGIN%20CERTIFICATE%2D%2D%2D%2D%2D%0AMIIB"),
    "rfc9440-params": encode_input(_RFC9440, ":TUlJQg==:;a=1", ":AAAA:, :MIIB:;b"),
    "rfc9440-empty": encode_input(_RFC9440, "::", " "),
    "xfcc-quoted": encode_input(_XFCC, 'By=spiffe://a;Hash=00;Subject="CN=a\\"b,O=c";URI=spiffe://b,Cert="x;y=z"'),
    "xfcc-unterminated": encode_input(_XFCC, 'Cert="%2D%2D%2D%2D%2DBEGIN\\'),
    "xfcc-empty-elements": encode_input(_XFCC, ",,;=;"),
    "unknown-format": b"\x80TUlJQg==",
}


def generated_seeds() -> dict[str, bytes]:
    """Real certificates (EC chain, RSA, Ed25519) in every header format (made at run time, never committed)."""
    from trio_gw.testing.pki import chain_of_depth, self_signed_leaf

    out: dict[str, bytes] = {}
    issued = {"ec": chain_of_depth(1), "rsa": chain_of_depth(0, key_kind="rsa"),
              "ed25519": self_signed_leaf("ed.example", key_kind="ed25519")}
    for name, cert in issued.items():
        leaf = cert.cert_der()
        chain = [p.cert_der() for p in cert.parents[:-1]] or [cert.root.cert_der()]
        leaf_pem, chain_pem = _pem([leaf]), _pem([leaf, *chain])
        out[f"{name}.b64-der"] = encode_input(_BASE64, base64.b64encode(leaf))
        out[f"{name}.b64url-der"] = encode_input(_BASE64, base64.urlsafe_b64encode(leaf).rstrip(b"="))
        out[f"{name}.b64-pem"] = encode_input(_BASE64, base64.b64encode(chain_pem.encode()))
        out[f"{name}.pem"] = encode_input(_URL, chain_pem)
        out[f"{name}.url-nginx"] = encode_input(_URL, urllib.parse.quote(chain_pem, safe=""))
        # AWS ALB: "+", "=" and "/" left unescaped; line breaks as %0A, as spaces, or as "+".
        out[f"{name}.url-alb"] = encode_input(_URL, urllib.parse.quote(leaf_pem, safe="+=/"))
        out[f"{name}.url-alb-spaces"] = encode_input(
            _URL, urllib.parse.quote(leaf_pem.replace("\n", " "), safe=" +=/"))
        out[f"{name}.url-alb-plus"] = encode_input(
            _URL, urllib.parse.quote(leaf_pem.replace(" ", "+").replace("\n", "+"), safe="+=/"))
        out[f"{name}.rfc9440"] = encode_input(_RFC9440, format_client_cert_rfc9440(leaf))
        out[f"{name}.rfc9440-chain"] = encode_input(
            _RFC9440, format_client_cert_rfc9440(leaf) + ";v=1", format_client_cert_chain_rfc9440(chain))
        element = format_xfcc(leaf, chain, include_chain=True, by="spiffe://gw.test/ns/a")
        out[f"{name}.xfcc"] = encode_input(_XFCC, element)
        out[f"{name}.xfcc-envoy-chain"] = encode_input(
            _XFCC, f'Hash={fingerprint_sha256(parse_der(leaf))};Cert="{urllib.parse.quote(leaf_pem, safe="")}";'
                   f'Chain="{urllib.parse.quote(chain_pem, safe="")}";DNS=a.example')
    ec_leaf, rsa_leaf = issued["ec"].cert_der(), issued["rsa"].cert_der()
    out["xfcc-two-hops"] = encode_input(_XFCC, format_xfcc(rsa_leaf) + "," + format_xfcc(ec_leaf, by="spiffe://p"))
    out["xfcc-hash-mismatch"] = encode_input(
        _XFCC, format_xfcc(ec_leaf).replace(fingerprint_sha256(parse_der(ec_leaf)), "0" * 64))
    return out
