"""Client certificates in HTTP headers: parsing what a load balancer forwards, formatting what we forward.

Theory of operation
-------------------
Behind a TLS-terminating load balancer the client certificate arrives in a
header (honoured only from ``trusted_ips``; the HTTP layer strips it from
everyone else).  :func:`parse_forwarded_certificate` reads the value in one of
the formats of Kong's header-cert-auth ``certificate_header_format`` plus the
two standard ones:

``base64_encoded``
    base64 (standard or URL-safe alphabet) of DER, or of PEM (Gravitee's
    "base64-encoded plaintext certificate").
``url_encoded``
    URL-encoded PEM, leaf first then chain: nginx ``$ssl_client_escaped_cert``,
    AWS ALB ``X-Amzn-Mtls-Clientcert`` (which leaves ``+``, ``=`` and ``/``
    unescaped and may turn line breaks into spaces or ``+``; handled by
    :mod:`trio_gw.pki.parse`).  Plain PEM with real newlines is accepted too.
``rfc9440``
    ``Client-Cert: :<base64 DER>:`` (an RFC 8941 byte sequence), and
    optionally the ``Client-Cert-Chain`` value: a list of byte sequences.
``xfcc``
    Envoy's ``x-forwarded-client-cert``: comma-separated elements (one per
    proxy hop), each ``key=value`` pairs separated by ``;``, values optionally
    double-quoted with ``\\`` escapes.  ``Cert`` is URL-encoded PEM, ``Chain``
    the URL-encoded PEM chain; ``Hash`` (hex SHA-256 of the leaf DER), when
    present with ``Cert``, must match it.  The element used is the *last* one
    by default: it is the one appended by the trusted proxy next to us
    (Envoy ``APPEND_FORWARD``); ``xfcc_element="first"`` picks the original
    client in a chain of trusted proxies.

The result is DER only; verification is :mod:`trio_gw.tls.client_auth`'s job.
Every failure is a :class:`ForwardedCertificateError`; input is bounded to
:data:`MAX_HEADER_VALUE_SIZE` characters and :data:`MAX_FORWARDED_CHAIN`
chain certificates, and every step is linear in it.

The ``format_*`` functions build the same headers toward upstreams (identity
forwarding): :func:`format_client_cert_rfc9440`,
:func:`format_client_cert_chain_rfc9440` and :func:`format_xfcc`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from trio_gw.errors import CertificateError
from trio_gw.pki.encoding import decode_base64, strict_b64decode
from trio_gw.pki.parse import DECODE_ERRORS, parse_certificates, parse_der

__all__ = [
    "FORWARDED_CERT_FORMATS",
    "MAX_FORWARDED_CHAIN",
    "MAX_HEADER_VALUE_SIZE",
    "ForwardedCertificate",
    "ForwardedCertificateError",
    "format_client_cert_chain_rfc9440",
    "format_client_cert_rfc9440",
    "format_xfcc",
    "parse_forwarded_certificate",
]

#: Largest header value accepted, in characters.  A URL-encoded PEM leaf is
#: ~2–3 KB and a chain of three ~9 KB; 64 KiB is above every load balancer's
#: header limit (nginx ``large_client_header_buffers`` 8 KiB, ALB 16 KiB per
#: mTLS header, Envoy 60 KiB for all headers) and bounds the work per request.
MAX_HEADER_VALUE_SIZE: Final = 64 * 1024
#: Most chain certificates accepted after the leaf (as client_auth's limit).
MAX_FORWARDED_CHAIN: Final = 10
#: Most XFCC elements (proxy hops) accepted in one header.
MAX_XFCC_ELEMENTS: Final = 16
#: The values of ``certificate_header_format`` understood.
FORWARDED_CERT_FORMATS: Final = ("base64_encoded", "url_encoded", "rfc9440", "xfcc")

#: XFCC keys Envoy always quotes.
_ALWAYS_QUOTED: Final = frozenset({"Cert", "Chain", "Subject"})
_SF_BINARY: Final = re.compile(r":([A-Za-z0-9+/]*={0,2}):")
_HEX: Final = re.compile(r"[0-9a-fA-F]{64}")


class ForwardedCertificateError(CertificateError):
    """A forwarded-certificate header that cannot be read (the request gets 401/400)."""


@dataclass(frozen=True)
class ForwardedCertificate:
    """The certificates read from a header: the leaf and what follows it (DER)."""

    leaf_der: bytes
    chain_der: tuple[bytes, ...] = ()


def parse_forwarded_certificate(
    value: str,
    fmt: str,
    *,
    chain_value: str | None = None,
    xfcc_element: Literal["first", "last"] = "last",
) -> ForwardedCertificate:
    """Read the client certificate a load balancer put in a header.

    Args:
        value: the header value (for ``rfc9440``, the ``Client-Cert`` one).
        fmt: one of :data:`FORWARDED_CERT_FORMATS`.
        chain_value: ``rfc9440`` only: the ``Client-Cert-Chain`` value.
        xfcc_element: ``xfcc`` only: which element (hop) to read.

    Returns:
        The :class:`ForwardedCertificate`.

    Raises:
        ForwardedCertificateError: unknown format, oversize input, or a value
            that does not hold a certificate in that format.
    """
    _check_size(value)
    if chain_value is not None and chain_value.strip():
        _check_size(chain_value)
    else:
        chain_value = None
    try:
        if fmt == "base64_encoded":
            return _from_certificates(_base64_certificates(value))
        if fmt == "url_encoded":
            return _from_certificates(_pem_certificates(value))
        if fmt == "rfc9440":
            return _parse_rfc9440(value, chain_value)
        if fmt == "xfcc":
            return _parse_xfcc(value, xfcc_element)
    except ForwardedCertificateError:
        raise
    except CertificateError as exc:
        raise ForwardedCertificateError(f"{fmt}: {exc}") from exc
    raise ForwardedCertificateError(
        f"unknown certificate_header_format; expected one of {', '.join(FORWARDED_CERT_FORMATS)}"
    )


def format_client_cert_rfc9440(leaf_der: bytes) -> str:
    """Format the ``Client-Cert`` header value of RFC 9440.

    Args:
        leaf_der: the client certificate (DER).

    Returns:
        ``:<base64 DER>:``.
    """
    return ":" + base64.b64encode(leaf_der).decode("ascii") + ":"


def format_client_cert_chain_rfc9440(chain_der: Sequence[bytes]) -> str:
    """Format the ``Client-Cert-Chain`` header value of RFC 9440.

    Args:
        chain_der: the certificates after the leaf (DER), leaf's issuer first.

    Returns:
        A comma-separated list of byte sequences (empty string for no chain:
        the header should then be omitted).
    """
    return ", ".join(format_client_cert_rfc9440(der) for der in chain_der)


def format_xfcc(
    leaf_der: bytes,
    chain_der: Sequence[bytes] = (),
    *,
    by: str | None = None,
    include_hash: bool = True,
    include_cert: bool = True,
    include_chain: bool = False,
    include_subject: bool = True,
    include_uri: bool = True,
    include_dns: bool = True,
) -> str:
    """Format one ``x-forwarded-client-cert`` element the way Envoy does.

    Pairs come in Envoy's order ``By``, ``Hash``, ``Cert``, ``Chain``,
    ``Subject``, ``URI``, ``DNS`` (one ``URI=``/``DNS=`` pair per SAN entry).
    ``Cert``/``Chain`` are URL-encoded PEM; ``Subject`` is the RFC 4514 DN,
    always quoted.  To append to an incoming XFCC, join with ``","``.

    Args:
        leaf_der: the client certificate (DER).
        chain_der: the certificates after it (DER), for ``Chain``.
        by: the gateway's own identity (its certificate's URI SAN), if any.
        include_hash, include_cert, include_chain, include_subject,
            include_uri, include_dns: which pairs to emit (Envoy's
            ``set_current_client_cert_details``).

    Returns:
        The element.

    Raises:
        ForwardedCertificateError: ``leaf_der`` is not a certificate.
    """
    try:
        cert = parse_der(leaf_der)
    except CertificateError as exc:
        raise ForwardedCertificateError(f"cannot format XFCC: {exc}") from exc
    pairs: list[tuple[str, str]] = []
    if by:
        pairs.append(("By", by))
    if include_hash:
        pairs.append(("Hash", hashlib.sha256(leaf_der).hexdigest()))
    if include_cert:
        pairs.append(("Cert", _quote_pem([leaf_der])))
    if include_chain and chain_der:
        pairs.append(("Chain", _quote_pem(chain_der)))
    if include_subject:
        pairs.append(("Subject", cert.subject.rfc4514_string()))
    san = _san(cert)
    if include_uri and san is not None:
        pairs += [
            ("URI", u) for u in san.get_values_for_type(x509.UniformResourceIdentifier)
        ]
    if include_dns and san is not None:
        pairs += [("DNS", d) for d in san.get_values_for_type(x509.DNSName)]
    return ";".join(f"{key}={_xfcc_value(key, text)}" for key, text in pairs)


# -- parsing ------------------------------------------------------------------


def _check_size(value: object) -> None:
    if not isinstance(value, str):
        raise ForwardedCertificateError(
            f"expected a header value (str), got {type(value).__name__}"
        )
    if len(value) > MAX_HEADER_VALUE_SIZE:
        raise ForwardedCertificateError(
            f"header value over {MAX_HEADER_VALUE_SIZE} characters"
        )
    if not value.strip():
        raise ForwardedCertificateError("empty header value")


def _from_certificates(certs: Sequence[x509.Certificate]) -> ForwardedCertificate:
    if len(certs) - 1 > MAX_FORWARDED_CHAIN:
        raise ForwardedCertificateError(
            f"more than {MAX_FORWARDED_CHAIN} chain certificates"
        )
    ders = [c.public_bytes(Encoding.DER) for c in certs]
    return ForwardedCertificate(ders[0], tuple(ders[1:]))


def _base64_certificates(value: str) -> list[x509.Certificate]:
    decoded = decode_base64(value)
    if decoded is None:
        raise ForwardedCertificateError("base64_encoded: not base64")
    if decoded[:1] != b"\x30" and b"-----BEGIN" not in decoded:
        raise ForwardedCertificateError(
            "base64_encoded: content is neither DER nor PEM"
        )
    return parse_certificates(decoded)


def _pem_certificates(value: str) -> list[x509.Certificate]:
    text = value.strip()
    if "-----BEGIN" not in text and "%2D%2D%2D%2D%2DBEGIN" not in text.upper():
        raise ForwardedCertificateError("url_encoded: no PEM certificate found")
    return parse_certificates(text)


def _parse_rfc9440(value: str, chain_value: str | None) -> ForwardedCertificate:
    (leaf,) = _sf_binaries(value, "Client-Cert", single=True)
    chain = (
        _sf_binaries(chain_value, "Client-Cert-Chain", single=False)
        if chain_value
        else []
    )
    if len(chain) > MAX_FORWARDED_CHAIN:
        raise ForwardedCertificateError(
            f"more than {MAX_FORWARDED_CHAIN} chain certificates"
        )
    parse_der(leaf)
    for der in chain:
        parse_der(der)
    return ForwardedCertificate(leaf, tuple(chain))


def _sf_binaries(value: str, header: str, *, single: bool) -> list[bytes]:
    """Byte sequences of an RFC 8941 item or list; member parameters are ignored."""
    members = [m.strip(" \t") for m in value.split(",")]
    if single and len(members) != 1:
        raise ForwardedCertificateError(f"{header}: expected one byte sequence")
    if len(members) > MAX_FORWARDED_CHAIN + 1:
        raise ForwardedCertificateError(
            f"more than {MAX_FORWARDED_CHAIN} chain certificates"
        )
    out = []
    for member in members:
        match = _SF_BINARY.match(member)
        if match is None or member[match.end() :].lstrip(" \t")[:1] not in ("", ";"):
            raise ForwardedCertificateError(
                f"{header}: not a structured-field byte sequence"
            )
        der = strict_b64decode(match.group(1))
        if not der:
            raise ForwardedCertificateError(f"{header}: invalid or empty base64")
        out.append(der)
    return out


def _parse_xfcc(value: str, which: Literal["first", "last"]) -> ForwardedCertificate:
    elements = _xfcc_elements(value)
    pairs = elements[0] if which == "first" else elements[-1]
    fields: dict[str, str] = {}
    for key, text in pairs:
        fields.setdefault(key.lower(), text)
    if "cert" not in fields:
        raise ForwardedCertificateError("xfcc: element has no Cert")
    certs = _pem_certificates(fields["cert"])
    if len(certs) != 1:
        raise ForwardedCertificateError("xfcc: Cert must hold exactly one certificate")
    chain = _pem_certificates(fields["chain"]) if "chain" in fields else []
    leaf_der = certs[0].public_bytes(Encoding.DER)
    expected = fields.get("hash")
    if expected is not None:
        actual = hashlib.sha256(leaf_der).hexdigest()
        if not _HEX.fullmatch(expected) or not hmac.compare_digest(
            expected.lower(), actual
        ):
            raise ForwardedCertificateError("xfcc: Hash does not match Cert")
    if chain and chain[0].public_bytes(Encoding.DER) == leaf_der:
        chain = chain[1:]  # Envoy's Chain starts with the leaf itself
    return _from_certificates([certs[0], *chain])


def _xfcc_elements(value: str) -> list[list[tuple[str, str]]]:
    """Split XFCC into elements of (key, value) pairs, in one linear pass.

    Separators ``,`` (elements), ``;`` (pairs) and ``=`` (key from value) are
    literal inside double quotes; ``\\`` escapes the next character there.
    """
    elements: list[list[tuple[str, str]]] = [[]]
    token: list[str] = []
    key: str | None = None
    quoted = escaped = False
    for char in value:
        if escaped:
            token.append(char)
            escaped = False
        elif quoted:
            if char == "\\":
                escaped = True
            elif char == '"':
                quoted = False
            else:
                token.append(char)
        elif char == '"':
            quoted = True
        elif char == "=" and key is None:
            key = "".join(token).strip()
            token = []
        elif char in ",;":
            _end_pair(elements[-1], key, token)
            key, token = None, []
            if char == ",":
                if len(elements) >= MAX_XFCC_ELEMENTS:
                    raise ForwardedCertificateError(
                        f"xfcc: over {MAX_XFCC_ELEMENTS} elements"
                    )
                elements.append([])
        else:
            token.append(char)
    if quoted or escaped:
        raise ForwardedCertificateError("xfcc: unterminated quoted value")
    _end_pair(elements[-1], key, token)
    if any(not e for e in elements):
        raise ForwardedCertificateError("xfcc: empty element")
    return elements


def _end_pair(pairs: list[tuple[str, str]], key: str | None, token: list[str]) -> None:
    text = "".join(token).strip()
    if key is None:
        if text:
            raise ForwardedCertificateError("xfcc: pair without '='")
        return
    if not key:
        raise ForwardedCertificateError("xfcc: pair without a key")
    pairs.append((key, text))


# -- formatting ---------------------------------------------------------------


def _quote_pem(ders: Sequence[bytes]) -> str:
    pem = "".join(_pem(der) for der in ders)
    return urllib.parse.quote(pem, safe="")


def _pem(der: bytes) -> str:
    body = base64.b64encode(der).decode("ascii")
    lines = "\n".join(body[i : i + 64] for i in range(0, len(body), 64))
    return f"-----BEGIN CERTIFICATE-----\n{lines}\n-----END CERTIFICATE-----\n"


def _xfcc_value(key: str, text: str) -> str:
    if key in _ALWAYS_QUOTED or any(c in text for c in ',;="\\'):
        escaped = text.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}"'
    return text


def _san(cert: x509.Certificate) -> x509.SubjectAlternativeName | None:
    try:
        return cert.extensions.get_extension_for_class(
            x509.SubjectAlternativeName
        ).value
    except x509.ExtensionNotFound:
        return None
    except DECODE_ERRORS:  # pragma: no cover - parse_der touched every extension
        return None
