"""Parse certificates and private keys from every encoding the gateway meets.

Theory of operation
-------------------
Certificates reach the gateway as PEM (Admin API bodies, declarative files), as
DER (the TLS handshake), as base64 of DER or of PEM (Gravitee's "paste the
certificate base64-encoded", headers set by load balancers) and as URL-encoded
PEM (nginx ``$ssl_client_escaped_cert``, AWS ALB ``X-Amzn-Mtls-Clientcert``,
which keeps ``+``/``=``/``/`` unescaped and may turn line breaks into spaces or
``+``).  :func:`parse_certificates` detects the encoding and returns the
certificates in input order.

PEM is not handed to OpenSSL's PEM reader: each ``BEGIN``/``END`` block is
located here, its body stripped of all whitespace (CRLF, tabs, the spaces an
ALB leaves for newlines) and base64-decoded strictly, and the DER is parsed.
That makes whitespace damage harmless and keeps one strict path for the bytes.

Every failure is a :class:`~trio_gw.errors.CertificateError` with a reason that
never quotes the input (it may hold a private key).  Certificates returned are
*usable*: the lazily parsed parts (names, extensions, public key, validity) have
been touched once, so later inspection cannot raise a foreign exception.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Callable
from typing import Final, TypeVar

from cryptography import x509
from cryptography.exceptions import InternalError, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    PrivateKeyTypes,
)

from trio_gw.errors import CertificateError
from trio_gw.pki.encoding import (
    decode_base64,
    der_serial_sign,
    find_pem_blocks,
    legacy_pem,
    pem_block_readings,
)
from trio_gw.pki.keys import KEY_TYPE_DISPLAY, key_type

#: Largest input accepted, in bytes (or characters).  nginx's default
#: ``large_client_header_buffers`` is 8 KiB and a long chain is ~10 KiB of PEM;
#: 1 MiB leaves room for CA bundles while bounding the work per input.
DEFAULT_MAX_INPUT_SIZE: Final = 1024 * 1024

_CERT_LABELS: Final = frozenset({"CERTIFICATE", "X509 CERTIFICATE", "TRUSTED CERTIFICATE"})
_KEY_LABELS: Final = frozenset(
    {"PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY", "DSA PRIVATE KEY", "ENCRYPTED PRIVATE KEY"}
)
#: Largest private key accepted, as DER.  An RSA-16384 PKCS#8 key is ~9.4 KB;
#: loading validates RSA keys, whose cost grows steeply with the modulus.
DEFAULT_MAX_KEY_DER_SIZE: Final = 16 * 1024

_PERCENT_ESCAPE: Final = re.compile(r"%[0-9A-Fa-f]{2}")

_SIGNING_KEY_TYPES: Final = (
    rsa.RSAPrivateKey,
    ec.EllipticCurvePrivateKey,
    ed25519.Ed25519PrivateKey,
    ed448.Ed448PrivateKey,
)  # not DSA: deprecated by cryptography, refused by OpenSSL's security level 2 (pki/keys.py names it)

#: What cryptography raises on undecodable input.  Several of these derive
#: from ``Exception`` only (``InvalidVersion``: found by fuzzing), so a bare
#: ``ValueError`` is not enough.
DECODE_ERRORS: Final = (
    ValueError,
    TypeError,
    UnsupportedAlgorithm,
    InternalError,
    x509.InvalidVersion,
    x509.DuplicateExtension,
    x509.UnsupportedGeneralNameType,
)

_T = TypeVar("_T")

Data = str | bytes | bytearray | memoryview


def parse_certificates(data: Data) -> list[x509.Certificate]:
    """Parse one or more certificates in any supported encoding.

    Accepted: PEM (one or many blocks, text around them ignored), DER, base64
    of DER or of PEM (standard or URL-safe alphabet), URL-encoded PEM.

    Args:
        data: the encoded certificate(s).

    Returns:
        The certificates, in input order (at least one).

    Raises:
        CertificateError: the input is empty, too large, of the wrong type, or
            holds no parsable certificate.
    """
    raw = _as_bytes(data)
    if raw[:1] == b"\x30":
        return [parse_der(raw)]
    text = raw.decode("latin-1")
    if "%" in text and _PERCENT_ESCAPE.search(text):
        text = urllib.parse.unquote(text, encoding="latin-1")
    if "-----BEGIN" in text:
        return parse_pem_chain(text)
    decoded = decode_base64(text)
    if decoded is None:
        raise CertificateError("unparsable certificate: not PEM, DER or base64")
    if decoded[:1] == b"\x30":
        return [parse_der(decoded)]
    if b"-----BEGIN" in decoded:
        return parse_pem_chain(decoded)
    raise CertificateError("unparsable certificate: base64 content is neither DER nor PEM")


def parse_pem_chain(data: Data) -> list[x509.Certificate]:
    """Parse every ``CERTIFICATE`` block of a PEM text.

    Whitespace inside a block (CRLF, tabs, spaces in place of line breaks) is
    ignored; text outside the blocks and blocks of other kinds are skipped.

    Args:
        data: PEM text.

    Returns:
        The certificates, in input order (at least one).

    Raises:
        CertificateError: no certificate block, or a block that is not a
            certificate in valid base64 DER.
    """
    text = _as_bytes(data).decode("latin-1")
    blocks = find_pem_blocks(text)
    certs: list[x509.Certificate] = []
    for index, block in enumerate(b for b in blocks if b.label in _CERT_LABELS):
        what = f"certificate {index + 1}"
        candidates = pem_block_readings(block)
        if not candidates:
            raise CertificateError(f"unparsable PEM: {what} is not valid base64")
        certs.append(_first_success(candidates, lambda der: _load_der(der, what)))
    if not certs:
        if any(b.label in _KEY_LABELS for b in blocks):
            raise CertificateError("unparsable PEM: no certificate found (only a private key)")
        raise CertificateError("unparsable PEM: no certificate found")
    return certs


def parse_der(data: Data) -> x509.Certificate:
    """Parse one DER-encoded certificate.

    Args:
        data: the DER bytes (nothing before or after).

    Returns:
        The certificate.

    Raises:
        CertificateError: the bytes are not exactly one valid certificate.
    """
    return _load_der(_as_bytes(data), "certificate")


def has_private_key_block(data: Data) -> bool:
    """Tell whether a text holds a PEM private-key block (in any supported encoding).

    Used to refuse certificate fields that would leak a key when shown back.

    Args:
        data: PEM, URL-encoded PEM or base64 of PEM.

    Returns:
        True if a ``... PRIVATE KEY`` block is present.
    """
    if not isinstance(data, str | bytes | bytearray | memoryview):
        return False
    text = bytes(data).decode("latin-1") if not isinstance(data, str) else data
    if "%" in text:
        text = urllib.parse.unquote(text, encoding="latin-1")
    if "PRIVATE" not in text and "-----BEGIN" not in text:
        decoded = decode_base64(text[:DEFAULT_MAX_INPUT_SIZE])
        text = decoded.decode("latin-1") if decoded else ""
    return any(b.label in _KEY_LABELS for b in find_pem_blocks(text))


def parse_private_key(
    data: Data, password: bytes | None = None
) -> CertificateIssuerPrivateKeyTypes:
    """Parse a private key usable for a certificate (RSA, EC, Ed25519, Ed448, DSA).

    Accepts PEM as PKCS#1 (``RSA PRIVATE KEY``), SEC1 (``EC PRIVATE KEY``),
    PKCS#8 (``PRIVATE KEY``), encrypted PKCS#8 (``ENCRYPTED PRIVATE KEY``) and
    legacy OpenSSL-encrypted PEM, and DER.  A block's label is not trusted: a
    PKCS#1 body labelled ``PRIVATE KEY`` (as in Kong's documentation sample)
    is read by its structure.  Other PEM blocks (a certificate placed before
    the key, as Tyk's store expects) are skipped.  A password given for an
    unencrypted key is ignored.

    Args:
        data: the encoded key.
        password: passphrase of an encrypted key.

    Returns:
        The private key.

    Raises:
        CertificateError: no key, several keys, encrypted without password,
            wrong password, or an unsupported or malformed key.  The message
            never contains key material.
    """
    raw = _as_bytes(data)
    if raw[:1] == b"\x30":
        return _load_key(raw, password, pem=False)
    blocks = [b for b in find_pem_blocks(raw.decode("latin-1")) if b.label in _KEY_LABELS]
    if not blocks:
        raise CertificateError("unparsable key: no PEM private key found")
    if len(blocks) > 1:
        raise CertificateError(f"expected exactly one private key, found {len(blocks)}")
    block = blocks[0]
    if block.has_headers:
        return _load_key(legacy_pem(block), password, pem=True)
    candidates = pem_block_readings(block)
    if not candidates:
        raise CertificateError("unparsable key: PEM body is not valid base64")
    return _first_success(candidates, lambda der: _load_key(der, password, pem=False))


def _as_bytes(data: object) -> bytes:
    if isinstance(data, str):
        if len(data) > DEFAULT_MAX_INPUT_SIZE:
            raise CertificateError(f"input too large (over {DEFAULT_MAX_INPUT_SIZE} bytes)")
        raw = data.encode("utf-8", errors="replace")
    elif isinstance(data, bytes | bytearray | memoryview):
        raw = bytes(data)
    else:
        raise CertificateError(f"expected text or bytes, got {type(data).__name__}")
    if len(raw) > DEFAULT_MAX_INPUT_SIZE:
        raise CertificateError(f"input too large (over {DEFAULT_MAX_INPUT_SIZE} bytes)")
    if not raw.strip():
        raise CertificateError("empty input")
    return raw


def _first_success(candidates: list[bytes], load: Callable[[bytes], _T]) -> _T:
    errors: list[CertificateError] = []
    for der in candidates:
        try:
            return load(der)
        except CertificateError as exc:
            errors.append(exc)
    raise errors[0]  # the plain reading's reason is the one worth reporting


def _load_der(der: bytes, what: str) -> x509.Certificate:
    if der_serial_sign(der) == "not positive":
        # cryptography warns today and will raise in a future release; a
        # warning turned into an error (-W error) must not escape as one.
        raise CertificateError(f"unparsable {what}: serial number is not positive (RFC 5280)")
    try:
        cert = x509.load_der_x509_certificate(der)
        _touch(cert)
    except DECODE_ERRORS as exc:
        raise CertificateError(f"unparsable {what}: {_reason(exc)}") from exc
    return cert


def _touch(cert: x509.Certificate) -> None:
    """Force the lazily parsed parts, so later use of ``cert`` cannot raise."""
    cert.subject.rfc4514_string()
    cert.issuer.rfc4514_string()
    _ = cert.serial_number, cert.not_valid_before_utc, cert.not_valid_after_utc
    for extension in cert.extensions:
        _ = extension.value
    cert.public_key()


def _load_key(
    data: bytes, password: bytes | None, *, pem: bool
) -> CertificateIssuerPrivateKeyTypes:
    if len(data) > DEFAULT_MAX_KEY_DER_SIZE * (2 if pem else 1):
        raise CertificateError(f"key too large (over {DEFAULT_MAX_KEY_DER_SIZE} bytes of DER)")
    load = serialization.load_pem_private_key if pem else serialization.load_der_private_key
    try:
        try:
            key = load(data, password)
        except TypeError as exc:
            if password is None:
                raise CertificateError("key is encrypted and no password was given") from exc
            key = load(data, None)  # a password for an unencrypted key: ignore it
    except CertificateError:
        raise
    except ValueError as exc:
        if password is not None and ("decrypt" in str(exc).lower() or _is_encrypted(data, pem)):
            # A wrong password usually fails the padding check ("decrypt"); about once in
            # 256 tries the padding happens to be valid and the garbage fails to parse instead.
            raise CertificateError("cannot decrypt key: wrong password?") from exc
        raise CertificateError(f"unparsable key: {_reason(exc)}") from exc
    except DECODE_ERRORS as exc:
        raise CertificateError(f"unparsable key: {_reason(exc)}") from exc
    return _signing_key(key)


def _is_encrypted(data: bytes, pem: bool) -> bool:
    """Whether ``data`` is an encrypted key: PKCS#8 ``ENCRYPTED PRIVATE KEY`` or legacy ``Proc-Type: 4,ENCRYPTED``."""
    if pem:
        return b"ENCRYPTED" in data
    try:
        return serialization.load_der_private_key(data, None) is None  # pragma: no cover (never None)
    except TypeError:  # "Password was not given but private key is encrypted"
        return True
    except (ValueError, *DECODE_ERRORS):
        return False


def _signing_key(key: PrivateKeyTypes) -> CertificateIssuerPrivateKeyTypes:
    if not isinstance(key, _SIGNING_KEY_TYPES):
        name = KEY_TYPE_DISPLAY.get(key_type(key), type(key).__name__)
        raise CertificateError(
            f"unsupported key type {name} (supported: RSA, ECDSA, Ed25519, Ed448)"
        )
    return key


def _reason(exc: BaseException) -> str:
    """A short reason from a cryptography error (its messages never echo input)."""
    text = str(exc).split(". ")[0].strip().rstrip(".")
    return text[:200] if text else type(exc).__name__
