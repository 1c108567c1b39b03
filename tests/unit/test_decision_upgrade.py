"""decision.decide_request and a WebSocket handshake: the Upgrade goes upstream only when the driver asks."""

from __future__ import annotations

from trio_gw.decision import Forward, decide_request
from trio_gw.http.facts import ConnectionFacts, RequestFacts
from trio_gw.model.declarative import parse_declarative
from trio_gw.settings import default_settings
from trio_gw.snapshot import build_snapshot

NOW = 1_750_000_000
HANDSHAKE = [(b"host", b"api.example"), (b"connection", b"Upgrade"), (b"upgrade", b"websocket"),
             (b"sec-websocket-key", b"dGhlIHNhbXBsZSBub25jZQ=="), (b"sec-websocket-version", b"13")]


def decide(*, upgrade: bool) -> Forward:
    entities = parse_declarative({"_format_version": "3.0", "services": [
        {"name": "s", "url": "http://127.0.0.1:9", "routes": [{"name": "r", "paths": ["/ws"]}]}]}, now=NOW)
    snap = build_snapshot(default_settings(), entities, now=NOW)
    facts = RequestFacts("GET", "api.example", "/ws/chat", protocol="http")
    conn = ConnectionFacts("127.0.0.1", 40000, 80)
    decision = decide_request(facts, HANDSHAKE, conn, snap, method=b"GET", chunked=False, now=NOW, upgrade=upgrade)
    assert isinstance(decision, Forward)
    return decision


def test_an_upgrade_the_driver_relays_goes_upstream_with_the_handshake_fields() -> None:
    fwd = decide(upgrade=True)
    assert fwd.upgrade and fwd.target == b"/chat"
    assert (b"connection", b"upgrade") in fwd.headers and (b"upgrade", b"websocket") in fwd.headers
    assert (b"sec-websocket-key", b"dGhlIHNhbXBsZSBub25jZQ==") in fwd.headers  # end to end, as any field


def test_without_the_driver_the_upgrade_is_a_hop_by_hop_field_like_any_other() -> None:
    fwd = decide(upgrade=False)
    assert not fwd.upgrade
    assert not {b"connection", b"upgrade"} & {name for name, _ in fwd.headers}
