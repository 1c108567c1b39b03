"""Shared helpers of the TLS unit tests: CRLs signed by test CAs."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ed448, ed25519

from trio_gw.testing.pki import Issued

#: The validation time of these tests (inside the testing PKI's default validity).
NOW = datetime(2025, 6, 1, tzinfo=UTC)

MakeCrl = Callable[..., x509.CertificateRevocationList]


def build_crl(
    signer: Issued,
    revoked: Sequence[int] = (),
    *,
    issuer_name: x509.Name | None = None,
    last_update: datetime = NOW - timedelta(days=1),
    next_update: datetime | None = NOW + timedelta(days=7),
    extensions: Sequence[tuple[x509.ExtensionType, bool]] = (),
    reason: x509.ReasonFlags | None = None,
) -> x509.CertificateRevocationList:
    """A CRL signed by ``signer``'s key, named after ``issuer_name`` (default: its subject)."""
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer_name or signer.cert.subject)
        .last_update(last_update)
    )
    if next_update is not None:
        builder = builder.next_update(next_update)
    for serial in revoked:
        entry = (
            x509.RevokedCertificateBuilder()
            .serial_number(serial)
            .revocation_date(last_update)
        )
        if reason is not None:
            entry = entry.add_extension(x509.CRLReason(reason), False)
        builder = builder.add_revoked_certificate(entry.build())
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical)
    plain = isinstance(signer.key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey)
    return builder.sign(signer.key, None if plain else hashes.SHA256())


@pytest.fixture
def make_crl() -> MakeCrl:
    return build_crl
