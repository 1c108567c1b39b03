"""The test OCSP responder answers a real client: ``openssl ocsp -url`` (POST) and GET (RFC 6960 A.1)."""

from __future__ import annotations

import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from trio_gw.testing.ocsp_responder import OcspResponder
from trio_gw.testing.pki import build_certificate, issue, make_ca
from trio_gw.tls.ocsp import (
    OcspCertStatus,
    OcspError,
    OcspFailure,
    build_ocsp_request,
    ocsp_get_url,
    verify_ocsp_response,
)

CA = make_ca(common_name="responder root")
OTHER = make_ca(common_name="responder other root")


def openssl_ocsp(responder: OcspResponder, leaf: x509.Certificate, tmp: Path, *extra: str) -> str:
    from cryptography.hazmat.primitives.serialization import Encoding

    (tmp / "ca.pem").write_text(CA.cert_pem())
    (tmp / "leaf.pem").write_bytes(leaf.public_bytes(Encoding.PEM))
    result = subprocess.run(
        ["openssl", "ocsp", "-issuer", str(tmp / "ca.pem"), "-cert", str(tmp / "leaf.pem"), "-url", responder.url,
         "-CAfile", str(tmp / "ca.pem"), "-timeout", "10", *extra],
        capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL,
    )
    return result.stdout + result.stderr


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl CLI (make system-tools)")
def test_openssl_ocsp_client_reads_good_revoked_unknown(tmp_path: Path) -> None:
    good, revoked, unlisted = issue(CA, "a.example"), issue(CA, "b.example"), issue(CA, "c.example")
    delegate = build_certificate(issuer=CA, common_name="delegate", ekus=[ExtendedKeyUsageOID.OCSP_SIGNING],
                                 ocsp_nocheck=True)
    with OcspResponder(CA) as responder, OcspResponder(CA, signer=delegate) as delegated:
        responder.set(good, "good")
        responder.set(revoked, "revoked", reason=x509.ReasonFlags.key_compromise)
        delegated.set(good, "good")
        assert "leaf.pem: good" in openssl_ocsp(responder, good.cert, tmp_path)
        out = openssl_ocsp(responder, revoked.cert, tmp_path)
        assert "leaf.pem: revoked" in out and "Reason: keyCompromise" in out
        assert "leaf.pem: unknown" in openssl_ocsp(responder, unlisted.cert, tmp_path)
        out = openssl_ocsp(delegated, good.cert, tmp_path)
        assert "Response verify OK" in out and "leaf.pem: good" in out
        assert responder.methods == ["POST"] * 3


def get(responder: OcspResponder, leaf: x509.Certificate, issuer: x509.Certificate) -> bytes:
    url = ocsp_get_url(responder.url, build_ocsp_request(leaf, issuer))
    assert url is not None
    with urllib.request.urlopen(url, timeout=10) as reply:  # noqa: S310 - 127.0.0.1 test responder
        return bytes(reply.read())


def test_get_requests_and_the_table() -> None:
    leaf = issue(CA, "get.example")
    with OcspResponder(CA) as responder:
        responder.set(leaf, "revoked")
        answer = verify_ocsp_response(get(responder, leaf.cert, CA.cert), leaf.cert, CA.cert, now=time.time())
        assert answer.status is OcspCertStatus.REVOKED and responder.methods == ["GET"]
        with pytest.raises(OcspError) as info:  # asked about another issuer's certificate: "unauthorized"
            stranger = issue(OTHER, "x.example")
            verify_ocsp_response(get(responder, stranger.cert, OTHER.cert), stranger.cert, OTHER.cert, now=time.time())
        assert info.value.reason is OcspFailure.RESPONDER_ERROR and "unauthorized" in str(info.value)


def test_down_drops_the_connection_unanswered() -> None:
    leaf = issue(CA, "down.example")
    with OcspResponder(CA) as responder:
        responder.down = True
        with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
            get(responder, leaf.cert, CA.cert)
        assert responder.requests == 1
