"""Client-certificate verification (mTLS, or a certificate forwarded in a header).

Theory of operation
-------------------
:func:`verify_client_certificate` is the second, per-route check after the
listener's OpenSSL handshake (``CERT_OPTIONAL`` with the union of anchors,
DESIGN.md), and the only check for certificates forwarded by a load balancer.
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
5. **Revocation** (``revoked``) with :mod:`trio_gw.tls.revocation`.
6. **Allowlist** (``not_allowed``): the leaf's SHA-256 fingerprint, when the
   policy restricts them.

The X.509 profile (extension policies relaxed from cryptography's WebPKI
defaults to what OpenSSL accepts from private client PKIs) and the partial
chain handling live with the policy, in :mod:`trio_gw.tls.client_policy`.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
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
from trio_gw.tls.revocation import (
    CrlCheck,
    RevocationCheckMode,
    RevocationStatus,
    check_revocation,
)

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
) -> ClientCertResult:
    """Decide whether a client certificate authenticates a request.

    Args:
        leaf_der: the client's certificate (DER), None or empty when absent.
        chain_der: the certificates the client sent after it (DER, any
            order; a copy of the leaf is ignored).
        policy: the route's :class:`ClientCertPolicy`.
        now: validation time, timezone-aware.
        crls: CRLs fetched by the IO layer, used with ``policy.crls``.

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
    checks = _check_revocation(chain, policy, [*policy.crls, *crls], now)
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


def _check_revocation(
    chain: list[x509.Certificate],
    policy: ClientCertPolicy,
    crls: list[x509.CertificateRevocationList],
    now: datetime,
) -> tuple[CrlCheck, ...]:
    mode = policy.revocation_check_mode
    if mode is RevocationCheckMode.SKIP:
        return ()
    checks = check_revocation(
        chain, crls, now=now, full_chain=policy.revocation_full_chain
    )
    for check in checks:
        if check.status is RevocationStatus.REVOKED:
            raise ClientCertRejected(
                ClientCertReason.REVOKED, f"revoked ({check.detail})"
            )
        if (
            check.status is RevocationStatus.UNKNOWN
            and mode is RevocationCheckMode.STRICT
        ):
            # Kong: under STRICT an undeterminable status "results in a revoked status".
            raise ClientCertRejected(
                ClientCertReason.REVOKED, f"revocation status unknown ({check.detail})"
            )
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
