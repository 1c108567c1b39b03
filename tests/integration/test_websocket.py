"""WebSocket through the gateway: the handshake is a request like any other, then a tunnel.

Real sockets on 127.0.0.1, a ``wsproto`` upstream that echoes, a ``wsproto`` client over
plain TCP and over TLS; the access log's JSON line tells what the gateway recorded.
"""

from __future__ import annotations

import json
import ssl
from pathlib import Path
from typing import Any

import pytest
import trio
import trustme

from trio_gw.runtime.gateway import Gateway
from trio_gw.testing.http_client import Client, raw_exchange
from trio_gw.testing.websocket import WebSocketClient, WebSocketEcho, WebSocketRefused, masked_text_frame

from .conftest import StartGateway, Upstream, port_of


@pytest.fixture
async def ws_upstream(nursery: trio.Nursery) -> tuple[WebSocketEcho, int]:
    server = WebSocketEcho()
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    nursery.start_soon(server.serve, listeners)
    return server, int(listeners[0].socket.getsockname()[1])


def routes(ws_port: int, upstream: Upstream | None = None, **service: Any) -> dict[str, Any]:
    services: list[dict[str, Any]] = [
        {"name": "ws", "url": f"http://127.0.0.1:{ws_port}", "routes": [{"name": "ws", "paths": ["/ws"]}], **service}]
    if upstream is not None:
        services.append({"name": "echo", "url": upstream.url, "routes": [{"name": "api", "paths": ["/api"]}]})
    return {"_format_version": "3.0", "services": services}


async def logged_gateway(start_gateway: StartGateway, ws_port: int, log: Path, **service: Any) -> Gateway:
    """A gateway routing /ws to ``ws_port`` with its access log in JSON at ``log``."""
    return await start_gateway(routes(ws_port, **service), proxy_access_log=str(log), access_log_format="json")


async def plain_ws(gw: Gateway, path: str, host: str = "a", **options: Any) -> WebSocketClient:
    """A WebSocket over a new plain connection to the gateway, its handshake answered."""
    return await WebSocketClient.connect(await trio.open_tcp_stream("127.0.0.1", port_of(gw)), host, path, **options)


async def access_records(log: Path, count: int) -> list[dict[str, Any]]:
    """The access log's JSON lines, once ``count`` are written (a bounded wait)."""
    with trio.move_on_after(10):
        while len(log.read_text().splitlines()) < count:
            await trio.sleep(0.02)
    return [json.loads(line) for line in log.read_text().splitlines()]


async def test_messages_go_both_ways_and_the_access_log_says_101(
    start_gateway: StartGateway, ws_upstream: tuple[WebSocketEcho, int], tmp_path: Path,
) -> None:
    server, ws_port = ws_upstream
    log = tmp_path / "access.log"
    gw = await logged_gateway(start_gateway, ws_port, log)
    client = await plain_ws(gw, "/ws/chat?room=1", "api.example", extra_headers=[(b"cookie", b"a=1")])
    messages: list[str | bytes] = ["hello", b"\x00\x01binary", "x" * 200_000]
    for message in messages:
        await client.send(message)
        assert await client.receive() == message
    await client.close()
    assert client.closed is not None and client.closed.code == 1000
    assert server.closed_by_client == 1
    [handshake] = server.handshakes
    assert handshake.path == "/chat?room=1"  # the route's strip_path, as for any request
    assert handshake.headers["host"] == f"127.0.0.1:{ws_port}"
    assert handshake.headers["x-forwarded-host"] == "api.example"
    assert handshake.headers["x-forwarded-for"] == "127.0.0.1"
    assert handshake.headers["cookie"] == "a=1"
    assert "sec-websocket-key" in handshake.headers
    [record] = await access_records(log, 1)
    assert (record["status"], record["reason"], record["route"]) == (101, None, "ws")
    assert all(plan.websocket is None for plan in gw.generation.upstreams.values())  # http/1.1 plans serve as they are
    assert record["bytes_out"] > 200_000 and record["bytes_in"] > 200_000  # frames both ways, not just the head


async def test_a_wss_client_over_the_tls_listener(
    start_gateway: StartGateway, ws_upstream: tuple[WebSocketEcho, int], server_pair: tuple[Path, Path],
    client_ctx: ssl.SSLContext,
) -> None:
    server, ws_port = ws_upstream
    cert, key = server_pair
    gw = await start_gateway(routes(ws_port), ssl_cert=str(cert), ssl_cert_key=str(key))
    tcp = await trio.open_tcp_stream("127.0.0.1", port_of(gw, ssl=True))
    stream = trio.SSLStream(tcp, client_ctx, server_hostname="localhost")
    client = await WebSocketClient.connect(stream, "localhost", "/ws")
    await client.send("over tls")
    assert await client.receive() == "over tls"
    await client.close()
    assert server.messages == ["over tls"]


async def test_bytes_sent_behind_the_handshake_and_behind_the_101_are_relayed(
    start_gateway: StartGateway, ws_upstream: tuple[WebSocketEcho, int],
) -> None:
    """A client may write its first frame before the 101 arrives; the upstream may write its first
    frame in the same packet as its 101 (``/bye`` does): neither is lost in the switch."""
    server, ws_port = ws_upstream
    gw = await start_gateway(routes(ws_port))
    client = await plain_ws(gw, "/ws/x", early=masked_text_frame("early"))
    with trio.fail_after(5):
        while not server.messages:
            await trio.sleep(0.01)
    assert server.messages == ["early"]
    bye = await plain_ws(gw, "/ws/bye")
    assert await bye.receive() == "bye"
    assert await bye.receive() is None and bye.closed is not None and bye.closed.code == 1000
    del client


async def test_a_refused_handshake_is_a_plain_answer_and_the_connection_goes_on(
    start_gateway: StartGateway, ws_upstream: tuple[WebSocketEcho, int], upstream: Upstream,
) -> None:
    _, ws_port = ws_upstream
    gw = await start_gateway(routes(ws_port, upstream))
    stream = await trio.open_tcp_stream("127.0.0.1", port_of(gw))
    with pytest.raises(WebSocketRefused) as refused:
        await WebSocketClient.connect(stream, "a", "/ws/refuse/403")
    assert (refused.value.status, refused.value.body) == (403, b"refused")
    # the same connection serves the next request: the switch was denied, HTTP/1.1 goes on
    client = Client(stream)
    assert (await client.request("GET", "/api/anything")).status == 200


async def test_a_silent_upstream_ends_the_tunnel_at_read_timeout(
    start_gateway: StartGateway, ws_upstream: tuple[WebSocketEcho, int], tmp_path: Path,
) -> None:
    """nginx's proxy_read_timeout on an upgraded connection: a WebSocket server that neither answers
    nor pings for the service's read_timeout loses the tunnel, and the client's connection closes."""
    server, ws_port = ws_upstream
    log = tmp_path / "access.log"
    gw = await logged_gateway(start_gateway, ws_port, log, read_timeout=400)
    client = await plain_ws(gw, "/ws/silent")
    start = trio.current_time()
    with trio.fail_after(5):
        assert await client.receive() is None  # the connection closed under it
    assert trio.current_time() - start >= 0.3
    [record] = await access_records(log, 1)
    assert (record["status"], record["reason"]) == (101, "upstream_read_timeout")
    del server


async def test_a_client_that_leaves_closes_the_upstream_connection(
    start_gateway: StartGateway, ws_upstream: tuple[WebSocketEcho, int], tmp_path: Path,
) -> None:
    _, ws_port = ws_upstream
    log = tmp_path / "access.log"
    gw = await logged_gateway(start_gateway, ws_port, log)
    client = await plain_ws(gw, "/ws/silent")
    await client.send("one")
    await client.stream.aclose()  # no close frame: the TCP connection just ends
    [record] = await access_records(log, 1)  # written when the tunnel ended, long before any read_timeout
    assert (record["status"], record["reason"]) == (101, None)


@pytest.mark.parametrize("upgrade", [b"h2c", b"foo"])
async def test_other_upgrades_are_served_as_plain_requests(
    start_gateway: StartGateway, upstream: Upstream, upgrade: bytes,
) -> None:
    """Kong relays only websocket upgrades; any other Upgrade is a hop-by-hop field the request loses."""
    gw = await start_gateway({"_format_version": "3.0", "services": [
        {"name": "echo", "url": upstream.url, "routes": [{"paths": ["/api"]}]}]})
    out = await raw_exchange(port_of(gw), b"GET /api/anything HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, close\r\n"
                                          b"Upgrade: " + upgrade + b"\r\n\r\n")
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    seen = json.loads(body)["headers"]
    assert "upgrade" not in seen and "connection" not in seen


async def test_with_proxy_enable_http2_the_handshake_goes_over_http11(
    nursery: trio.Nursery, start_gateway: StartGateway, tmp_path: Path,
) -> None:
    """An upstream that would pick h2 by ALPN is offered http/1.1 alone for a WebSocket handshake:
    HTTP/2 has no Upgrade (RFC 9113 §8.6), and the service's other requests keep offering h2."""
    ca = trustme.CA()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1").configure_cert(ctx)
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    server = WebSocketEcho()
    listeners = await trio.open_ssl_over_tcp_listeners(0, ctx, host="127.0.0.1")
    nursery.start_soon(server.serve, listeners)
    transport = listeners[0].transport_listener
    assert isinstance(transport, trio.SocketListener)
    port = transport.socket.getsockname()[1]
    ca_file = tmp_path / "ws-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    conf = {"_format_version": "3.0", "services": [
        {"name": "wss", "url": f"https://127.0.0.1:{port}", "routes": [{"name": "ws", "paths": ["/ws"]}]}]}
    gw = await start_gateway(conf, proxy_ssl_trusted_certificate=[str(ca_file)], proxy_enable_http2=True)
    plan = gw.generation.upstreams[next(iter(gw.generation.upstreams))]
    assert plan.context is not None and plan.websocket is not None and plan.websocket.context is not None
    assert plan.websocket.key != plan.key  # its connections are pooled apart
    client = await plain_ws(gw, "/ws")
    await client.send("tls upstream")
    assert await client.receive() == "tls upstream"
    assert [h.alpn for h in server.handshakes] == ["http/1.1"]


async def test_the_echo_upstream_outlives_a_request_that_is_no_handshake(
    ws_upstream: tuple[WebSocketEcho, int],
) -> None:
    """The tests' upstream itself: a plain GET (what a gateway that drops Upgrade sends) closes that
    connection only, and the next handshake is served."""
    server, ws_port = ws_upstream
    assert await raw_exchange(ws_port, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n") == b""
    client = await WebSocketClient.connect(await trio.open_tcp_stream("127.0.0.1", ws_port), "a", "/after")
    await client.send("still here")
    assert await client.receive() == "still here"
    del server


async def test_a_handshake_on_an_mtls_auth_route_is_authenticated_like_any_request(
    start_gateway: StartGateway, ws_upstream: tuple[WebSocketEcho, int], ca: trustme.CA,
    server_pair: tuple[Path, Path],
) -> None:
    """The certificate is checked before anything goes upstream: with one the WebSocket upstream learns
    the consumer from the handshake's headers; without one the answer is 401 and it sees nothing."""
    server, ws_port = ws_upstream
    client_ca = trustme.CA()
    ca_id = "5e1f2a3b-4c5d-4e6f-8a9b-0c1d2e3f4a5b"
    conf = routes(ws_port)
    conf["ca_certificates"] = [{"id": ca_id, "cert": client_ca.cert_pem.bytes().decode()}]
    conf["consumers"] = [{"username": "alice@example.test"}]
    conf["services"][0]["routes"][0]["plugins"] = [{"name": "mtls-auth", "config": {"ca_certificates": [ca_id]}}]
    cert, key = server_pair
    gw = await start_gateway(conf, ssl_cert=str(cert), ssl_cert_key=str(key))

    async def open_wss(leaf: trustme.LeafCert | None) -> trio.SSLStream[trio.SocketStream]:
        ctx = ssl.create_default_context()
        ca.configure_trust(ctx)
        if leaf is not None:
            leaf.configure_cert(ctx)
        tcp = await trio.open_tcp_stream("127.0.0.1", port_of(gw, ssl=True))
        return trio.SSLStream(tcp, ctx, server_hostname="localhost")

    client = await WebSocketClient.connect(await open_wss(client_ca.issue_cert("alice@example.test")), "localhost",
                                           "/ws")
    await client.send("authenticated")
    assert await client.receive() == "authenticated"
    [handshake] = server.handshakes
    assert handshake.headers["x-consumer-username"] == "alice@example.test"
    with pytest.raises(WebSocketRefused) as refused:
        await WebSocketClient.connect(await open_wss(None), "localhost", "/ws")
    assert refused.value.status == 401 and json.loads(refused.value.body)["reason"] == "no_cert"
    assert len(server.handshakes) == 1
