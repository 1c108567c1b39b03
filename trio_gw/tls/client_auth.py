"""Client-certificate verification (mTLS, or a certificate forwarded in a header).

Theory of operation
-------------------
:func:`verify_client_certificate` is the second, per-route check after the
listener's OpenSSL handshake (``CERT_OPTIONAL`` with the union of anchors,
docs/architecture.md), and the only check for certificates forwarded by a load balancer.
It runs, in order, and stops at the first failure with a stable
:class:`ClientCertReason`:

1. **Input bounds** (``no_cert``, ``chain_too_deep``, ``bad_certificate``): at
   most :data:`MAX_PRESENTED_CERTS` chain certificates of at most
   :data:`MAX_CERT_SIZE` bytes each.  cryptography's path building cannot be
   interrupted (no cancellation point, and a thread cannot be killed); the
   design notes measured over 10 s on one pathological chain with
   cryptography 48.  The work is bounded by bounding its inputs instead:
   presented certificates, ``max_depth`` (at most :data:`MAX_DEPTH_LIMIT`)
   and certificate size (which bounds the SAN x name-constraint products).
   Anchors are configuration, not attacker input.  Measured on cryptography
   50.0.2 over all 9,780 x509-limbo chains: unbounded, the slowest takes
   0.15 s (``pathological::nc-dos-*``); under these bounds, 14 ms.
2. **Parsing** (``bad_certificate``) with :mod:`trio_gw.pki.parse`.
3. **Issuer known** (``unknown_ca``): the leaf is an anchor, or some anchor or
   presented certificate has the leaf's issuer name.  Cheap, and it makes an
   untrusted certificate report ``unknown_ca`` even when it is also expired,
   as OpenSSL does.
4. **Path validation** with ``cryptography.x509.verification.ClientVerifier``
   and the extension policies of :mod:`trio_gw.tls.client_policy`; a failure
   is classified from the EKU callback's own flag and from cryptography's
   error text (pinned by tests).
5. **Name constraints on subject names** (``bad_certificate``): cryptography
   applies name constraints to subjectAltName entries only; RFC 5280
   (4.2.1.10) also applies directoryName subtrees to the subject DN and
   rfc822Name subtrees to its emailAddress attributes.  Both are checked
   here, with OpenSSL's matching rules, so a name-constrained CA cannot vouch
   for the subject names consumers are found by.  (OpenSSL's legacy rule
   applying dNSName subtrees to a host-name-like CN is not followed, as
   cryptography, Go and x509-limbo do not.)
6. **Revocation** (``revoked``; ``revocation_unknown`` under ``STRICT``)
   with :mod:`trio_gw.tls.client_revocation`: an OCSP answer handed in
   first, then CRLs (Kong's order).
7. **Allowlist** (``not_allowed``): the leaf's SHA-256 fingerprint, when the
   policy restricts them.

The X.509 profile (extension policies relaxed from cryptography's WebPKI
defaults to what OpenSSL accepts from private client PKIs) and the partial
chain handling live with the policy, in :mod:`trio_gw.tls.client_policy`.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from cryptography.x509.verification import PolicyBuilder, VerificationError

from trio_gw.errors import CertificateError
from trio_gw.pki.info import CertificateInfo, describe_certificate
from trio_gw.pki.parse import DECODE_ERRORS, parse_der
from trio_gw.tls.client_policy import (
    CA_EXTENSION_POLICY,
    DEFAULT_MAX_DEPTH,
    MAX_DEPTH_LIMIT,
    ClientCertPolicy,
    ee_extension_policy,
)
from trio_gw.tls.client_revocation import OcspAnswers, check_chain_revocation, revocation_refusal
from trio_gw.tls.revocation import CrlCheck, RevocationCheckMode

__all__ = [
    "DEFAULT_MAX_DEPTH",
    "MAX_CERT_SIZE",
    "MAX_DEPTH_LIMIT",
    "MAX_PRESENTED_CERTS",
    "ClientCertPolicy",
    "ClientCertReason",
    "ClientCertRejected",
    "ClientCertResult",
    "verify_client_certificate",
]

#: Most chain certificates a client may present (leaf not counted): the
#: deepest allowed path plus its root, plus one spare for cross-signs.
MAX_PRESENTED_CERTS: Final = MAX_DEPTH_LIMIT + 2
#: Largest DER certificate accepted, in bytes.  Real client certificates are
#: 0.5–2 KB; 16 KiB (the TLS record size) also bounds the names a
#: name-constraint check can multiply.
MAX_CERT_SIZE: Final = 16 * 1024


class ClientCertReason(enum.Enum):
    """Stable reason codes of a rejected client certificate (logs, metrics)."""

    NO_CERT = "no_cert"
    UNKNOWN_CA = "unknown_ca"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    REVOKED = "revoked"
    REVOCATION_UNKNOWN = "revocation_unknown"
    BAD_EKU = "bad_eku"
    NOT_ALLOWED = "not_allowed"
    CHAIN_TOO_DEEP = "chain_too_deep"
    BAD_CERTIFICATE = "bad_certificate"


class ClientCertRejected(CertificateError):
    """A client certificate that must not authenticate the request.

    Attributes:
        reason: the stable :class:`ClientCertReason`.
        detail: a human explanation (never quotes certificate bytes).
        error_status_hint: 401 (authentication failed, as Kong's mtls-auth
            answers), 403 for ``not_allowed``.
    """

    def __init__(self, reason: ClientCertReason, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        self.error_status_hint = 403 if reason is ClientCertReason.NOT_ALLOWED else 401
        super().__init__(f"{reason.value}: {detail}" if detail else reason.value)


@dataclass(frozen=True)
class ClientCertResult:
    """An accepted client certificate.

    ``info`` describes the leaf (subject and issuer DNs, CNs, SAN values,
    fingerprint, validity); ``chain_der`` is the verified chain, leaf first,
    anchor last; ``revocation`` holds the CRL outcome per checked certificate
    (empty with ``SKIP``).
    """

    info: CertificateInfo
    chain_der: tuple[bytes, ...]
    revocation: tuple[CrlCheck, ...] = ()

    @property
    def subject(self) -> str:
        """The leaf's subject DN (RFC 4514)."""
        return self.info.subject

    @property
    def issuer(self) -> str:
        """The leaf's issuer DN (RFC 4514)."""
        return self.info.issuer

    @property
    def common_name(self) -> str | None:
        """The leaf's first subject CN, if any."""
        return self.info.common_names[0] if self.info.common_names else None

    @property
    def fingerprint_sha256(self) -> str:
        """SHA-256 of the leaf DER, lowercase hex."""
        return self.info.fingerprint_sha256


def verify_client_certificate(
    leaf_der: bytes | None,
    chain_der: Sequence[bytes],
    policy: ClientCertPolicy,
    *,
    now: datetime,
    crls: Sequence[x509.CertificateRevocationList] = (),
    ocsp: OcspAnswers | None = None,
) -> ClientCertResult:
    """Decide whether a client certificate authenticates a request.

    Args:
        leaf_der: the client's certificate (DER), None or empty when absent.
        chain_der: the certificates the client sent after it (DER, any
            order; a copy of the leaf is ignored).
        policy: the route's :class:`ClientCertPolicy`.
        now: validation time, timezone-aware.
        crls: CRLs fetched by the IO layer, used with ``policy.crls``.
        ocsp: OCSP answers fetched by the IO layer, consulted before CRLs.

    Returns:
        The :class:`ClientCertResult`.

    Raises:
        ClientCertRejected: with the reason (see the module docstring).
        ValueError: ``now`` is naive (a programming error).
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if not leaf_der:
        raise ClientCertRejected(
            ClientCertReason.NO_CERT, "no client certificate presented"
        )
    leaf, presented = _parse_inputs(leaf_der, chain_der)
    _check_issuer_known(leaf, presented, policy)
    chain = _verify_path(leaf, presented, policy, now)
    _check_subject_name_constraints(chain)
    checks = _check_revocation(chain, policy, [*policy.crls, *crls], ocsp, now)
    info = describe_certificate(leaf)
    allowed = policy.allowed_fingerprints
    if allowed is not None and info.fingerprint_sha256 not in allowed:
        raise ClientCertRejected(
            ClientCertReason.NOT_ALLOWED, "certificate is not in the allowlist"
        )
    return ClientCertResult(
        info, tuple(c.public_bytes(Encoding.DER) for c in chain), checks
    )


def _parse_inputs(
    leaf_der: bytes, chain_der: Sequence[bytes]
) -> tuple[x509.Certificate, list[x509.Certificate]]:
    extra = [bytes(d) for d in chain_der if bytes(d) != bytes(leaf_der)]
    if len(extra) > MAX_PRESENTED_CERTS:
        raise ClientCertRejected(
            ClientCertReason.CHAIN_TOO_DEEP,
            f"{len(extra)} chain certificates presented (at most {MAX_PRESENTED_CERTS})",
        )
    if any(len(d) > MAX_CERT_SIZE for d in (leaf_der, *extra)):
        raise ClientCertRejected(
            ClientCertReason.BAD_CERTIFICATE,
            f"certificate larger than {MAX_CERT_SIZE} bytes",
        )
    try:
        return parse_der(leaf_der), [parse_der(d) for d in extra]
    except CertificateError as exc:
        raise ClientCertRejected(ClientCertReason.BAD_CERTIFICATE, str(exc)) from exc


def _check_issuer_known(
    leaf: x509.Certificate, presented: list[x509.Certificate], policy: ClientCertPolicy
) -> None:
    anchors = policy.anchors
    if leaf in anchors:
        return
    subjects = {c.subject for c in (*anchors, *presented)}
    if leaf.issuer not in subjects:
        raise ClientCertRejected(
            ClientCertReason.UNKNOWN_CA, "issuer is not a trusted CA"
        )


def _verify_path(
    leaf: x509.Certificate,
    presented: list[x509.Certificate],
    policy: ClientCertPolicy,
    now: datetime,
) -> list[x509.Certificate]:
    eku_failures: list[str] = []
    verifier = (
        PolicyBuilder()
        .store(policy.store)
        .time(now)
        .max_chain_depth(policy.max_depth)
        .extension_policies(
            ca_policy=CA_EXTENSION_POLICY,
            ee_policy=ee_extension_policy(policy.required_eku, eku_failures),
        )
        .build_client_verifier()
    )
    try:
        return verifier.verify(leaf, [*presented, *policy.untrusted_anchors]).chain
    except VerificationError as exc:
        reason = ClientCertReason.BAD_EKU if eku_failures else _classify(str(exc))
        if reason is _VALIDITY:
            reason = _validity_reason(leaf, presented, policy, now)
        raise ClientCertRejected(reason, _short(str(exc))) from exc
    except DECODE_ERRORS as exc:  # pragma: no cover - parse_der touched every part
        raise ClientCertRejected(
            ClientCertReason.BAD_CERTIFICATE, type(exc).__name__
        ) from exc


def _check_subject_name_constraints(chain: list[x509.Certificate]) -> None:
    """RFC 5280 name constraints on subject names (cryptography checks SANs).

    Every certificate of the verified chain (leaf first; self-issued
    intermediates excepted) is checked against the constraints of each
    certificate above it, the anchor included, as OpenSSL does.  Only
    CA-signed certificates of at most :data:`MAX_CERT_SIZE` bytes get here,
    which bounds the names x subtrees work.
    """
    for depth, cert in enumerate(chain[:-1]):
        if depth and cert.subject == cert.issuer:
            continue
        for issuer in chain[depth + 1 :]:
            try:
                nc = issuer.extensions.get_extension_for_class(x509.NameConstraints)
            except x509.ExtensionNotFound:
                continue
            problem = _subject_violation(cert.subject, nc.value)
            if problem:
                raise ClientCertRejected(
                    ClientCertReason.BAD_CERTIFICATE,
                    f"subject {problem} violates a CA's name constraints",
                )


def _subject_violation(subject: x509.Name, nc: x509.NameConstraints) -> str | None:
    if not len(subject):  # RFC 5280: an empty subject is not constrained
        return None
    if _violates(nc, x509.DirectoryName, subject, _dn_within):
        return "DN"
    # RFC 5280 asks this when there is no SAN; OpenSSL always does, and so do we.
    for attr in subject.get_attributes_for_oid(NameOID.EMAIL_ADDRESS):
        if _violates(nc, x509.RFC822Name, str(attr.value), _email_within):
            return "emailAddress"
    return None


_Name = TypeVar("_Name", x509.Name, str)


def _violates(
    nc: x509.NameConstraints,
    kind: type[x509.GeneralName],
    name: _Name,
    within: Callable[[_Name, Any], bool],
) -> bool:
    """Outside every permitted subtree of its kind (if any), or inside an excluded one."""
    permitted = [g.value for g in nc.permitted_subtrees or () if isinstance(g, kind)]
    excluded = [g.value for g in nc.excluded_subtrees or () if isinstance(g, kind)]
    try:
        if permitted and not any(within(name, base) for base in permitted):
            return True
        return any(within(name, base) for base in excluded)
    except ValueError:  # a name OpenSSL cannot match either ("unsupported name syntax")
        return True


_ASCII_UPPER: Final = str.maketrans(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz"
)
_SPACES: Final = " \t\n\v\f\r"
_SPACE_RUNS: Final = re.compile(f"[{_SPACES}]+")


def _lower(text: str) -> str:
    return text.translate(_ASCII_UPPER)


def _canonical_rdn(
    rdn: x509.RelativeDistinguishedName,
) -> frozenset[tuple[x509.ObjectIdentifier, str | bytes]]:
    """OpenSSL's canonical form: ASCII lowercase, spaces trimmed and collapsed."""
    return frozenset(
        (
            attr.oid,
            _lower(_SPACE_RUNS.sub(" ", attr.value.strip(_SPACES)))
            if isinstance(attr.value, str)
            else attr.value,
        )
        for attr in rdn
    )


def _dn_within(name: x509.Name, base: x509.Name) -> bool:
    """OpenSSL's ``nc_dn``: the subtree's RDNs start the name."""
    prefix, rdns = base.rdns, name.rdns
    return len(prefix) <= len(rdns) and all(
        _canonical_rdn(a) == _canonical_rdn(b) for a, b in zip(prefix, rdns)
    )


def _email_within(email: str, base: str) -> bool:
    """OpenSSL's ``nc_email``: a mailbox, a host, or ``.domain`` (subdomains)."""
    local, at, host = email.rpartition("@")
    if not at:
        raise ValueError("not a mailbox")
    if "@" not in base and base.startswith("."):
        return len(email) > len(base) and _lower(email[-len(base) :]) == _lower(base)
    base_local, _, base_host = base.rpartition("@")
    if base_local and base_local != local:  # the local part is case-sensitive
        return False
    return _lower(host) == _lower(base_host)


def _check_revocation(
    chain: list[x509.Certificate],
    policy: ClientCertPolicy,
    crls: list[x509.CertificateRevocationList],
    ocsp: OcspAnswers | None,
    now: datetime,
) -> tuple[CrlCheck, ...]:
    mode = policy.revocation_check_mode
    if mode is RevocationCheckMode.SKIP:
        return ()
    checks = check_chain_revocation(
        chain, crls=crls, ocsp=ocsp, now=now, full_chain=policy.revocation_full_chain
    )
    refusal = revocation_refusal(checks, RevocationCheckMode(mode))
    if refusal is not None:
        reason, detail = refusal
        raise ClientCertRejected(ClientCertReason(reason), detail)
    return checks


# Classification of cryptography's VerificationError text.  The texts are
# not API; tests/unit/tls/test_client_auth.py pins one case per row, so a
# cryptography upgrade that rewords them fails a test instead of silently
# degrading reason codes.  Order matters: first match wins.
_VALIDITY: Final = ClientCertReason.EXPIRED  # refined by _validity_reason
_MESSAGE_REASONS: Final = (
    ("not valid at validation time", _VALIDITY),
    ("exceeds max depth", ClientCertReason.CHAIN_TOO_DEEP),
    ("path length constraint", ClientCertReason.CHAIN_TOO_DEEP),
    ("candidates exhausted", ClientCertReason.UNKNOWN_CA),
)


def _classify(message: str) -> ClientCertReason:
    for needle, reason in _MESSAGE_REASONS:
        if needle in message:
            return reason
    return ClientCertReason.BAD_CERTIFICATE


def _validity_reason(
    leaf: x509.Certificate,
    presented: list[x509.Certificate],
    policy: ClientCertPolicy,
    now: datetime,
) -> ClientCertReason:
    """``expired`` or ``not_yet_valid``, from the leaf first, then its CAs."""
    for cert in (leaf, *presented, *policy.anchors):
        if cert.not_valid_after_utc < now:
            return ClientCertReason.EXPIRED
        if cert.not_valid_before_utc > now:
            return ClientCertReason.NOT_YET_VALID
    return ClientCertReason.EXPIRED  # pragma: no cover - cryptography said one is


def _short(message: str) -> str:
    """cryptography's reason without the certificate repr it appends."""
    return message.split(" (encountered processing", 1)[0][:200]
