"""Certificate revocation by CRL, as a pure decision over data passed in.

Theory of operation
-------------------
The IO layer obtains CRLs (from CA certificate entities, or fetched from the
``cRLDistributionPoints`` URLs that :func:`crl_distribution_urls` lists, and
cached for ``cert_cache_ttl``) and hands their bytes to :func:`parse_crl`.
:func:`check_revocation` then decides, for each certificate to check (the leaf,
or every non-anchor certificate of the *verified* chain), one of three
:class:`RevocationStatus` values:

* ``REVOKED``: a *usable* CRL lists its serial number;
* ``GOOD``: a usable CRL covers it and does not list it;
* ``UNKNOWN``: no usable CRL covers it.

A CRL is *usable* for a certificate when all of these hold:

1. its issuer name equals the certificate's issuer name;
2. its signature verifies with the public key of the certificate's issuer,
   taken from the verified chain (a CRL carrying the right name but signed by
   another key is forged or from another CA: never trusted);
3. the issuer's keyUsage, when present, asserts ``cRLSign``;
4. ``thisUpdate <= now`` and ``nextUpdate`` is present and ``> now`` (a stale
   CRL proves nothing; RFC 5280 §6.3.3 (a)(2));
5. it is a complete, direct CRL: no deltaCRLIndicator, no indirect or
   reason-partitioned issuingDistributionPoint, and an IDP scope
   (``onlyContainsUserCerts``/``onlyContainsCACerts``) that includes the
   certificate.

Modes follow Kong's ``revocation_check_mode``: ``SKIP`` checks nothing;
``IGNORE_CA_ERROR`` rejects only ``REVOKED`` (a CRL that cannot be obtained or
verified is ignored); ``STRICT`` rejects ``REVOKED`` and ``UNKNOWN`` (Kong:
"a missing CRL URL ... or a failure to connect to the server results in a
revoked status"), reported as ``revocation_unknown``.  OCSP answers come
first where a client certificate is checked: :mod:`trio_gw.tls.client_revocation`.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.x509.oid import CRLEntryExtensionOID, ExtensionOID

from trio_gw.errors import CertificateError
from trio_gw.pki.encoding import find_pem_blocks, pem_block_readings
from trio_gw.pki.parse import DECODE_ERRORS

__all__ = [
    "MAX_CRL_SIZE",
    "CrlCheck",
    "RevocationCheckMode",
    "RevocationStatus",
    "check_revocation",
    "crl_distribution_urls",
    "is_crl_usable",
    "parse_crl",
    "parse_revocation_check_mode",
]

#: Largest CRL accepted, in bytes.  A CRL entry is ~40 bytes, so 16 MiB holds
#: ~400k revocations (large public CAs publish CRLs of a few MiB); bounds the
#: memory and the parse time of one fetched document.
MAX_CRL_SIZE: Final = 16 * 1024 * 1024

_CRL_LABELS: Final = frozenset({"X509 CRL", "CRL"})

_E = TypeVar("_E", bound=x509.ExtensionType)
_CRL_SIGNING_KEYS: Final = (
    rsa.RSAPublicKey,
    ec.EllipticCurvePublicKey,
    ed25519.Ed25519PublicKey,
    ed448.Ed448PublicKey,
)  # DSA-signed CRLs are not used (DSA is deprecated; naming the class warns)


class RevocationCheckMode(enum.Enum):
    """Kong ``revocation_check_mode``; values keep Kong's spelling."""

    SKIP = "SKIP"
    IGNORE_CA_ERROR = "IGNORE_CA_ERROR"
    STRICT = "STRICT"


class RevocationStatus(enum.Enum):
    """What the CRLs say about one certificate."""

    GOOD = "good"
    REVOKED = "revoked"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class CrlCheck:
    """The outcome for one certificate.

    ``detail`` explains an ``UNKNOWN`` (why each candidate CRL was unusable)
    or names the revocation reason of a ``REVOKED``; it never quotes input.
    ``source`` names what decided: ``crl``, ``ocsp`` (see
    :mod:`trio_gw.tls.client_revocation`) or ``none`` (status unknown).
    """

    status: RevocationStatus
    serial_number: int
    detail: str = ""
    source: str = "crl"


def parse_revocation_check_mode(
    value: str | RevocationCheckMode,
) -> RevocationCheckMode:
    """Read a ``revocation_check_mode`` setting (case-insensitive).

    Args:
        value: ``SKIP``, ``IGNORE_CA_ERROR`` or ``STRICT``.

    Returns:
        The mode.

    Raises:
        CertificateError: any other value.
    """
    if isinstance(value, RevocationCheckMode):
        return value
    try:
        return RevocationCheckMode(str(value).strip().upper())
    except ValueError:
        names = ", ".join(m.value for m in RevocationCheckMode)
        raise CertificateError(
            f"unknown revocation_check_mode; expected one of {names}"
        ) from None


def parse_crl(data: bytes | str) -> x509.CertificateRevocationList:
    """Parse one CRL, PEM (``X509 CRL``) or DER.

    Args:
        data: the encoded CRL.

    Returns:
        The CRL, with its entries and extensions already decoded once, so
        that later use cannot raise.

    Raises:
        CertificateError: empty, larger than :data:`MAX_CRL_SIZE`, or not a CRL.
    """
    raw = (
        data.encode("latin-1", errors="replace")
        if isinstance(data, str)
        else bytes(data)
    )
    if not raw.strip():
        raise CertificateError("empty CRL")
    if len(raw) > MAX_CRL_SIZE:
        raise CertificateError(f"CRL too large (over {MAX_CRL_SIZE} bytes)")
    der = raw if raw[:1] == b"\x30" else _pem_crl_der(raw)
    try:
        crl = x509.load_der_x509_crl(der)
        for revoked in crl:  # force lazy parts (entries, their extensions)
            _ = revoked.serial_number, revoked.extensions
        _ = crl.extensions, crl.issuer.rfc4514_string(), crl.next_update_utc
    except DECODE_ERRORS as exc:
        raise CertificateError(f"unparsable CRL: {type(exc).__name__}") from exc
    return crl


def crl_distribution_urls(cert: x509.Certificate) -> tuple[str, ...]:
    """List the CRL URLs a certificate names (for the IO layer to fetch).

    Only ``fullName`` URIs with an ``http``/``https``/``ldap`` scheme are
    returned, in certificate order without duplicates; distribution points
    naming a separate ``cRLIssuer`` (indirect CRLs) are skipped since
    :func:`check_revocation` would not use their CRL.

    Args:
        cert: the certificate.

    Returns:
        The URLs; empty when the extension is absent.
    """
    try:
        points = cert.extensions.get_extension_for_class(
            x509.CRLDistributionPoints
        ).value
    except x509.ExtensionNotFound:
        return ()
    urls: list[str] = []
    for point in points:
        if point.crl_issuer or not point.full_name:
            continue
        for name in point.full_name:
            if isinstance(name, x509.UniformResourceIdentifier):
                url = name.value
                if (
                    url.split(":", 1)[0].lower() in ("http", "https", "ldap")
                    and url not in urls
                ):
                    urls.append(url)
    return tuple(urls)


def is_crl_usable(
    crl: x509.CertificateRevocationList,
    cert: x509.Certificate,
    issuer: x509.Certificate,
    *,
    now: datetime,
) -> str | None:
    """Tell why a CRL cannot decide the status of ``cert`` (None: it can).

    Args:
        crl: a parsed CRL.
        cert: the certificate whose status is wanted.
        issuer: the certificate that issued ``cert`` (from the verified chain).
        now: validation time (timezone-aware).

    Returns:
        None when the CRL is usable (see the module docstring), else a short
        reason such as ``"stale"`` or ``"bad signature"``.
    """
    if crl.issuer != cert.issuer:
        return "other issuer"
    if not _signature_valid(crl, issuer):
        return "bad signature"
    usage = _extension(issuer, x509.KeyUsage)
    if usage is not None and not usage.crl_sign:
        return "issuer lacks cRLSign"
    next_update = crl.next_update_utc
    if crl.last_update_utc > now:
        return "not yet valid"
    if next_update is None or next_update <= now:
        return "stale"
    return _scope_problem(crl, cert)


def check_revocation(
    chain: Sequence[x509.Certificate],
    crls: Sequence[x509.CertificateRevocationList],
    *,
    now: datetime,
    full_chain: bool = False,
) -> tuple[CrlCheck, ...]:
    """Decide the revocation status of the certificates of a verified chain.

    Args:
        chain: the verified chain, leaf first, trust anchor last (as returned
            by path validation; each certificate is issued by the next).
        crls: every CRL available (parsed with :func:`parse_crl`); CRLs for
            other issuers are simply not used.
        now: validation time (timezone-aware).
        full_chain: also check the intermediates (OpenSSL ``CRL_CHECK_ALL``);
            by default only the leaf is checked, as Kong does.  The anchor
            is trusted by configuration and never checked.

    Returns:
        One :class:`CrlCheck` per checked certificate, leaf first.  A chain of
        one certificate (a pinned leaf that is itself the anchor) has nothing
        to check and gives ``()``.
    """
    count = len(chain) - 1 if full_chain else min(1, len(chain) - 1)
    return tuple(_check_one(chain[i], chain[i + 1], crls, now) for i in range(count))


def _check_one(
    cert: x509.Certificate,
    issuer: x509.Certificate,
    crls: Sequence[x509.CertificateRevocationList],
    now: datetime,
) -> CrlCheck:
    serial = cert.serial_number
    problems: list[str] = []
    covered = False
    for crl in crls:
        problem = is_crl_usable(crl, cert, issuer, now=now)
        if problem is not None:
            if problem != "other issuer":
                problems.append(problem)
            continue
        entry = crl.get_revoked_certificate_by_serial_number(serial)
        if (
            entry is not None
            and _entry_reason(entry) != x509.ReasonFlags.remove_from_crl.value
        ):
            return CrlCheck(RevocationStatus.REVOKED, serial, _entry_reason(entry))
        covered = True
    if covered:
        return CrlCheck(RevocationStatus.GOOD, serial)
    detail = "; ".join(sorted(set(problems))) if problems else "no CRL for this issuer"
    return CrlCheck(RevocationStatus.UNKNOWN, serial, detail)


def _pem_crl_der(raw: bytes) -> bytes:
    for block in find_pem_blocks(raw.decode("latin-1")):
        if block.label in _CRL_LABELS:
            readings = pem_block_readings(block)
            if readings:
                return readings[0]
            raise CertificateError("unparsable CRL: PEM body is not valid base64")
    raise CertificateError("unparsable CRL: neither DER nor a PEM X509 CRL block")


def _signature_valid(
    crl: x509.CertificateRevocationList, issuer: x509.Certificate
) -> bool:
    key = issuer.public_key()
    if not isinstance(key, _CRL_SIGNING_KEYS):  # X25519, X448: cannot sign anything
        return False
    try:
        return crl.is_signature_valid(key)
    except DECODE_ERRORS:  # pragma: no cover - unsupported signature parameters
        return False


def _scope_problem(
    crl: x509.CertificateRevocationList, cert: x509.Certificate
) -> str | None:
    # RFC 5280 §5.2: a CRL with an unknown critical extension must not be used.
    for extension in crl.extensions:
        if extension.oid == ExtensionOID.DELTA_CRL_INDICATOR:
            return "delta CRL"
        if extension.critical and extension.oid not in _UNDERSTOOD_CRL_EXTENSIONS:
            return "unknown critical CRL extension"
        if extension.critical and extension.oid == ExtensionOID.CRL_NUMBER:
            return "malformed CRL (critical cRLNumber, RFC 5280 §5.2.3)"
    idp = _crl_extension(crl, x509.IssuingDistributionPoint)
    if idp is None:
        return None
    if idp.indirect_crl or idp.only_some_reasons or idp.only_contains_attribute_certs:
        return "partial or indirect CRL"
    is_ca = _is_ca(cert)
    if (idp.only_contains_ca_certs and not is_ca) or (
        idp.only_contains_user_certs and is_ca
    ):
        return "CRL scope excludes this certificate"
    return None


#: CRL extensions whose meaning :func:`_scope_problem` takes into account.
_UNDERSTOOD_CRL_EXTENSIONS: Final = frozenset(
    {
        ExtensionOID.ISSUING_DISTRIBUTION_POINT,
        ExtensionOID.CRL_NUMBER,
        ExtensionOID.AUTHORITY_KEY_IDENTIFIER,
    }
)


def _entry_reason(entry: x509.RevokedCertificate) -> str:
    try:
        ext = entry.extensions.get_extension_for_oid(CRLEntryExtensionOID.CRL_REASON)
    except x509.ExtensionNotFound:
        return "unspecified"
    value = ext.value
    return value.reason.value if isinstance(value, x509.CRLReason) else "unspecified"


def _is_ca(cert: x509.Certificate) -> bool:
    constraints = _extension(cert, x509.BasicConstraints)
    return constraints is not None and constraints.ca


def _extension(cert: x509.Certificate, kind: type[_E]) -> _E | None:
    try:
        return cert.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None


def _crl_extension(crl: x509.CertificateRevocationList, kind: type[_E]) -> _E | None:
    try:
        return crl.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None
