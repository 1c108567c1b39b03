"""OCSP (RFC 6960) as pure functions: requests, verified answers, refresh timing, must-staple.

Theory of operation
-------------------
The gateway asks OCSP responders about two kinds of certificates: its own
server certificates (to staple the answer into handshakes, see
:mod:`trio_gw.tls.stapling`) and client certificates it is asked to trust
(revocation, see :mod:`trio_gw.tls.client_revocation`).  Both go the same way:

1. :func:`build_ocsp_request` makes the DER request for ``(leaf, issuer)``
   (SHA-1 CertID, no nonce: the RFC 5019 lightweight profile every public
   responder answers from cache; freshness comes from ``thisUpdate``);
   :func:`ocsp_get_url` turns it into the RFC 6960 appendix A.1 GET URL, and
   :func:`ocsp_responder_urls` lists the responders a certificate names (AIA).
2. The IO layer fetches the bytes; :func:`verify_ocsp_response` accepts them
   only when every check holds, else raises :class:`OcspError` with a stable
   :class:`OcspFailure`:

   * the response status is ``successful`` (``responder_error`` otherwise);
   * a SingleResponse carries *our* CertID: serial number, and the hashes of
     the issuer's name and key under the response's own hash algorithm
     (``no_matching_response``) -- a good answer about another certificate
     proves nothing;
   * the signer is the issuer itself, or a delegated responder certificate
     shipped in the response that the issuer signed directly, that is valid
     now and that carries ``id-kp-OCSPSigning`` (``unauthorized_signer``);
     its own revocation is not checked (RFC 6960 4.2.2.2.1: a responder
     certificate with ``id-pkix-ocsp-nocheck`` needs none, and recursing
     into the responder's status is what OpenSSL does not do either;
     ``OcspAnswer.responder_nocheck`` reports which case it was and
     ``require_nocheck`` refuses delegates without it);
   * the signature over ``tbsResponseData`` verifies with the signer's key
     (``bad_signature``);
   * ``thisUpdate <= now + skew`` (``not_yet_valid``) and the answer is still
     fresh, ``now - skew <= nextUpdate`` (``stale``); a response without
     ``nextUpdate`` is fresh for :data:`VALIDITY_WITHOUT_NEXT_UPDATE` after
     ``thisUpdate``.  The skew is OpenSSL's and nginx's five minutes.

3. :func:`plan_next_fetch` says when to ask again: nginx's rule (five minutes
   before the answer goes stale, at most an hour from now, at least five
   minutes from now), and after failures an exponential backoff that never
   lets a still-good answer expire unrefreshed.

Times are Unix seconds, as everywhere in trio-gw; ``now`` is a parameter.
"""

from __future__ import annotations

import base64
import enum
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final
from urllib.parse import quote

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID

from trio_gw.pki.info import unix_seconds
from trio_gw.pki.parse import DECODE_ERRORS

__all__ = [
    "DEFAULT_CLOCK_SKEW",
    "MAX_OCSP_RESPONSE_SIZE",
    "OcspAnswer",
    "OcspCertStatus",
    "OcspError",
    "OcspFailure",
    "build_ocsp_request",
    "is_fresh",
    "is_must_staple",
    "ocsp_get_url",
    "ocsp_key",
    "ocsp_responder_urls",
    "plan_next_fetch",
    "verify_ocsp_response",
]

#: Clock skew tolerated on ``thisUpdate``/``nextUpdate`` (OpenSSL ``OCSP_check_validity``'s
#: ``-validity_period`` default and nginx's stapling check: 300 s).
DEFAULT_CLOCK_SKEW: Final = 300
#: How long a response without ``nextUpdate`` is used after its ``thisUpdate``
#: (RFC 6960 4.2.2.1: "newer information is always available"; one refresh period of nginx).
VALIDITY_WITHOUT_NEXT_UPDATE: Final = 3600
#: Largest response accepted.  Real responses are 0.5-4 KiB (a signature, perhaps a
#: delegated responder certificate); 64 KiB bounds memory and parse time per fetch.
MAX_OCSP_RESPONSE_SIZE: Final = 64 * 1024
#: nginx's stapling refresh rule: refetch ``REFRESH_MARGIN`` before the answer goes stale,
#: at most ``MAX_REFRESH_INTERVAL`` and at least ``MIN_REFRESH_INTERVAL`` from now.
REFRESH_MARGIN: Final = 300
MAX_REFRESH_INTERVAL: Final = 3600
MIN_REFRESH_INTERVAL: Final = 300
#: Retry after a failed fetch: 60 s, doubling, at most an hour.
FIRST_RETRY: Final = 60
MAX_RETRY: Final = 3600
#: RFC 6960 appendix A.1: GET only when the encoded request is under 255 bytes.
_MAX_GET_REQUEST: Final = 255

class OcspCertStatus(enum.Enum):
    """What the responder says about the certificate."""

    GOOD = "good"
    REVOKED = "revoked"
    UNKNOWN = "unknown"


class OcspFailure(enum.Enum):
    """Stable reasons an OCSP response is not used (logs, metrics)."""

    MALFORMED = "malformed"
    TOO_LARGE = "too_large"
    RESPONDER_ERROR = "responder_error"
    NO_MATCHING_RESPONSE = "no_matching_response"
    UNAUTHORIZED_SIGNER = "unauthorized_signer"
    BAD_SIGNATURE = "bad_signature"
    NOT_YET_VALID = "not_yet_valid"
    STALE = "stale"


class OcspError(ValueError):
    """An OCSP response that proves nothing; ``reason`` is stable, ``detail`` human.

    A ``ValueError`` (not a :class:`~trio_gw.errors.GatewayError`): it describes a
    remote document, never configuration, and the IO layer logs it and retries.
    """

    def __init__(self, reason: OcspFailure, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason.value}: {detail}" if detail else reason.value)


@dataclass(frozen=True)
class OcspAnswer:
    """A verified OCSP answer about one certificate.

    Times are Unix seconds.  ``fresh_until`` is ``nextUpdate`` (or ``thisUpdate``
    + :data:`VALIDITY_WITHOUT_NEXT_UPDATE`); ``der`` is the whole response, what
    a server staples.  ``delegated`` tells whether a responder certificate signed
    it, ``responder_nocheck`` whether that certificate had ``id-pkix-ocsp-nocheck``.
    """

    status: OcspCertStatus
    serial_number: int
    this_update: int
    fresh_until: int
    produced_at: int
    der: bytes
    next_update: int | None = None
    revocation_time: int | None = None
    revocation_reason: str | None = None
    delegated: bool = False
    responder_nocheck: bool = False


def ocsp_responder_urls(cert: x509.Certificate) -> tuple[str, ...]:
    """The http(s) OCSP responder URLs of the certificate's AIA extension, in order.

    Args:
        cert: the certificate.

    Returns:
        The URLs, without duplicates; empty when the certificate names none.
    """
    try:
        aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    except x509.ExtensionNotFound:
        return ()
    urls: list[str] = []
    for desc in aia:
        name = desc.access_location
        if desc.access_method == AuthorityInformationAccessOID.OCSP and isinstance(
            name, x509.UniformResourceIdentifier
        ):
            url = name.value
            if url.split(":", 1)[0].lower() in ("http", "https") and url not in urls:
                urls.append(url)
    return tuple(urls)


def build_ocsp_request(leaf: x509.Certificate, issuer: x509.Certificate) -> bytes:
    """The DER OCSP request for ``leaf`` (SHA-1 CertID, no nonce; RFC 5019).

    Args:
        leaf: the certificate whose status is wanted.
        issuer: the certificate that signed it.

    Returns:
        The DER ``OCSPRequest``.
    """
    builder = ocsp.OCSPRequestBuilder().add_certificate(leaf, issuer, hashes.SHA1())
    return builder.build().public_bytes(serialization.Encoding.DER)


def ocsp_get_url(responder_url: str, request_der: bytes) -> str | None:
    """The RFC 6960 appendix A.1 GET URL for a request, or ``None`` when it must be POSTed.

    Args:
        responder_url: the responder's URL (AIA, or ``ssl_stapling_responder``).
        request_der: from :func:`build_ocsp_request`.

    Returns:
        ``{url}/{url-encoded base64 request}``; ``None`` when the encoded
        request reaches 255 bytes (then POST it).
    """
    encoded = quote(base64.b64encode(request_der).decode("ascii"), safe="")
    if len(encoded) >= _MAX_GET_REQUEST:
        return None
    return f"{responder_url.rstrip('/')}/{encoded}"


def ocsp_key(leaf: x509.Certificate, issuer: x509.Certificate) -> str:
    """A cache key for "this certificate, as issued by this key": SPKI SHA-256 of the issuer + serial.

    Args:
        leaf: the certificate.
        issuer: its issuer.

    Returns:
        ``"<issuer spki sha256 hex>:<serial hex>"``.
    """
    spki = issuer.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return f"{hashlib.sha256(spki).hexdigest()}:{leaf.serial_number:x}"


def is_must_staple(cert: x509.Certificate) -> bool:
    """Whether the certificate demands a stapled OCSP response (RFC 7633 TLS Feature ``status_request``)."""
    try:
        features = cert.extensions.get_extension_for_class(x509.TLSFeature).value
    except x509.ExtensionNotFound:
        return False
    return x509.TLSFeatureType.status_request in features


def is_fresh(answer: OcspAnswer, now: float, skew: int = DEFAULT_CLOCK_SKEW) -> bool:
    """Whether the answer may be used at ``now`` (see the module docstring)."""
    return answer.this_update - skew <= now <= answer.fresh_until + skew


def verify_ocsp_response(
    data: bytes,
    leaf: x509.Certificate,
    issuer: x509.Certificate,
    *,
    now: float,
    skew: int = DEFAULT_CLOCK_SKEW,
    require_nocheck: bool = False,
    check_signer: bool = True,
) -> OcspAnswer:
    """Verify an OCSP response about ``leaf`` and return what it says.

    Args:
        data: the DER response as fetched (or read from ``ssl_stapling_file``).
        leaf: the certificate asked about.
        issuer: the certificate that issued ``leaf`` (from its verified chain).
        now: validation time, Unix seconds.
        skew: tolerated clock difference, seconds.
        require_nocheck: refuse a delegated responder certificate without
            ``id-pkix-ocsp-nocheck``.
        check_signer: verify who signed and the signature (nginx's
            ``ssl_stapling_verify off`` skips only this; CertID and
            freshness are always checked).

    Returns:
        The :class:`OcspAnswer` (status good, revoked or unknown).

    Raises:
        OcspError: the response proves nothing (see the module docstring).
    """
    if len(data) > MAX_OCSP_RESPONSE_SIZE:
        raise OcspError(OcspFailure.TOO_LARGE, f"over {MAX_OCSP_RESPONSE_SIZE} bytes")
    response = _load(data)
    try:
        single = _matching_single_response(response, leaf, issuer)
        delegated = nocheck = False
        if check_signer:
            signer, nocheck = _authorized_signer(response, issuer, now, skew)
            delegated = signer is not issuer
            if require_nocheck and delegated and not nocheck:
                raise OcspError(OcspFailure.UNAUTHORIZED_SIGNER, "delegated responder lacks id-pkix-ocsp-nocheck")
            _check_signature(response, signer)
        answer = _answer(single, response, data, delegated=delegated, nocheck=nocheck)
    except OcspError:
        raise
    except DECODE_ERRORS as exc:  # cryptography parses parts lazily: a broken part surfaces on first use
        raise OcspError(OcspFailure.MALFORMED, f"unreadable part ({type(exc).__name__})") from exc
    if answer.this_update - skew > now:
        raise OcspError(OcspFailure.NOT_YET_VALID, "thisUpdate is in the future")
    if now > answer.fresh_until + skew:
        raise OcspError(OcspFailure.STALE, "nextUpdate has passed" if answer.next_update else "too old")
    return answer


def plan_next_fetch(answer: OcspAnswer | None, *, now: float, failures: int = 0) -> float:
    """When to fetch a certificate's OCSP status next (see the module docstring).

    Args:
        answer: the answer in hand, if any (it may be stale).
        now: the current time, Unix seconds.
        failures: consecutive failed fetches since the last good one.

    Returns:
        A Unix time ``>= now``; ``now`` itself means "fetch right away".
    """
    usable = answer is not None and is_fresh(answer, now, skew=0)
    deadline = now
    if answer is not None and usable:
        deadline = max(now + MIN_REFRESH_INTERVAL, answer.fresh_until - REFRESH_MARGIN)
    if failures > 0:
        retry = now + min(FIRST_RETRY << min(failures - 1, 16), MAX_RETRY)
        return min(retry, deadline) if usable else retry
    if not usable:
        return now
    return min(deadline, now + MAX_REFRESH_INTERVAL)


# -- verification steps ----------------------------------------------------------------


def _load(data: bytes) -> ocsp.OCSPResponse:
    try:
        response = ocsp.load_der_ocsp_response(data)
    except DECODE_ERRORS as exc:
        raise OcspError(OcspFailure.MALFORMED, f"not a DER OCSP response ({type(exc).__name__})") from exc
    if response.response_status is not ocsp.OCSPResponseStatus.SUCCESSFUL:
        raise OcspError(OcspFailure.RESPONDER_ERROR, response.response_status.name.lower())
    return response


def _matching_single_response(
    response: ocsp.OCSPResponse, leaf: x509.Certificate, issuer: x509.Certificate
) -> ocsp.OCSPSingleResponse:
    try:
        singles = list(response.responses)
    except DECODE_ERRORS as exc:  # pragma: no cover - load_der_ocsp_response parsed them
        raise OcspError(OcspFailure.MALFORMED, type(exc).__name__) from exc
    for single in singles:
        if single.serial_number != leaf.serial_number:
            continue
        expected = ocsp.OCSPRequestBuilder().add_certificate(leaf, issuer, single.hash_algorithm).build()
        if (single.issuer_name_hash, single.issuer_key_hash) == (
            expected.issuer_name_hash, expected.issuer_key_hash
        ):
            return single
    raise OcspError(OcspFailure.NO_MATCHING_RESPONSE, "no answer about this certificate and issuer")


def _authorized_signer(
    response: ocsp.OCSPResponse, issuer: x509.Certificate, now: float, skew: int
) -> tuple[x509.Certificate, bool]:
    """The certificate whose key must have signed: the issuer, or its delegated responder."""
    if _names_responder(response, issuer):
        return issuer, False
    for cert in response.certificates:
        if _names_responder(response, cert):
            _check_delegate(cert, issuer, now, skew)
            return cert, _has_nocheck(cert)
    raise OcspError(OcspFailure.UNAUTHORIZED_SIGNER, "signed by neither the issuer nor a responder it delegated to")


def _names_responder(response: ocsp.OCSPResponse, cert: x509.Certificate) -> bool:
    if response.responder_name is not None:
        return response.responder_name == cert.subject
    digest = x509.SubjectKeyIdentifier.from_public_key(cert.public_key()).digest  # SHA-1 of the key bits
    return response.responder_key_hash == digest


def _check_delegate(cert: x509.Certificate, issuer: x509.Certificate, now: float, skew: int) -> None:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm) as exc:
        raise OcspError(OcspFailure.UNAUTHORIZED_SIGNER, "responder certificate not issued by the issuer") from exc
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        eku = None
    if eku is None or ExtendedKeyUsageOID.OCSP_SIGNING not in eku:
        raise OcspError(OcspFailure.UNAUTHORIZED_SIGNER, "responder certificate lacks id-kp-OCSPSigning")
    if not (unix_seconds(cert.not_valid_before_utc) - skew <= now <= unix_seconds(cert.not_valid_after_utc) + skew):
        raise OcspError(OcspFailure.UNAUTHORIZED_SIGNER, "responder certificate is not valid now")


def _has_nocheck(cert: x509.Certificate) -> bool:
    try:
        cert.extensions.get_extension_for_class(x509.OCSPNoCheck)
    except x509.ExtensionNotFound:
        return False
    return True


def _check_signature(response: ocsp.OCSPResponse, signer: x509.Certificate) -> None:
    key = signer.public_key()
    try:
        algorithm = response.signature_hash_algorithm
    except UnsupportedAlgorithm as exc:
        raise OcspError(OcspFailure.BAD_SIGNATURE, "unsupported signature algorithm") from exc
    data, signature = response.tbs_response_bytes, response.signature
    try:
        if isinstance(key, rsa.RSAPublicKey) and algorithm is not None:
            key.verify(signature, data, padding.PKCS1v15(), algorithm)
        elif isinstance(key, ec.EllipticCurvePublicKey) and algorithm is not None:
            key.verify(signature, data, ec.ECDSA(algorithm))
        elif isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey) and algorithm is None:
            key.verify(signature, data)
        else:
            raise OcspError(OcspFailure.BAD_SIGNATURE, f"unsupported signature algorithm for a {type(key).__name__}")
    except (InvalidSignature, UnsupportedAlgorithm, ValueError) as exc:
        if isinstance(exc, OcspError):
            raise
        raise OcspError(OcspFailure.BAD_SIGNATURE, "signature does not verify") from exc


def _answer(
    single: ocsp.OCSPSingleResponse, response: ocsp.OCSPResponse, der: bytes, *, delegated: bool, nocheck: bool
) -> OcspAnswer:
    this_update = unix_seconds(single.this_update_utc)
    next_update = unix_seconds(single.next_update_utc) if single.next_update_utc is not None else None
    status = OcspCertStatus[single.certificate_status.name]
    revoked_at = reason = None
    if status is OcspCertStatus.REVOKED:
        revoked_at = unix_seconds(single.revocation_time_utc) if single.revocation_time_utc else None
        reason = single.revocation_reason.value if single.revocation_reason is not None else "unspecified"
    return OcspAnswer(
        status=status,
        serial_number=single.serial_number,
        this_update=this_update,
        fresh_until=next_update if next_update is not None else this_update + VALIDITY_WITHOUT_NEXT_UPDATE,
        produced_at=unix_seconds(response.produced_at_utc),
        der=der,
        next_update=next_update,
        revocation_time=revoked_at,
        revocation_reason=reason,
        delegated=delegated,
        responder_nocheck=nocheck,
    )
