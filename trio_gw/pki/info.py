"""Facts about a certificate: identifiers, pins, names, key, validity.

Identifiers used across the gateway:

- :func:`fingerprint_sha256`: lowercase hex SHA-256 of the DER, the same digest
  as ``openssl x509 -noout -fingerprint -sha256`` (without colons) and as
  ``sha256(getpeercert(binary_form=True))`` in the data plane.
- :func:`certificate_id`: ``"sha256:<hex>"``, the Tyk certificate-store style id.
- :func:`spki_pin`: ``"sha256//<base64>"``, the ``curl --pinnedpubkey`` form
  (docs/tls-stack.md §7).

Time is always a parameter (Unix seconds); nothing here reads the clock.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Final, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from trio_gw.errors import CertificateError
from trio_gw.pki.keys import key_size, key_type
from trio_gw.pki.parse import DECODE_ERRORS

#: Seconds per day, for :meth:`CertificateInfo.days_to_expiry`.
SECONDS_PER_DAY: Final = 86_400

_E = TypeVar("_E", bound=x509.ExtensionType)

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=timezone.utc)


def fingerprint_sha256(cert: x509.Certificate) -> str:
    """Give the SHA-256 fingerprint of a certificate's DER encoding.

    Args:
        cert: the certificate.

    Returns:
        64 lowercase hex digits.
    """
    return cert.fingerprint(hashes.SHA256()).hex()


def peer_identity(der: bytes) -> tuple[str, str]:
    """The fingerprint and subject of a peer's certificate, for the access log (once per connection).

    Args:
        der: the certificate as received in the handshake (``getpeercert(binary_form=True)``).

    Returns:
        ``(lowercase hex SHA-256 of the DER, RFC 4514 subject)``.

    Raises:
        CertificateError: the bytes are not a certificate.
    """
    try:
        subject = x509.load_der_x509_certificate(der).subject.rfc4514_string()
    except DECODE_ERRORS as exc:
        raise CertificateError("not a DER certificate") from exc
    return hashlib.sha256(der).hexdigest(), subject


def certificate_id(cert: x509.Certificate) -> str:
    """Give the store id of a certificate, Tyk style.

    Args:
        cert: the certificate.

    Returns:
        ``"sha256:"`` followed by :func:`fingerprint_sha256`.
    """
    return "sha256:" + fingerprint_sha256(cert)


def spki_pin(cert: x509.Certificate) -> str:
    """Give the SPKI pin of a certificate's public key.

    Args:
        cert: the certificate.

    Returns:
        ``"sha256//"`` followed by the base64 SHA-256 of the DER
        SubjectPublicKeyInfo, as ``curl --pinnedpubkey`` expects.

    Raises:
        CertificateError: the public key is of an unsupported algorithm.
    """
    try:
        spki = cert.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    except DECODE_ERRORS as exc:
        raise CertificateError("unsupported public key algorithm") from exc
    return "sha256//" + base64.b64encode(hashlib.sha256(spki).digest()).decode("ascii")


def format_timestamp(seconds: int) -> str:
    """Format Unix seconds as RFC 3339 UTC, e.g. ``2024-01-01T00:00:00Z``.

    Args:
        seconds: Unix time (may be negative).

    Returns:
        The timestamp text.
    """
    return (_EPOCH + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def unix_seconds(moment: datetime) -> int:
    """Convert an aware datetime to whole Unix seconds (exact for years 1–9999).

    Args:
        moment: an aware datetime.

    Returns:
        Seconds since 1970-01-01T00:00:00Z, rounded down.
    """
    return (moment - _EPOCH) // timedelta(seconds=1)


@dataclass(frozen=True)
class CertificateInfo:
    """A plain description of one certificate, for policy, API output and logs.

    Names are as the certificate states them (no lowercasing); ``subject`` and
    ``issuer`` are RFC 4514 strings.  ``key_size`` is in bits (the curve size
    for EC).  ``path_length`` is ``None`` when unbounded or not a CA.
    """

    subject: str
    issuer: str
    serial: int
    fingerprint_sha256: str
    spki_pin: str
    common_names: tuple[str, ...]
    dns_names: tuple[str, ...]
    ip_addresses: tuple[str, ...]
    uris: tuple[str, ...]
    emails: tuple[str, ...]
    key_type: str
    key_size: int
    key_curve: str | None
    not_before: int
    not_after: int
    is_ca: bool
    path_length: int | None
    is_self_issued: bool

    @property
    def serial_hex(self) -> str:
        """The serial number as lowercase hex (how OpenSSL and browsers show it)."""
        return format(self.serial, "x")

    def days_to_expiry(self, now: int) -> int:
        """Whole days from ``now`` until ``not_after``, rounded down; negative once expired.

        Args:
            now: Unix seconds.

        Returns:
            Days left (``-1`` a second after expiry).
        """
        return (self.not_after - now) // SECONDS_PER_DAY

    def is_expired(self, now: int) -> bool:
        """Tell whether ``now`` is after ``not_after``.

        Args:
            now: Unix seconds.

        Returns:
            True once the certificate has expired (``not_after`` itself is valid).
        """
        return now > self.not_after

    def is_not_yet_valid(self, now: int) -> bool:
        """Tell whether ``now`` is before ``not_before``.

        Args:
            now: Unix seconds.

        Returns:
            True while the certificate is not valid yet.
        """
        return now < self.not_before

    def is_valid_at(self, now: int) -> bool:
        """Tell whether ``now`` lies inside the validity window (bounds included).

        Args:
            now: Unix seconds.

        Returns:
            True when ``not_before <= now <= not_after``.
        """
        return self.not_before <= now <= self.not_after


def describe_certificate(cert: x509.Certificate) -> CertificateInfo:
    """Describe a certificate.

    Args:
        cert: a certificate, normally from :mod:`trio_gw.pki.parse` (which
            guarantees every part below is parsable).

    Returns:
        Its :class:`CertificateInfo`.

    Raises:
        CertificateError: a part of the certificate cannot be decoded (only
            possible for certificates not obtained from :mod:`trio_gw.pki.parse`).
    """
    try:
        return _describe(cert)
    except DECODE_ERRORS as exc:
        raise CertificateError(f"undecodable certificate: {exc}") from exc


def _describe(cert: x509.Certificate) -> CertificateInfo:
    public = cert.public_key()
    constraints = _extension(cert, x509.BasicConstraints)
    san = _extension(cert, x509.SubjectAlternativeName)
    return CertificateInfo(
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        serial=cert.serial_number,
        fingerprint_sha256=fingerprint_sha256(cert),
        spki_pin=spki_pin(cert),
        common_names=_common_names(cert.subject),
        dns_names=tuple(san.get_values_for_type(x509.DNSName)) if san else (),
        ip_addresses=tuple(str(a) for a in san.get_values_for_type(x509.IPAddress))
        if san
        else (),
        uris=tuple(san.get_values_for_type(x509.UniformResourceIdentifier)) if san else (),
        emails=tuple(san.get_values_for_type(x509.RFC822Name)) if san else (),
        key_type=key_type(public),
        key_size=key_size(public),
        key_curve=public.curve.name if isinstance(public, ec.EllipticCurvePublicKey) else None,
        not_before=unix_seconds(cert.not_valid_before_utc),
        not_after=unix_seconds(cert.not_valid_after_utc),
        is_ca=bool(constraints and constraints.ca),
        path_length=constraints.path_length if constraints and constraints.ca else None,
        is_self_issued=cert.subject == cert.issuer,
    )


def _extension(cert: x509.Certificate, kind: type[_E]) -> _E | None:
    try:
        return cert.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None


def _common_names(name: x509.Name) -> tuple[str, ...]:
    values = (a.value for a in name.get_attributes_for_oid(NameOID.COMMON_NAME))
    return tuple(v if isinstance(v, str) else v.decode("latin-1") for v in values)
