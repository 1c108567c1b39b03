"""Request body framing and connection facts."""

from __future__ import annotations

from trio_gw.http.facts import ConnectionFacts, body_framing
from trio_gw.http.headers import TrustedNetworks


def test_body_framing() -> None:
    assert body_framing([(b"host", b"a")]) == (False, 0)
    assert body_framing([(b"host", b"a"), (b"content-length", b"12")]) == (False, 12)
    assert body_framing([(b"transfer-encoding", b"chunked"), (b"host", b"a")]) == (True, 0)
    assert body_framing([(b"content-length", b"0")]) == (False, 0)


def test_trust_is_worked_out_once_per_networks_object() -> None:
    conn = ConnectionFacts(client_ip="10.1.2.3", client_port=1, server_port=8000)
    inside, outside = TrustedNetworks.parse(["10.0.0.0/8"]), TrustedNetworks.parse(["192.0.2.0/24"])
    assert conn.is_trusted(inside) and not conn.is_trusted(outside) and conn.is_trusted(inside)
    assert conn.protocol == "http" and ConnectionFacts("::1", 1, 443, tls=True).protocol == "https"
