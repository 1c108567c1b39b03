"""Header rewriting: hop-by-hop, re-framing, X-Forwarded-* trust, Via."""

from __future__ import annotations

import pytest

from trio_gw.errors import ConfigError
from trio_gw.http.headers import (
    HOP_BY_HOP,
    TrustedNetworks,
    downstream_response_headers,
    upstream_request_headers,
    websocket_requested,
)
from trio_gw.http.routing import RequestFacts, Router, select_route
from trio_gw.model.entities import Route, Service

SERVICES = {"s": Service(id="s", host="up.internal", port=8080)}
ROUTER = Router.build([Route(id="r", service="s", paths=("/api",))], SERVICES)
FACTS = RequestFacts(method="GET", host="gw.example.com", path="/api/users", protocol="https")
MATCH = select_route(ROUTER, FACTS)
assert MATCH is not None


def build(
    headers: list[tuple[bytes, bytes]], *, trusted: bool | TrustedNetworks = False, **kw: object
) -> dict[bytes, bytes]:
    out = upstream_request_headers(
        headers, MATCH, FACTS, client_ip="203.0.113.7", server_port=8443, trusted=trusted, **kw  # type: ignore[arg-type]
    )
    names = [n for n, _ in out]
    assert len(names) == len(set(names)), names
    return dict(out)


def test_forwarding_headers_from_untrusted_client_are_replaced() -> None:
    out = build(
        [
            (b"host", b"gw.example.com"),
            (b"x-forwarded-for", b"1.2.3.4"),
            (b"x-forwarded-proto", b"http"),
            (b"x-forwarded-host", b"evil.com"),
            (b"x-forwarded-port", b"1"),
            (b"x-forwarded-path", b"/x"),
            (b"x-forwarded-prefix", b"/evil"),
            (b"x-real-ip", b"1.2.3.4"),
            (b"accept", b"*/*"),
        ]
    )
    assert out[b"host"] == b"up.internal:8080"
    assert out[b"x-forwarded-for"] == b"203.0.113.7"
    assert out[b"x-forwarded-proto"] == b"https"
    assert out[b"x-forwarded-host"] == b"gw.example.com"
    assert out[b"x-forwarded-port"] == b"8443"
    assert out[b"x-forwarded-path"] == b"/api/users"
    assert out[b"x-forwarded-prefix"] == b"/api"
    assert out[b"x-real-ip"] == b"203.0.113.7"
    assert out[b"via"] == b"1.1 trio-gw"
    assert out[b"accept"] == b"*/*"


def test_forwarding_headers_from_trusted_peer_are_kept() -> None:
    out = build(
        [
            (b"x-forwarded-for", b"1.2.3.4"),
            (b"x-forwarded-for", b"10.0.0.1"),
            (b"x-forwarded-proto", b"http"),
            (b"x-forwarded-host", b"public.example.com"),
            (b"x-forwarded-port", b"80"),
            (b"x-real-ip", b"1.2.3.4"),
            (b"via", b"1.1 lb"),
        ],
        trusted=True,
    )
    assert out[b"x-forwarded-for"] == b"1.2.3.4, 10.0.0.1, 203.0.113.7"
    assert out[b"x-forwarded-proto"] == b"http"
    assert out[b"x-forwarded-host"] == b"public.example.com"
    assert out[b"x-forwarded-port"] == b"80"
    assert out[b"x-real-ip"] == b"1.2.3.4"
    assert out[b"via"] == b"1.1 lb, 1.1 trio-gw"


def test_hop_by_hop_and_connection_named_headers_dropped() -> None:
    out = build(
        [
            (b"connection", b"keep-alive, X-Secret , x-forwarded-for, content-length"),
            (b"connection", b"x-other"),
            (b"keep-alive", b"timeout=5"),
            (b"proxy-connection", b"keep-alive"),
            (b"te", b"trailers"),
            (b"trailer", b"x-t"),
            (b"upgrade", b"websocket"),
            (b"proxy-authorization", b"Basic eA=="),
            (b"proxy-authenticate", b"Basic"),
            (b"x-secret", b"1"),
            (b"x-other", b"2"),
            (b"content-length", b"5"),
            (b"x-kept", b"3"),
        ]
    )
    assert not HOP_BY_HOP & out.keys()
    assert b"x-secret" not in out and b"x-other" not in out
    # protected: the gateway sets it / framing cannot be dropped by the client
    assert out[b"x-forwarded-for"] == b"203.0.113.7"
    assert out[b"content-length"] == b"5"
    assert out[b"x-kept"] == b"3"


def test_chunked_request_loses_both_framing_headers() -> None:
    # the driver re-frames (appends transfer-encoding: chunked itself)
    out = build([(b"transfer-encoding", b"chunked"), (b"content-length", b"3")])
    assert b"transfer-encoding" not in out
    assert b"content-length" not in out


def test_trusted_networks_accepted_in_place_of_a_bool() -> None:
    nets = TrustedNetworks.parse(["203.0.113.0/24"])
    out = build([(b"x-forwarded-for", b"1.2.3.4")], trusted=nets)
    assert out[b"x-forwarded-for"] == b"1.2.3.4, 203.0.113.7"


def test_upgrade_relayed_when_asked() -> None:
    out = build([(b"connection", b"Upgrade"), (b"upgrade", b"websocket")], upgrade=True)
    assert out[b"connection"] == b"upgrade" and out[b"upgrade"] == b"websocket"


def test_strip_list() -> None:
    out = build([(b"x-client-cert", b"forged"), (b"x-a", b"1")], strip=frozenset({b"x-client-cert"}))
    assert b"x-client-cert" not in out and out[b"x-a"] == b"1"


def test_downstream_response_headers() -> None:
    out = downstream_response_headers(
        [
            (b"content-type", b"text/plain"),
            (b"connection", b"close, x-internal"),
            (b"x-internal", b"1"),
            (b"transfer-encoding", b"chunked"),
            (b"content-length", b"10"),
            (b"keep-alive", b"timeout=5"),
            (b"via", b"1.0 upstream"),
            (b"set-cookie", b"a=1"),
            (b"set-cookie", b"b=2"),
        ]
    )
    assert out == [
        (b"content-type", b"text/plain"),
        (b"set-cookie", b"a=1"),
        (b"set-cookie", b"b=2"),
        (b"via", b"1.0 upstream, 1.1 trio-gw"),
    ]


def test_downstream_keeps_content_length_and_upgrade() -> None:
    out = downstream_response_headers(
        [(b"content-length", b"2"), (b"connection", b"upgrade"), (b"upgrade", b"websocket")],
        upgrade=True,
        via=None,
    )
    assert out == [(b"content-length", b"2"), (b"connection", b"upgrade"), (b"upgrade", b"websocket")]


@pytest.mark.parametrize(("fields", "expected"), [
    ([(b"connection", b"Upgrade"), (b"upgrade", b"websocket")], True),
    ([(b"connection", b"keep-alive, Upgrade"), (b"upgrade", b"WebSocket")], True),
    ([(b"upgrade", b"foo, websocket"), (b"connection", b"upgrade")], True),
    ([(b"upgrade", b"websocket")], False),  # Connection must name it (RFC 9110 §7.8)
    ([(b"connection", b"upgrade"), (b"upgrade", b"h2c")], False),  # Kong relays websocket only
    ([(b"connection", b"upgrade")], False),
    ([(b"connection", b"close"), (b"upgrade", b"websocket")], False),
])
def test_websocket_requested(fields: list[tuple[bytes, bytes]], expected: bool) -> None:
    assert websocket_requested([(b"host", b"a"), *fields]) is expected


def test_no_content_drops_content_length_and_only_then() -> None:
    fields = [(b"content-length", b"5"), (b"etag", b'"x"')]
    assert downstream_response_headers(fields, via=None, no_content=True) == [(b"etag", b'"x"')]
    # any other status (a 304 included) keeps the length the upstream gave
    assert downstream_response_headers(fields, via=None) == fields


@pytest.mark.parametrize(
    "ip,trusted",
    [
        ("10.1.2.3", True),
        ("192.168.0.1", True),
        ("192.169.0.1", False),
        ("::1", True),
        ("::ffff:10.0.0.1", True),
        ("2001:db8::1", False),
        ("fe80::1%eth0", False),
        ("not-an-ip", False),
    ],
)
def test_trusted_networks(ip: str, trusted: bool) -> None:
    nets = TrustedNetworks.parse(["10.0.0.0/8", "192.168.0.1", "::1"])
    assert nets.is_trusted(ip) is trusted


def test_trusted_networks_empty_and_all() -> None:
    assert not TrustedNetworks().is_trusted("127.0.0.1")
    everyone = TrustedNetworks.parse(["0.0.0.0/0", "::/0"])
    assert everyone.is_trusted("8.8.8.8") and everyone.is_trusted("2001:db8::1")


def test_trusted_networks_errors_have_paths() -> None:
    with pytest.raises(ConfigError) as info:
        TrustedNetworks.parse(["10.0.0.0/8", "banana", "10.0.0.0/33"], path="settings.trusted_ips")
    assert [p.path for p in info.value.problems] == ["settings.trusted_ips[1]", "settings.trusted_ips[2]"]
