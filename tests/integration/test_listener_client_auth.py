"""The handshake side of mTLS: ask only when a route needs it, trust the union, replace the context on change."""

from __future__ import annotations

from trio_gw.net.contexts import ALPN_HTTP11

import ssl
from pathlib import Path
from typing import Any

import pytest
import trio
import trustme

import trio_gw.snapshot
from trio_gw.tls.listener_client_auth import NO_CLIENT_AUTH, ListenerClientAuth

from .conftest import StartGateway, Upstream, port_of

CONFIG: dict[str, Any] = {"_format_version": "3.0"}


@pytest.fixture
def client_ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def require(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Stand in for the plugins' requirements so the listener mechanics are tested on their own."""
    state: dict[str, ListenerClientAuth] = {"auth": NO_CLIENT_AUTH}
    monkeypatch.setattr(trio_gw.snapshot, "client_cert_requirements", lambda _e: state["auth"])
    return state


async def handshake(port: int, ca: trustme.CA, client: trustme.LeafCert | None) -> bytes | bytearray:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    if client is not None:
        client.configure_cert(ctx)
    sock = await trio.open_tcp_stream("127.0.0.1", port)
    stream = trio.SSLStream(sock, ctx, server_hostname="localhost")
    await stream.do_handshake()
    await stream.send_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
    data = await stream.receive_some(4096)  # TLS 1.3 reports a refused client certificate at the first read
    await trio.aclose_forcefully(stream)
    return data


async def test_no_route_needs_a_certificate_nothing_is_asked(
    start_gateway: StartGateway, require: Any, ca: trustme.CA, server_pair: tuple[Path, Path], client_ca: trustme.CA
) -> None:
    cert, key = server_pair
    gw = await start_gateway(CONFIG, ssl_cert=str(cert), ssl_cert_key=str(key))
    assert gw.generation.server_tls.listener_context(ALPN_HTTP11).verify_mode == ssl.CERT_NONE
    assert (await handshake(port_of(gw, ssl=True), ca, None)).startswith(b"HTTP/1.1 404")


async def test_requested_certificates_are_optional_and_verified(
    start_gateway: StartGateway, require: Any, ca: trustme.CA, server_pair: tuple[Path, Path], client_ca: trustme.CA
) -> None:
    require["auth"] = ListenerClientAuth.build([client_ca.cert_pem.bytes().decode()], partial_chain=False)
    cert, key = server_pair
    gw = await start_gateway(CONFIG, ssl_cert=str(cert), ssl_cert_key=str(key))
    port = port_of(gw, ssl=True)
    assert gw.generation.server_tls.listener_context(ALPN_HTTP11).verify_mode == ssl.CERT_OPTIONAL
    # no certificate: the handshake succeeds and the route decides (here: no route, 404)
    assert (await handshake(port, ca, None)).startswith(b"HTTP/1.1 404")
    # a certificate from a CA nobody trusts: the handshake itself says unknown_ca
    with pytest.raises(trio.BrokenResourceError) as info:
        await handshake(port, ca, trustme.CA().issue_cert("stranger@example.test"))
    assert "UNKNOWN_CA" in str(info.value.__cause__).upper()
    assert (await handshake(port, ca, client_ca.issue_cert("alice@example.test"))).startswith(b"HTTP/1.1 404")


async def test_policy_change_replaces_the_listener_context(
    start_gateway: StartGateway, require: Any, server_pair: tuple[Path, Path], client_ca: trustme.CA
) -> None:
    cert, key = server_pair
    gw = await start_gateway(CONFIG, ssl_cert=str(cert), ssl_cert_key=str(key))
    before = gw.generation.server_tls.listener_context(ALPN_HTTP11)
    await gw.reload()
    assert gw.generation.server_tls.listener_context(ALPN_HTTP11) is before  # same policy: tickets stay valid
    require["auth"] = ListenerClientAuth.build([client_ca.cert_pem.bytes().decode()], partial_chain=True)
    await gw.reload()
    after = gw.generation.server_tls.listener_context(ALPN_HTTP11)
    assert after is not before  # new ticket keys: no resumption past the changed policy
    assert after.verify_flags & ssl.VERIFY_X509_PARTIAL_CHAIN


def test_generation_ignores_order_and_duplicates(client_ca: trustme.CA) -> None:
    a, b = client_ca.cert_pem.bytes().decode(), trustme.CA().cert_pem.bytes().decode()
    assert ListenerClientAuth.build([a, b], partial_chain=False) == ListenerClientAuth.build([b, a, a], partial_chain=False)
    assert ListenerClientAuth.build([a], partial_chain=False).generation != ListenerClientAuth.build([a], partial_chain=True).generation
