"""Validation of the certificate-bearing entities: Certificate and CA Certificate.

Used by the declarative loader and by the Admin API, so both reject the same
inputs with the same messages.  Each function collects *every* problem of one
entity and raises a single :class:`~trio_gw.errors.ConfigError`; problem paths
are relative to the entity (``"key"``, ``"cert_alt"``), and the caller prefixes
them (``certificates[3].key``) with :meth:`ConfigError.prefixed`.

Decisions:

- An **expired leaf is rejected** (Tyk rejects expired uploads; a gateway
  serving one breaks every client).  Only the leaf: a chain may carry an
  expired cross-signed intermediate on purpose (the DST Root X3 cross-sign was
  served for years after it expired, for old Android clients).
- A **not-yet-valid** certificate is **accepted**: uploading the next
  certificate before its window opens is how rotation is staged.  It is
  reported by :func:`certificate_warnings` (``config check``, expiry monitor).
- **Encrypted keys are rejected** here: entities carry no passphrase, and
  sealing at rest is the store's job, not the key's PEM encryption.  The
  message says how to remove the passphrase (Kong's own recipe does).
- **Keys below OpenSSL's security level 2 are rejected** (RSA/DSA under 2048
  bits, curves under 224 bits) with their size: OpenSSL would refuse to serve
  them anyway (``EE_KEY_TOO_SMALL``), and saying so at upload names the field.
- A ``cert`` field holding a private key is rejected, because ``cert`` is shown
  back by the Admin API and in logs; the message never contains key material.
- Stored PEM is normalised: the chain is re-encoded certificate by certificate
  (leaf first, input order), the key as unencrypted PKCS#8.
- Unknown fields are rejected (see :data:`CERTIFICATE_FIELDS`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
)

from trio_gw.errors import CertificateError, ConfigError, Problem
from trio_gw.model.entities import CACertificate, Certificate
from trio_gw.model.fields import field_label
from trio_gw.pki.info import describe_certificate, fingerprint_sha256, format_timestamp
from trio_gw.pki.keys import KEY_TYPE_DISPLAY, key_matches_certificate, key_size, key_type
from trio_gw.pki.parse import (
    DECODE_ERRORS,
    has_private_key_block,
    parse_certificates,
    parse_private_key,
)

#: Fields a Certificate may carry.  ``id``, ``snis`` and the timestamps are
#: accepted and left to the caller.
CERTIFICATE_FIELDS: Final = frozenset(
    {"cert", "key", "cert_alt", "key_alt", "tags", "id", "snis", "created_at", "updated_at"}
)
#: Fields a CA Certificate may carry (``id`` and timestamps left to the caller).
CA_CERTIFICATE_FIELDS: Final = frozenset(
    {"cert", "cert_digest", "crls", "tags", "id", "created_at", "updated_at"}
)
#: Smallest RSA/DSA modulus and EC curve OpenSSL's default security level (2) serves.
MIN_RSA_BITS: Final = 2048
MIN_EC_BITS: Final = 224
#: Days before expiry from which :func:`certificate_warnings` warns (Let's
#: Encrypt renews at 30 days left; certbot's default is the same).
DEFAULT_EXPIRY_WARNING_DAYS: Final = 30


@dataclass(frozen=True)
class _Pair:
    """A parsed certificate chain with its key, before normalisation."""

    chain: list[x509.Certificate]
    key: CertificateIssuerPrivateKeyTypes


def parse_certificate_entity(raw: Mapping[str, Any], *, now: int, id: str) -> Certificate:
    """Validate a Certificate entity (Kong's ``certificates``).

    Args:
        raw: the entity as decoded from JSON/YAML.
        now: current Unix time, for the expiry check.
        id: the entity's id (already validated by the caller).

    Returns:
        The entity, with normalised PEM ``cert``/``key`` (and alt pair).

    Raises:
        ConfigError: every problem found, paths relative to the entity.
    """
    problems: list[Problem] = []
    if not isinstance(raw, Mapping):
        raise ConfigError("must be an object")
    problems += _unknown_fields(raw, CERTIFICATE_FIELDS)
    tags = _tags(raw.get("tags"), problems)
    main = _pair(raw, "cert", "key", now, problems, required=True)
    alt = _pair(raw, "cert_alt", "key_alt", now, problems, required=False)
    if main is not None and alt is not None:
        main_type, alt_type = key_type(main.key), key_type(alt.key)
        if main_type == alt_type:
            both = KEY_TYPE_DISPLAY.get(main_type, main_type)
            problems.append(
                Problem("cert_alt", f"must use a different key type than cert (both are {both})")
            )
    if problems or main is None:
        raise ConfigError(problems or [Problem("cert", "required")])
    return Certificate(
        id=id,
        cert=_chain_pem(main.chain),
        key=_key_pem(main.key),
        cert_alt=_chain_pem(alt.chain) if alt else None,
        key_alt=_key_pem(alt.key) if alt else None,
        tags=tags,
    )


def parse_ca_certificate_entity(raw: Mapping[str, Any], *, now: int, id: str) -> CACertificate:
    """Validate a CA Certificate entity (Kong's ``ca_certificates``).

    Args:
        raw: the entity as decoded from JSON/YAML.
        now: current Unix time, for the expiry check.
        id: the entity's id (already validated by the caller).

    Returns:
        The entity, with normalised PEM ``cert`` and its computed
        ``cert_digest`` (lowercase hex SHA-256 of the DER).

    Raises:
        ConfigError: every problem found, paths relative to the entity.
    """
    if not isinstance(raw, Mapping):
        raise ConfigError("must be an object")
    problems = _unknown_fields(raw, CA_CERTIFICATE_FIELDS)
    tags = _tags(raw.get("tags"), problems)
    chain = _chain(raw, "cert", problems, required=True)
    cert = None
    if chain is not None and len(chain) != 1:
        problems.append(Problem("cert", f"expected exactly one certificate, found {len(chain)}"))
    elif chain is not None:
        cert = chain[0]
        problems += _ca_problems(cert, now)
    digest = fingerprint_sha256(cert) if cert is not None else None
    given = raw.get("cert_digest")
    if given is not None:
        if not isinstance(given, str):
            problems.append(Problem("cert_digest", "must be a string"))
        elif digest is not None and _normal_digest(given) != digest:
            problems.append(
                Problem("cert_digest", f"does not match the certificate (its digest is {digest})")
            )
    crls = _crls(raw.get("crls"), cert, problems)
    if problems or cert is None or digest is None:
        raise ConfigError(problems or [Problem("cert", "required")])
    return CACertificate(id=id, cert=_chain_pem([cert]), cert_digest=digest, crls=crls, tags=tags)


#: CRLs attached to one CA certificate (each may be large; the Admin API bounds bodies too).
MAX_ATTACHED_CRLS = 16


def _crls(value: Any, ca: x509.Certificate | None, problems: list[Problem]) -> tuple[str, ...]:
    """Attached CRLs: PEM texts, each issued and signed by this CA (so a wrong file is caught at upload)."""
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or len(value) > MAX_ATTACHED_CRLS:
        problems.append(Problem("crls", f"expected a list of at most {MAX_ATTACHED_CRLS} PEM CRLs"))
        return ()
    out = []
    for i, text in enumerate(value):
        if not isinstance(text, str):
            problems.append(Problem(f"crls[{i}]", "expected a PEM CRL (text)"))
            continue
        try:
            crl = x509.load_pem_x509_crl(text.strip().encode())
            for revoked in crl:  # force the lazy parts, as tls.revocation.parse_crl does when it is used
                _ = revoked.serial_number, revoked.extensions
            _ = crl.extensions, crl.issuer.rfc4514_string(), crl.next_update_utc
        except DECODE_ERRORS:  # InvalidVersion is not a ValueError (found by fuzzing)
            problems.append(Problem(f"crls[{i}]", "not a PEM CRL (-----BEGIN X509 CRL-----)"))
            continue
        if ca is not None:
            if crl.issuer != ca.subject:
                problems.append(Problem(f"crls[{i}]", "was not issued by this CA (issuer name differs)"))
                continue
            try:
                valid = crl.is_signature_valid(ca.public_key())  # type: ignore[arg-type]
            except DECODE_ERRORS:
                valid = False
            if not valid:
                problems.append(Problem(f"crls[{i}]", "its signature does not verify with this CA's key"))
                continue
        out.append(crl.public_bytes(serialization.Encoding.PEM).decode())
    return tuple(out)


def redact_certificate(certificate: Certificate) -> dict[str, Any]:
    """Give a Certificate as a plain dict without its private keys.

    For Admin API responses and logs: ``key``/``key_alt`` are left out (the
    Admin API never returns keys); ``has_key_alt`` tells whether an alternate
    key is stored.

    Args:
        certificate: the entity.

    Returns:
        A JSON-ready dict.
    """
    return {
        "id": certificate.id,
        "cert": certificate.cert,
        "cert_alt": certificate.cert_alt,
        "has_key_alt": certificate.key_alt is not None,
        "tags": list(certificate.tags),
        "created_at": certificate.created_at,
        "updated_at": certificate.updated_at,
    }


def certificate_warnings(
    pem: str, *, now: int, warn_days: int = DEFAULT_EXPIRY_WARNING_DAYS
) -> tuple[str, ...]:
    """List the non-fatal facts worth telling about a stored leaf certificate.

    Args:
        pem: a normalised ``cert`` (or ``cert_alt``) field of a stored entity.
        now: current Unix time.
        warn_days: warn when fewer days than this remain.

    Returns:
        Messages such as ``"not valid before 2030-01-01T00:00:00Z"`` or
        ``"expires in 12 days (2025-01-13T00:00:00Z)"``; empty when all is well.

    Raises:
        CertificateError: ``pem`` holds no parsable certificate.
    """
    info = describe_certificate(parse_certificates(pem)[0])
    notes = []
    if info.is_not_yet_valid(now):
        notes.append(f"not valid before {format_timestamp(info.not_before)}")
    if info.is_expired(now):
        notes.append(f"expired on {format_timestamp(info.not_after)}")
    elif info.days_to_expiry(now) < warn_days:
        days = info.days_to_expiry(now)
        notes.append(f"expires in {days} days ({format_timestamp(info.not_after)})")
    return tuple(notes)


def _pair(
    raw: Mapping[str, Any],
    cert_field: str,
    key_field: str,
    now: int,
    problems: list[Problem],
    *,
    required: bool,
) -> _Pair | None:
    has_cert, has_key = raw.get(cert_field) is not None, raw.get(key_field) is not None
    if not required and has_cert != has_key:
        missing, present = (key_field, cert_field) if has_cert else (cert_field, key_field)
        problems.append(Problem(missing, f"required when {present} is given"))
    chain = _chain(raw, cert_field, problems, required=required)
    key = _key(raw, key_field, problems) if has_key or required else None
    if chain is None:
        return None
    problems += _leaf_problems(chain[0], cert_field, now)
    if key is None:
        return None
    if not key_matches_certificate(key, chain[0]):
        problems.append(Problem(key_field, _mismatch(key, chain, cert_field)))
        return None
    small = _too_small(key)
    if small is not None:
        problems.append(Problem(key_field, small))
        return None
    return _Pair(chain, key)


def _too_small(key: CertificateIssuerPrivateKeyTypes) -> str | None:
    kind = key_type(key)
    minimum = {"rsa": MIN_RSA_BITS, "dsa": MIN_RSA_BITS, "ec": MIN_EC_BITS}.get(kind)
    bits = key_size(key)
    if minimum is None or bits >= minimum:
        return None
    return (f"{KEY_TYPE_DISPLAY.get(kind, kind)} key of {bits} bits is too small: at least {minimum} bits "
            "(OpenSSL security level 2 refuses it)")


def _chain(
    raw: Mapping[str, Any], field: str, problems: list[Problem], *, required: bool
) -> list[x509.Certificate] | None:
    value = raw.get(field)
    if value is None:
        if required:
            problems.append(Problem(field, "required"))
        return None
    if not isinstance(value, str):
        problems.append(Problem(field, "must be a string (PEM)"))
        return None
    try:
        chain = parse_certificates(value)
    except CertificateError as exc:
        problems.append(Problem(field, str(exc)))
        return None
    if has_private_key_block(value):
        problems.append(Problem(field, "must not contain a private key"))
        return None
    return chain


def _key(
    raw: Mapping[str, Any], field: str, problems: list[Problem]
) -> CertificateIssuerPrivateKeyTypes | None:
    value = raw.get(field)
    if value is None:
        problems.append(Problem(field, "required"))
        return None
    if not isinstance(value, str):
        problems.append(Problem(field, "must be a string (PEM)"))
        return None
    try:
        return parse_private_key(value)
    except CertificateError as exc:
        message = str(exc)
        if "encrypted" in message:
            message += ": trio-gw takes no passphrase; remove it (openssl pkey -in KEY -out KEY)"
        problems.append(Problem(field, message))
        return None


def _leaf_problems(leaf: x509.Certificate, field: str, now: int) -> list[Problem]:
    try:
        info = describe_certificate(leaf)
    except CertificateError as exc:
        return [Problem(field, str(exc))]
    if info.is_expired(now):
        return [Problem(field, f"certificate expired on {format_timestamp(info.not_after)}")]
    return []


def _ca_problems(cert: x509.Certificate, now: int) -> list[Problem]:
    try:
        info = describe_certificate(cert)
    except CertificateError as exc:
        return [Problem("cert", str(exc))]
    problems = []
    if not info.is_ca:
        problems.append(Problem("cert", "not a CA certificate: basicConstraints CA is false/absent"))
    if info.is_expired(now):
        problems.append(Problem("cert", f"certificate expired on {format_timestamp(info.not_after)}"))
    return problems


def _mismatch(
    key: CertificateIssuerPrivateKeyTypes, chain: Sequence[x509.Certificate], cert_field: str
) -> str:
    for position, cert in enumerate(chain[1:], start=2):
        if key_matches_certificate(key, cert):
            return (
                f"matches certificate {position} of {cert_field}, not the first: "
                "put the leaf certificate first"
            )
    return f"does not match the certificate in {cert_field} (its public key differs)"


def _unknown_fields(raw: Mapping[str, Any], allowed: frozenset[str]) -> list[Problem]:
    return [
        Problem(field_label(name), "unknown field")
        for name in sorted(raw, key=str)
        if name not in allowed
    ]


def _tags(value: Any, problems: list[Problem]) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list | tuple):
        problems.append(Problem("tags", "must be an array of strings"))
        return ()
    tags = []
    for index, tag in enumerate(value):
        if not isinstance(tag, str) or not tag:
            problems.append(Problem(f"tags[{index}]", "must be a non-empty string"))
        else:
            tags.append(tag)
    return tuple(tags)


def _normal_digest(text: str) -> str:
    return text.strip().lower().removeprefix("sha256:").replace(":", "")


def _chain_pem(chain: Sequence[x509.Certificate]) -> str:
    return "".join(c.public_bytes(serialization.Encoding.PEM).decode("ascii") for c in chain)


def _key_pem(key: CertificateIssuerPrivateKeyTypes) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")
