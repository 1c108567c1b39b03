from __future__ import annotations

import pytest

from trio_gw.tls.handshake_errors import HANDSHAKE_REASONS, classify_handshake_failure


@pytest.mark.parametrize(
    ("reason", "verify", "expected"),
    [
        ("UNSUPPORTED_PROTOCOL", None, "protocol_version"),
        ("NO_SHARED_CIPHER", None, "no_shared_cipher"),
        ("HTTP_REQUEST", None, "plain_http"),
        ("TLSV1_ALERT_UNKNOWN_CA", None, "client_rejected_server_certificate"),
        ("CERTIFICATE_VERIFY_FAILED", "certificate has expired", "expired"),
        ("CERTIFICATE_VERIFY_FAILED", "unable to get local issuer certificate", "unknown_ca"),
        ("CERTIFICATE_VERIFY_FAILED", "unsupported certificate purpose", "bad_eku"),
        ("CERTIFICATE_VERIFY_FAILED", "something new", "bad_certificate"),
        ("SOMETHING_NEW", None, "other"),
        (None, None, "other"),
    ],
)
def test_classification(reason: str | None, verify: str | None, expected: str) -> None:
    assert classify_handshake_failure(reason, verify) == expected
    assert expected in HANDSHAKE_REASONS
