"""Request body framing and connection facts."""

from __future__ import annotations

import pytest

from trio_gw.http import facts
from trio_gw.http.facts import ConnectionFacts, body_framing, shared_text
from trio_gw.http.headers import TrustedNetworks


def test_body_framing() -> None:
    assert body_framing([(b"host", b"a")]) == (False, 0, False)
    assert body_framing([(b"host", b"a"), (b"content-length", b"12")]) == (False, 12, False)
    assert body_framing([(b"transfer-encoding", b"chunked"), (b"host", b"a")]) == (True, 0, False)
    assert body_framing([(b"content-length", b"0")]) == (False, 0, False)


def test_body_framing_notes_an_upgrade_only_without_a_body() -> None:
    assert body_framing([(b"upgrade", b"websocket"), (b"host", b"a")]) == (False, 0, True)
    assert body_framing([(b"upgrade", b"websocket"), (b"content-length", b"0")]) == (False, 0, True)
    assert body_framing([(b"upgrade", b"websocket"), (b"content-length", b"3")]) == (False, 3, False)
    assert body_framing([(b"transfer-encoding", b"chunked"), (b"upgrade", b"websocket")]) == (True, 0, False)


def test_trust_is_worked_out_once_per_networks_object() -> None:
    conn = ConnectionFacts(client_ip="10.1.2.3", client_port=1, server_port=8000)
    inside, outside = TrustedNetworks.parse(["10.0.0.0/8"]), TrustedNetworks.parse(["192.0.2.0/24"])
    assert conn.is_trusted(inside) and not conn.is_trusted(outside) and conn.is_trusted(inside)
    assert conn.protocol == "http" and ConnectionFacts("::1", 1, 443, tls=True).protocol == "https"


def test_shared_text_gives_one_object_per_value() -> None:
    first = "".join(["TLS", "v1.3"])  # built at run time: not the literal's object
    second = "".join(["TLSv", "1.3"])
    assert first == second and first is not second
    assert shared_text(first) is shared_text(second)
    assert shared_text(None) is None


def test_shared_text_stops_keeping_new_values_at_its_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(facts, "_SHARED_TEXT", {})
    monkeypatch.setattr(facts, "SHARED_TEXT_LIMIT", 3)
    for name in ("a.example", "b.example", "c.example"):
        assert shared_text(name) == name
    late = "".join(["d.", "example"])
    assert shared_text(late) is late  # returned, not kept: a client choosing names cannot grow it
    assert len(facts._SHARED_TEXT) == 3
    assert shared_text("".join(["a.", "example"])) is facts._SHARED_TEXT["a.example"]
