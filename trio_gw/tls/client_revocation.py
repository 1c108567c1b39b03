"""Revocation of a trusted client certificate: OCSP first, then CRLs (Kong's order).

Theory of operation
-------------------
Wherever a client certificate is trusted (``mtls-auth``, ``mtls-allowlist``,
``header-cert-auth``, the server truststore, admin mTLS) the same check runs
on the verified chain, for the leaf (and the intermediates with
``full_chain``), each against the certificate that issued it:

1. the OCSP answer the IO layer fetched and verified for ``(cert, issuer)``
   (handed in through :class:`OcspAnswers`, a cache: this never blocks);
   a fresh ``good`` or ``revoked`` answer decides;
2. otherwise the CRLs at hand (:func:`trio_gw.tls.revocation.check_revocation`):
   a usable CRL listing the serial revokes, one not listing it is ``good``;
3. otherwise the status is ``unknown``.

Kong's ``revocation_check_mode`` then decides (:func:`revocation_refusal`):
``SKIP`` checks nothing; ``IGNORE_CA_ERROR`` refuses only ``revoked``;
``STRICT`` also refuses ``unknown`` -- with its own reason code,
``revocation_unknown``, not ``revoked``: a good certificate whose status
could not be learned (no CRL at hand yet, responder down) is not revoked, and
logs, metrics and the client must be able to tell the two apart.

A pinned leaf (a credential's own certificate, an allowlisted leaf) has no
built chain: :func:`check_pinned_revocation` looks for its issuer among the
certificates the client sent and the configured CAs (by name and signature);
without one its status is ``unknown``.  A self-signed pinned leaf has no
issuer to ask and nothing to check.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Final, Protocol

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm

from trio_gw.errors import ConfigError
from trio_gw.pki.info import unix_seconds
from trio_gw.tls.ocsp import OcspAnswer, OcspCertStatus, is_fresh
from trio_gw.tls.revocation import CrlCheck, RevocationCheckMode, RevocationStatus, check_revocation

__all__ = [
    "REVOCATION_REASONS",
    "OcspAnswers",
    "check_chain_revocation",
    "check_pinned_revocation",
    "issuer_in",
    "parse_ssl_ocsp",
    "revocation_refusal",
]

#: The stable reason codes a refusal carries (answer body, access log, metrics).
REVOCATION_REASONS: Final = ("revoked", "revocation_unknown")


class OcspAnswers(Protocol):
    """Verified OCSP answers by certificate, as the IO layer last fetched them.

    ``answer_for`` never blocks: it answers from a cache and, on a miss, may
    note the certificate so the IO layer fetches its status (see
    :class:`trio_gw.plugins.ocsp_cache.OcspCache`).
    """

    def answer_for(self, cert: x509.Certificate, issuer: x509.Certificate, now: float) -> OcspAnswer | None:
        """The cached answer about ``cert`` issued by ``issuer``, or ``None``."""
        ...


def check_chain_revocation(
    chain: Sequence[x509.Certificate],
    *,
    crls: Sequence[x509.CertificateRevocationList] = (),
    ocsp: OcspAnswers | None = None,
    now: datetime,
    full_chain: bool = False,
) -> tuple[CrlCheck, ...]:
    """The revocation status of a verified chain's certificates (see the module docstring).

    Args:
        chain: the verified chain, leaf first, anchor last.
        crls: the CRLs at hand (configured and fetched).
        ocsp: verified OCSP answers (``None``: CRLs only).
        now: validation time (timezone-aware).
        full_chain: check intermediates too (the anchor never).

    Returns:
        One :class:`CrlCheck` per checked certificate, leaf first; ``source``
        says which mechanism decided (``ocsp``, ``crl`` or ``none``).
    """
    count = len(chain) - 1 if full_chain else min(1, len(chain) - 1)
    return tuple(_check_one(chain[i], chain[i + 1], crls, ocsp, now) for i in range(count))


def check_pinned_revocation(
    leaf: x509.Certificate,
    candidates: Sequence[x509.Certificate],
    *,
    crls: Sequence[x509.CertificateRevocationList] = (),
    ocsp: OcspAnswers | None = None,
    now: datetime,
) -> tuple[CrlCheck, ...]:
    """The revocation status of a pinned leaf, its issuer looked for among ``candidates``.

    Returns:
        ``()`` for a self-signed leaf; an ``unknown`` check when no candidate
        signed it; otherwise as :func:`check_chain_revocation` on ``[leaf, issuer]``.
    """
    if leaf.issuer == leaf.subject and issuer_in(leaf, [leaf]) is not None:
        return ()
    issuer = issuer_in(leaf, candidates)
    if issuer is None:
        return (CrlCheck(RevocationStatus.UNKNOWN, leaf.serial_number, "issuer not at hand", "none"),)
    return check_chain_revocation([leaf, issuer], crls=crls, ocsp=ocsp, now=now)


def parse_ssl_ocsp(value: object, setting: str = "ssl_ocsp") -> tuple[RevocationCheckMode, bool]:
    """Read nginx's ``ssl_ocsp`` (the server truststore's and admin mTLS's revocation switch).

    nginx checks the client chain by OCSP and fails verification when the
    status cannot be learned: ``on`` is ``STRICT`` over the whole chain,
    ``leaf`` ``STRICT`` over the leaf, ``off`` ``SKIP``.

    Returns:
        ``(mode, full_chain)``.

    Raises:
        ConfigError: any other value, naming ``setting``.
    """
    text = value.strip().lower() if isinstance(value, str) else value
    if text in ("off", False, None):
        return RevocationCheckMode.SKIP, False
    if text in ("on", True):
        return RevocationCheckMode.STRICT, True
    if text == "leaf":
        return RevocationCheckMode.STRICT, False
    raise ConfigError(f"expected on, off or leaf, got {value!r}", setting)


def revocation_refusal(checks: Sequence[CrlCheck], mode: RevocationCheckMode) -> tuple[str, str] | None:
    """Whether the checks refuse the certificate under ``mode``.

    Returns:
        ``(reason, detail)`` with reason ``revoked`` or ``revocation_unknown``;
        ``None`` when the certificate is accepted.
    """
    if mode is RevocationCheckMode.SKIP:
        return None
    for check in checks:
        if check.status is RevocationStatus.REVOKED:
            return "revoked", f"revoked ({check.source}: {check.detail})"
    if mode is RevocationCheckMode.STRICT:
        for check in checks:
            if check.status is RevocationStatus.UNKNOWN:
                return "revocation_unknown", f"revocation status unknown ({check.detail})"
    return None


def _check_one(
    cert: x509.Certificate,
    issuer: x509.Certificate,
    crls: Sequence[x509.CertificateRevocationList],
    ocsp: OcspAnswers | None,
    now: datetime,
) -> CrlCheck:
    serial = cert.serial_number
    noted = ""
    if ocsp is not None:
        moment = unix_seconds(now)
        answer = ocsp.answer_for(cert, issuer, moment)
        if answer is not None and is_fresh(answer, moment):
            if answer.status is OcspCertStatus.REVOKED:
                return CrlCheck(RevocationStatus.REVOKED, serial, answer.revocation_reason or "unspecified", "ocsp")
            if answer.status is OcspCertStatus.GOOD:
                return CrlCheck(RevocationStatus.GOOD, serial, "", "ocsp")
            noted = "ocsp: unknown to the responder; "
        else:
            noted = "ocsp: no answer at hand; "
    crl = check_revocation([cert, issuer], crls, now=now)[0]
    if crl.status is RevocationStatus.UNKNOWN:
        return CrlCheck(RevocationStatus.UNKNOWN, serial, f"{noted}crl: {crl.detail}", "none")
    return crl


def issuer_in(leaf: x509.Certificate, candidates: Sequence[x509.Certificate]) -> x509.Certificate | None:
    """The candidate that signed ``leaf`` (name and signature), or ``None``.

    Used where a certificate is trusted without a built chain (a pinned leaf):
    its issuer is looked for among the certificates the client sent and the
    configured CAs, for revocation only.
    """
    for cert in candidates:
        if cert.subject != leaf.issuer:
            continue
        try:
            leaf.verify_directly_issued_by(cert)
        except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
            continue
        return cert
    return None
