"""tls-alpn-01 answering on a stdlib listener: only validation handshakes get the challenge certificate.

During a renewal the name already serves its real certificate; a client that
does not offer ``acme-tls/1`` must keep getting it, and a validation
handshake must get the RFC 8737 certificate with ``acme-tls/1`` negotiated.
"""

from __future__ import annotations

import hashlib
import socket
import ssl
from pathlib import Path

from cryptography import x509

from trio_gw.net.acme_challenges import ChallengeStore
from trio_gw.testing.acme_responders import tls_alpn01_listener
from trio_gw.testing.pki import issue, make_ca
from trio_gw.testing.tls_server import TlsTestServer
from trio_gw.tls.acme import ACME_IDENTIFIER_OID

CA = make_ca(common_name="alpn root")
NAME = "renewing.example"
KEY_AUTH = "T" * 43 + ".thumbprint"


def handshake(port: int, alpn: list[str] | None, name: str = NAME) -> tuple[x509.Certificate, str | None]:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE  # looking at what is served, not trusting it
    if alpn:
        ctx.set_alpn_protocols(alpn)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            ctx.wrap_socket(raw, server_hostname=name) as tls:
        der = tls.getpeercert(binary_form=True)
        assert der is not None and tls.recv(16) == b"ok\n"
        return x509.load_der_x509_certificate(der), tls.selected_alpn_protocol()


def test_only_acme_tls_handshakes_get_the_challenge(tmp_path: Path) -> None:
    real = issue(CA, NAME)
    (tmp_path / "c.pem").write_text(real.chain_pem())
    (tmp_path / "c.key").write_text(real.key_pem())
    listener = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    listener.load_cert_chain(tmp_path / "c.pem", tmp_path / "c.key")
    listener.set_alpn_protocols(["h2", "http/1.1"])
    store = ChallengeStore()
    with TlsTestServer(tls_alpn01_listener(store, listener)) as server:
        assert handshake(server.port, ["acme-tls/1"])[0] == real.cert  # nothing published yet
        store.publish_tls_alpn01(NAME, KEY_AUTH)
        challenge, protocol = handshake(server.port, ["acme-tls/1"])
        assert protocol == "acme-tls/1"
        ext = challenge.extensions.get_extension_for_oid(ACME_IDENTIFIER_OID)
        assert ext.critical and isinstance(ext.value, x509.UnrecognizedExtension)  # its raw DER, to compare
        assert ext.value.value == b"\x04\x20" + hashlib.sha256(KEY_AUTH.encode()).digest()
        assert handshake(server.port, ["h2", "http/1.1"]) == (real.cert, "h2")  # ordinary clients unaffected
        assert handshake(server.port, None)[0] == real.cert
        assert handshake(server.port, ["acme-tls/1"], name="other.example")[0] == real.cert
        store.withdraw_tls_alpn01(NAME)
        assert handshake(server.port, ["acme-tls/1"])[0] == real.cert
    assert not server.errors
