"""Stable reason codes for failed inbound handshakes (pure).

OpenSSL reports why a server-side handshake failed as a reason string
(``ssl.SSLError.reason``) and, for a client certificate that failed
verification, a verify message.  Logs and metrics need one small, stable
vocabulary instead — the same codes the HTTP layer uses for client
certificates (``unknown_ca``, ``expired`` ...).
"""

from __future__ import annotations

#: Substrings of an OpenSSL verify message → reason code (client certificates).
_VERIFY = (
    ("expired", "expired"),
    ("not yet valid", "not_yet_valid"),
    ("revoked", "revoked"),
    ("unsupported certificate purpose", "bad_eku"),
    ("unable to get local issuer", "unknown_ca"),
    ("self-signed certificate", "unknown_ca"),
    ("self signed certificate", "unknown_ca"),
    ("certificate chain too long", "chain_too_deep"),
)

#: OpenSSL reason strings → reason code (everything else about the handshake).
_REASONS = {
    "UNSUPPORTED_PROTOCOL": "protocol_version",
    "WRONG_VERSION_NUMBER": "protocol_version",
    "TLSV1_ALERT_PROTOCOL_VERSION": "protocol_version",
    "NO_PROTOCOLS_AVAILABLE": "protocol_version",
    "NO_SHARED_CIPHER": "no_shared_cipher",
    "PEER_DID_NOT_RETURN_A_CERTIFICATE": "no_cert",
    "TLSV1_ALERT_UNKNOWN_CA": "client_rejected_server_certificate",
    "SSLV3_ALERT_BAD_CERTIFICATE": "client_rejected_server_certificate",
    "SSLV3_ALERT_CERTIFICATE_UNKNOWN": "client_rejected_server_certificate",
    "TLSV1_UNRECOGNIZED_NAME": "unrecognized_name",
    "HTTP_REQUEST": "plain_http",
    "UNEXPECTED_EOF_WHILE_READING": "client_closed",
}

HANDSHAKE_REASONS = frozenset(code for _, code in _VERIFY) | frozenset(_REASONS.values()) | {
    "bad_certificate", "timeout", "other",
    # set by the SNI callback itself (OpenSSL only says CALLBACK_FAILED)
    "certificate_unusable", "internal_error", "bad_server_name",
    # strict / must_staple OCSP stapling refused the certificate (trio_gw.tls.stapling_plan)
    "ocsp_revoked", "ocsp_unknown", "ocsp_stale", "ocsp_must_staple_without_response"}


def classify_handshake_failure(reason: str | None, verify_message: str | None = None) -> str:
    """The stable code for a failed inbound handshake.

    Args:
        reason: ``ssl.SSLError.reason`` (e.g. ``"NO_SHARED_CIPHER"``), if any.
        verify_message: ``SSLCertVerificationError.verify_message`` for a client
            certificate that failed verification, if any.

    Returns:
        One of :data:`HANDSHAKE_REASONS`.
    """
    if verify_message:
        text = verify_message.lower()
        for needle, code in _VERIFY:
            if needle in text:
                return code
        return "bad_certificate"
    if reason is None:
        return "other"
    return _REASONS.get(reason.upper(), "other")
