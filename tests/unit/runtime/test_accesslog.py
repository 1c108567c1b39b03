"""The access log names the client certificate and the consumer, in both formats, and cannot be forged."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from trio_gw.errors import CertificateError
from trio_gw.http.facts import ConnectionFacts
from trio_gw.net.exchange import Exchange
from trio_gw.pki.info import fingerprint_sha256, peer_identity
from trio_gw.runtime.accesslog import AccessLog, RequestIdentity, quote_field
from trio_gw.testing.pki import issue, make_ca

CLIENT = issue(make_ca(), common_name="alice", organization_name="Example Corp")
INFO = ConnectionFacts("203.0.113.7", 50123, 8443, tls=True, tls_version="TLSv1.3", cipher="TLS_AES_128_GCM_SHA256",
                      sni="api.example", peer_certificate_der=CLIENT.cert_der())


def _exchange() -> Exchange:
    return Exchange(started=time.monotonic(), method="GET", target="/orders", status=200, route="orders-api",
                    service="orders", bytes_out=12)


def _lines(tmp_path: Path, fmt: str, identity: RequestIdentity | None = None) -> list[str]:
    path = tmp_path / f"access.{len(list(tmp_path.iterdir()))}.{fmt}.log"
    log = AccessLog(str(path), fmt)
    if identity is None:
        log.record(INFO, _exchange())
    else:
        log.record(INFO, _exchange(), identity)
    log.close()
    return path.read_text().splitlines()


def test_the_client_certificate_identity_is_computed_once_from_the_der() -> None:
    fingerprint, subject = peer_identity(CLIENT.cert_der())
    assert subject == "CN=alice,O=Example Corp" and fingerprint == fingerprint_sha256(CLIENT.cert)
    with pytest.raises(CertificateError):
        peer_identity(b"\x30\x03\x02\x01\x00")


def test_json_lines_carry_fingerprint_subject_and_consumer(tmp_path: Path) -> None:
    fingerprint, subject = peer_identity(CLIENT.cert_der())
    (line,) = _lines(tmp_path, "json", RequestIdentity(fingerprint, subject, "alice"))
    record = json.loads(line)
    assert record["client_cert_fingerprint"] == fingerprint and record["client_cert_subject"] == subject
    assert record["consumer"] == "alice" and record["sni"] == "api.example"
    (anonymous,) = _lines(tmp_path, "json")
    assert {k: json.loads(anonymous)[k] for k in ("client_cert_fingerprint", "client_cert_subject", "consumer")} == {
        "client_cert_fingerprint": None, "client_cert_subject": None, "consumer": None}


def test_text_lines_carry_them_quoted(tmp_path: Path) -> None:
    fingerprint, subject = peer_identity(CLIENT.cert_der())
    (line,) = _lines(tmp_path, "text", RequestIdentity(fingerprint, subject, "alice"))
    assert line.endswith(f' client_cert={fingerprint} client_subject="CN=alice,O=Example Corp" consumer="alice"')
    (anonymous,) = _lines(tmp_path, "text")
    assert anonymous.endswith(" client_cert=- client_subject=- consumer=-")


def test_client_text_cannot_break_or_forge_a_text_line(tmp_path: Path) -> None:
    evil = RequestIdentity("ab" * 32, 'CN=x"\n203.0.113.9 - - [forged]', 'bob" consumer="root')
    (line,) = _lines(tmp_path, "text", evil)
    assert line.endswith(' client_subject="CN=x\\x22\\x0a203.0.113.9 - - [forged]" '
                         'consumer="bob\\x22 consumer=\\x22root"')
    assert quote_field("é") == '"\\xc3\\xa9"' and quote_field(None) == "-"
