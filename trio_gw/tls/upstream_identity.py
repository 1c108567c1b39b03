"""Who the upstream is: post-handshake identity checks and failure reason codes.

Theory of operation
-------------------
The handshake with an upstream verifies the chain (against the profile's
trusted CAs, up to its depth) and, normally, the host name: the context has
``check_hostname = True``, ``hostname_checks_common_name = False`` and
``VERIFY_X509_STRICT`` (docs/architecture.md), so only subjectAltNames count, and an IP
upstream is matched against iPAddress SANs.

Two checks cannot be done by OpenSSL and run right after the handshake, before
one byte of the request is written (:func:`check_upstream_identity`):

* **Pins** (``pinning``): the leaf's SPKI digest must be pinned.  Checked even
  with ``tls_verify`` off.
* **The CN check** (Tyk ``ssl_force_common_name_check``), stricter than Tyk's:
  the chain is still verified (``CERT_REQUIRED``), but the context's own host
  name check is off, and this module judges the name instead: a certificate
  *with* a subjectAltName extension is judged by its SANs only (exactly as
  without the CN check); a certificate *without* one must carry exactly one
  CN, equal to the upstream host (case-insensitive, canonical form).  Tyk, by
  contrast, skips chain verification when it checks the CN of a direct
  connection.

Every failure has a stable reason code (:class:`UpstreamReason`), the same in
the 502 body, the access log and metrics; :func:`classify_tls_failure` maps
OpenSSL's verify codes and alert reasons onto them.  Nothing else from the
exception (subjects, names, addresses) reaches the client.
"""

from __future__ import annotations

import enum

from cryptography import x509
from cryptography.x509.oid import ExtensionOID, NameOID

from trio_gw.errors import GatewayError
from trio_gw.tls.hostname import InvalidServerName, matches_hostname, normalize_server_name
from trio_gw.tls.pinning import PinSet, matches_pins

__all__ = [
    "UpstreamReason",
    "UpstreamTlsError",
    "check_upstream_identity",
    "classify_read_failure",
    "classify_tls_failure",
    "matches_common_name",
    "upstream_read_failure",
]


class UpstreamReason(enum.StrEnum):
    """Stable reason codes of upstream TLS and proxy failures (502 bodies, logs, metrics)."""

    TLS_UNTRUSTED = "upstream_tls_untrusted"
    HOSTNAME_MISMATCH = "upstream_hostname_mismatch"
    CN_MISMATCH = "upstream_cn_mismatch"
    PIN_MISMATCH = "upstream_pin_mismatch"
    REJECTED_CLIENT_CERT = "upstream_rejected_client_cert"
    RENEGOTIATION_REFUSED = "upstream_renegotiation_refused"
    TLS_VERSION = "upstream_tls_version"
    TLS_FAILED = "upstream_tls_failed"
    PROXY_CONNECT_FAILED = "proxy_connect_failed"


class UpstreamTlsError(GatewayError):
    """The upstream (or the forward proxy) failed a TLS or identity check."""

    def __init__(self, reason: UpstreamReason, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else str(reason))
        self.reason = reason
        self.detail = detail  # for the error log only, never for the client


#: X509_V_ERR_HOSTNAME_MISMATCH, X509_V_ERR_IP_ADDRESS_MISMATCH (OpenSSL x509_vfy.h).
_NAME_MISMATCH_CODES = frozenset({62, 64})
#: Alerts an upstream sends when it refuses our client certificate (or the lack of one).
_CLIENT_CERT_ALERTS = frozenset({
    "SSLV3_ALERT_BAD_CERTIFICATE", "TLSV13_ALERT_CERTIFICATE_REQUIRED", "TLSV1_ALERT_UNKNOWN_CA",
    "SSLV3_ALERT_CERTIFICATE_UNKNOWN", "SSLV3_ALERT_UNSUPPORTED_CERTIFICATE",
    "SSLV3_ALERT_CERTIFICATE_EXPIRED", "SSLV3_ALERT_CERTIFICATE_REVOKED", "TLSV1_ALERT_ACCESS_DENIED",
})  # fmt: skip
#: No version in common (either side's refusal).
_VERSION_REASONS = frozenset({
    "TLSV1_ALERT_PROTOCOL_VERSION", "UNSUPPORTED_PROTOCOL", "NO_PROTOCOLS_AVAILABLE",
    "TLSV1_ALERT_INAPPROPRIATE_FALLBACK",
})  # fmt: skip


def classify_tls_failure(reason: str | None, verify_code: int | None, *, negotiated: bool = False) -> UpstreamReason:
    """Map a failed upstream handshake onto a reason code.

    Under TLS 1.2 a server that requires a client certificate and gets none
    aborts with a plain ``handshake_failure`` alert, the same alert as for "no
    shared cipher"; the difference is whether the ServerHello had already
    fixed a cipher (measured with ``openssl s_server -Verify 1``).

    Args:
        reason: OpenSSL's reason (``ssl.SSLError.reason``), e.g. ``CERTIFICATE_VERIFY_FAILED``.
        verify_code: ``SSLCertVerificationError.verify_code`` when verification failed.
        negotiated: a cipher had been negotiated when the handshake failed.

    Returns:
        ``HOSTNAME_MISMATCH`` for a name (or IP) mismatch, ``TLS_UNTRUSTED`` for
        any other verification failure (unknown issuer, expired, depth, ...),
        ``REJECTED_CLIENT_CERT`` when the upstream refused our certificate,
        ``TLS_VERSION`` when no version is shared, else ``TLS_FAILED``.
    """
    if verify_code is not None:
        return UpstreamReason.HOSTNAME_MISMATCH if verify_code in _NAME_MISMATCH_CODES else UpstreamReason.TLS_UNTRUSTED
    text = (reason or "").upper()
    if text == "CERTIFICATE_VERIFY_FAILED":
        return UpstreamReason.TLS_UNTRUSTED
    if text in _CLIENT_CERT_ALERTS or (negotiated and text == "SSLV3_ALERT_HANDSHAKE_FAILURE"):
        return UpstreamReason.REJECTED_CLIENT_CERT
    if text in _VERSION_REASONS:
        return UpstreamReason.TLS_VERSION
    return UpstreamReason.TLS_FAILED


def classify_read_failure(reason: str | None) -> UpstreamReason | None:
    """Map a TLS error raised *after* the handshake (while reading the answer).

    Under TLS 1.3 a server reports a refused client certificate after the
    client's handshake has finished, so it surfaces at the first read.  A
    ``handshake_failure`` alert after the handshake answers our refusal of a
    server-initiated renegotiation (``OP_NO_RENEGOTIATION``, docs/tls-stack.md §5).

    Returns:
        The reason code, or ``None`` when the error says nothing TLS-specific.
    """
    text = (reason or "").upper()
    if text in _CLIENT_CERT_ALERTS:
        return UpstreamReason.REJECTED_CLIENT_CERT
    if text in ("SSLV3_ALERT_HANDSHAKE_FAILURE", "NO_RENEGOTIATION", "TLSV1_ALERT_NO_RENEGOTIATION"):
        return UpstreamReason.RENEGOTIATION_REFUSED
    return None


def upstream_read_failure(
    ssl_reason: str | None, detail: str, *, protocol_error: bool, reset: bool = False, closed: bool = False,
) -> str:
    """The reason code of a failed read of an upstream's answer.

    Args:
        ssl_reason: OpenSSL's reason when the read raised a TLS error (or was caused by one).
        detail: the error's text (alerts relayed by a TLS library that lost the reason).
        protocol_error: the upstream broke HTTP/1.1 (h11's ``RemoteProtocolError``).
        reset: the connection was reset (ECONNRESET, EPIPE).
        closed: the upstream's end of stream had been read when the error was raised.

    Returns:
        ``upstream_rejected_client_cert`` / ``upstream_renegotiation_refused`` for
        the TLS cases of :func:`classify_read_failure`; ``upstream_reset``;
        ``upstream_closed`` when the upstream closed before its answer was complete
        — before answering at all, or in the middle of the head or the body (h11
        calls an end of stream where more of a message is due a protocol error, but
        the upstream did not answer badly: it stopped answering, nginx's "upstream
        prematurely closed connection"); ``upstream_protocol_error`` for bytes that
        are not HTTP/1.1; or ``upstream_read_failed``.
    """
    tls_reason = classify_read_failure(ssl_reason)
    if tls_reason is not None:
        return str(tls_reason)
    text = detail.upper()
    if "CERTIFICATE_REQUIRED" in text or "BAD_CERTIFICATE" in text or "UNKNOWN_CA" in text:
        return str(UpstreamReason.REJECTED_CLIENT_CERT)
    if reset:
        return "upstream_reset"
    if protocol_error:
        return "upstream_closed" if closed else "upstream_protocol_error"
    return "upstream_read_failed"


def matches_common_name(cert: x509.Certificate, host: str) -> bool:
    """Tell whether a SAN-less certificate names ``host`` in its only CN.

    Args:
        cert: the upstream's leaf.
        host: the upstream host.

    Returns:
        True when the certificate has no subjectAltName extension, exactly one
        CN, and that CN equals ``host`` in canonical form (case-insensitive; no
        wildcards).  False otherwise.
    """
    if _sans(cert) is not None:
        return False
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(names) != 1 or not isinstance(names[0].value, str) or "*" in names[0].value:
        return False
    try:
        return normalize_server_name(names[0].value) == normalize_server_name(host)
    except InvalidServerName:
        return False


def _sans(cert: x509.Certificate) -> list[str | object] | None:
    try:
        ext = cert.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value
    except x509.ExtensionNotFound:
        return None
    assert isinstance(ext, x509.SubjectAlternativeName)
    return [*ext.get_values_for_type(x509.DNSName), *ext.get_values_for_type(x509.IPAddress)]


def check_upstream_identity(
    cert_der: bytes | None, *, host: str, pins: PinSet, verify: bool, force_common_name_check: bool
) -> None:
    """Judge the upstream's leaf after the handshake, before any request byte.

    Args:
        cert_der: the leaf the upstream presented (``getpeercert(True)``).
        host: the upstream host the request is for (not the forward proxy's).
        pins: the accepted public keys; empty: no pinning.
        verify: ``tls_verify`` of the profile (off: no name check here either).
        force_common_name_check: the context left the host name to this function.

    Raises:
        UpstreamTlsError: ``PIN_MISMATCH``; ``HOSTNAME_MISMATCH`` (a certificate
            with SANs that do not cover ``host``); ``CN_MISMATCH`` (no SAN, and
            the CN is missing, ambiguous or different).
    """
    need_name = verify and force_common_name_check
    if not pins and not need_name:
        return
    if cert_der is None:
        raise UpstreamTlsError(UpstreamReason.TLS_UNTRUSTED, "the upstream presented no certificate")
    if pins and not matches_pins(pins, cert_der):
        raise UpstreamTlsError(UpstreamReason.PIN_MISMATCH, "public key not pinned")
    if not need_name:
        return
    cert = x509.load_der_x509_certificate(cert_der)
    sans = _sans(cert)
    if sans is not None:
        if not matches_hostname(sans, host):  # type: ignore[arg-type]  # str and ipaddress values
            raise UpstreamTlsError(UpstreamReason.HOSTNAME_MISMATCH, "subjectAltName does not cover the host")
    elif not matches_common_name(cert, host):
        raise UpstreamTlsError(UpstreamReason.CN_MISMATCH, "common name does not match the host")
