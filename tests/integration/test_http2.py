"""Downstream HTTP/2 end to end: ALPN h2 on ssl listeners with the ``http2`` flag, real sockets.

The echo upstream speaks HTTP/1.1 and reports what it received, so every test
also checks what the upstream saw of an HTTP/2 request.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import ssl
import subprocess
from pathlib import Path
from typing import Any

import h2.config
import h2.events
import pytest
import trio
import trustme
from h2.errors import ErrorCodes

from trio_gw.net.http2 import MAX_CONCURRENT_STREAMS
from trio_gw.testing import pki
from trio_gw.testing.http_client import Client

from .conftest import StartGateway, Upstream, port_of
from .h2_client import H2Client, H2Request, h2_context

ROOT_ID = "6a0c1e2f-3a4b-4c5d-8e6f-7a8b9c0d1e2f"
H2_LISTEN = "127.0.0.1:0, 127.0.0.1:0 ssl http2"


def service(upstream: Upstream, **route: object) -> dict[str, object]:
    r = {"name": "r", "paths": ["/api"], **route}
    return {"_format_version": "3.0", "services": [{"name": "echo", "url": upstream.url, "routes": [r]}]}


async def h2_gateway(start_gateway: StartGateway, server_pair: tuple[Path, Path], declarative: dict[str, Any],
                     **settings: Any) -> Any:
    cert, key = server_pair
    settings.setdefault("proxy_listen", H2_LISTEN)
    return await start_gateway(declarative, ssl_cert=str(cert), ssl_cert_key=str(key), **settings)


async def connect(gw: Any, ca: trustme.CA, ctx: ssl.SSLContext | None = None) -> H2Client:
    return await H2Client.connect(port_of(gw, ssl=True), ctx or h2_context(ca))


async def test_get_over_h2_is_proxied_over_http11(
    start_gateway: StartGateway, upstream: Upstream, ca: trustme.CA, server_pair: tuple[Path, Path]
) -> None:
    gw = await h2_gateway(start_gateway, server_pair, service(upstream))
    client = await connect(gw, ca)
    reply = await client.request("GET", "/api/anything/x?a=1", headers=[("x-custom", "yes"), ("cookie", "a=1"),
                                                                        ("cookie", "b=2")])
    assert reply.status == 200
    assert reply.header("content-type") == "application/json"
    assert reply.header("via") == "1.1 trio-gw"
    assert all(name == name.lower() for name, _ in reply.headers)
    assert reply.header("connection") is None and reply.header("keep-alive") is None
    seen = reply.json()
    port = port_of(gw, ssl=True)
    assert (seen["method"], seen["path"], seen["query"], seen["http_version"]) == ("GET", "/anything/x", "a=1", "1.1")
    headers = seen["headers"]
    assert headers["host"] == f"127.0.0.1:{upstream.port}"
    assert headers["x-forwarded-proto"] == "https"
    assert headers["x-forwarded-host"] == "localhost"
    assert headers["x-forwarded-port"] == str(port)
    assert headers["x-custom"] == "yes"
    assert headers["cookie"] == "a=1; b=2"  # split cookie fields are joined (RFC 9113 §8.2.3)
    assert not any(name.startswith(":") for name in headers)
    await client.aclose()


async def test_preserve_host_uses_the_authority(
    start_gateway: StartGateway, upstream: Upstream, ca: trustme.CA, server_pair: tuple[Path, Path]
) -> None:
    gw = await h2_gateway(start_gateway, server_pair, service(upstream, preserve_host=True, strip_path=False))
    client = await connect(gw, ca)
    reply = await client.request("GET", "/api/v1", authority="api.example.test:8443")
    assert reply.json()["headers"]["host"] == "api.example.test:8443"
    assert reply.json()["path"] == "/api/v1"


async def test_concurrent_streams_on_one_connection(
    start_gateway: StartGateway, upstream: Upstream, ca: trustme.CA, server_pair: tuple[Path, Path]
) -> None:
    gw = await h2_gateway(start_gateway, server_pair, service(upstream))
    client = await connect(gw, ca)
    before = len(upstream.server.requests)
    replies = await client.exchange(*(H2Request("GET", f"/api/delay/400?n={i}") for i in range(12)))
    assert [r.status for r in replies] == [200] * 12
    assert sorted(r.json()["query"] for r in replies) == sorted(f"n={i}" for i in range(12))
    assert len(upstream.server.requests) - before == 12
    # concurrently, not one after the other: the upstream had several of them in hand at once
    assert upstream.server.max_in_flight >= 2
    assert client.conn.remote_settings.max_concurrent_streams == MAX_CONCURRENT_STREAMS


async def test_large_upload_and_download_respect_flow_control(
    start_gateway: StartGateway, upstream: Upstream, ca: trustme.CA, server_pair: tuple[Path, Path]
) -> None:
    gw = await h2_gateway(start_gateway, server_pair, service(upstream))
    client = await connect(gw, ca)
    body = bytes(range(256)) * (5 * 4096)  # 5 MiB: many times every window
    echo, described, download = await client.exchange(
        H2Request("POST", "/api/echo", headers=[("content-type", "application/x-test")], body=body),
        H2Request("PUT", "/api/anything", body=body[: 3 * 1024 * 1024]),  # no content-length: chunked upstream
        H2Request("GET", "/api/bytes/4000000"),
    )
    assert echo.status == 200 and echo.header("content-type") == "application/x-test"
    assert hashlib.sha256(echo.body).digest() == hashlib.sha256(body).digest()
    seen = described.json()
    assert seen["body_length"] == 3 * 1024 * 1024
    assert seen["body_sha256"] == hashlib.sha256(body[: 3 * 1024 * 1024]).hexdigest()
    assert seen["headers"]["transfer-encoding"] == "chunked"
    assert download.status == 200 and bytes(download.body) == b"x" * 4_000_000
    # with a content-length, the upstream gets it instead of chunks
    reply = await client.request("POST", "/api/anything", body=b"abc", headers=[("content-length", "3")])
    assert reply.json()["headers"]["content-length"] == "3"
    assert "transfer-encoding" not in reply.json()["headers"]


async def test_expect_100_continue(
    start_gateway: StartGateway, upstream: Upstream, ca: trustme.CA, server_pair: tuple[Path, Path]
) -> None:
    gw = await h2_gateway(start_gateway, server_pair, service(upstream))
    client = await connect(gw, ca)
    sid = client.start(H2Request("PUT", "/api/anything", headers=[("expect", "100-continue")]), end_stream=False)
    await client.flush()
    informational = await client.wait_for(h2.events.InformationalResponseReceived)
    assert isinstance(informational, h2.events.InformationalResponseReceived)
    assert dict(informational.headers)[b":status"] == b"100"
    client.conn.send_data(sid, b"x" * 10, end_stream=True)
    await client.flush()
    await client.wait_for(h2.events.StreamEnded)
    body = b"".join(e.data for e in client.events if isinstance(e, h2.events.DataReceived))
    seen = json.loads(body)
    assert seen["body_length"] == 10
    assert "expect" not in seen["headers"]


async def test_no_route_is_404_json_and_the_connection_stays_usable(
    start_gateway: StartGateway, upstream: Upstream, ca: trustme.CA, server_pair: tuple[Path, Path]
) -> None:
    gw = await h2_gateway(start_gateway, server_pair, service(upstream))
    client = await connect(gw, ca)
    reply = await client.request("GET", "/elsewhere")
    assert reply.status == 404
    assert reply.header("content-type") == "application/json; charset=utf-8"
    assert reply.json() == {"message": "no Route matched with those values", "reason": "no_route"}
    assert reply.header("content-length") == str(len(reply.body))
    head = await client.request("HEAD", "/elsewhere")
    assert (head.status, bytes(head.body)) == (404, b"")
    # an answer before the request body ended: the rest of the body is declined with NO_ERROR
    posted = await client.request("POST", "/elsewhere", body=b"y" * 200_000)
    assert posted.status == 404
    assert (await client.request("GET", "/api/anything")).status == 200


async def test_upstream_errors_use_the_same_reason_codes(
    start_gateway: StartGateway, upstream: Upstream, ca: trustme.CA, server_pair: tuple[Path, Path], dead_port: int,
) -> None:
    conf = {"_format_version": "3.0", "services": [
        {"name": "dead", "url": f"http://127.0.0.1:{dead_port}", "routes": [{"paths": ["/dead"]}]},
        {"name": "slow", "url": upstream.url, "read_timeout": 200, "routes": [{"paths": ["/slow"]}]}]}
    gw = await h2_gateway(start_gateway, server_pair, conf)
    client = await connect(gw, ca)
    dead, slow = await client.exchange(H2Request("GET", "/dead"), H2Request("GET", "/slow/delay/2000"))
    assert (dead.status, dead.json()["reason"]) == (502, "upstream_connect_failed")
    assert slow.status == 504
    assert slow.json() == {"message": "The upstream server is timing out", "reason": "upstream_read_timeout"}


async def test_guards_answer_on_the_stream(
    start_gateway: StartGateway, upstream: Upstream, ca: trustme.CA, server_pair: tuple[Path, Path]
) -> None:
    gw = await h2_gateway(start_gateway, server_pair, service(upstream), max_headers=5, max_header_size=2048)
    client = await connect(gw, ca)
    many, big, fine = await client.exchange(
        H2Request("GET", "/api/x", headers=[(f"x-h{i}", "v") for i in range(6)]),
        H2Request("GET", "/api/x", headers=[("x-big", "v" * 3000)]),
        H2Request("GET", "/api/anything"),
    )
    assert (many.status, many.json()["reason"]) == (431, "too_many_headers")
    assert (big.status, big.json()["reason"]) == (431, "header_too_large")
    assert fine.status == 200
    bad_host = await client.request("GET", "/api/x", authority="bad host")
    assert (bad_host.status, bad_host.json()["reason"]) == (400, "invalid_host")
    before = len(upstream.server.requests)
    trace = await client.request("TRACE", "/api/x")  # refused as on HTTP/1.1, on its stream only
    assert (trace.status, trace.json()["reason"]) == (405, "trace_not_allowed")
    assert (await client.request("OPTIONS", "/api/x")).status == 200
    assert [r["method"] for r in upstream.server.requests[before:]] == ["OPTIONS"]


async def test_client_max_body_size_on_a_stream(
    start_gateway: StartGateway, upstream: Upstream, ca: trustme.CA, server_pair: tuple[Path, Path]
) -> None:
    """A content-length beyond client_max_body_size is 413 with the head; DATA without one, as soon as it
    passes the limit; each on its own stream, and the connection serves the next request."""
    gw = await h2_gateway(start_gateway, server_pair, service(upstream), client_max_body_size=1000)
    client = await connect(gw, ca)
    declared, undeclared, within = await client.exchange(
        H2Request("POST", "/api/anything", headers=[("content-length", "1001")], body=b"x" * 1001),
        H2Request("POST", "/api/anything", body=b"y" * 3000),
        H2Request("POST", "/api/anything", body=b"z" * 1000),
    )
    assert (declared.status, declared.json()["reason"]) == (413, "body_too_large")
    assert (undeclared.status, undeclared.json()["reason"]) == (413, "body_too_large")
    assert within.status == 200 and within.json()["body_length"] == 1000
    assert (await client.request("GET", "/api/anything")).status == 200
    await client.aclose()


async def test_identity_headers_from_the_client_are_stripped(
    start_gateway: StartGateway, upstream: Upstream, ca: trustme.CA, server_pair: tuple[Path, Path]
) -> None:
    gw = await h2_gateway(start_gateway, server_pair, service(upstream))
    client = await connect(gw, ca)
    reply = await client.request("GET", "/api/anything", headers=[
        ("x-consumer-username", "mallory"), ("client-cert", ":AAAA:"), ("x-forwarded-for", "10.9.9.9")])
    seen = reply.json()["headers"]
    assert "x-consumer-username" not in seen and "client-cert" not in seen
    assert seen["x-forwarded-for"] == "127.0.0.1"


def mtls_declarative(upstream: Upstream, root: pki.Issued) -> dict[str, Any]:
    return {
        "_format_version": "3.0",
        "ca_certificates": [{"id": ROOT_ID, "cert": root.cert_pem()}],
        "consumers": [{"username": "alice.example"}],
        "services": [{"name": "echo", "url": upstream.url, "routes": [
            {"name": "m", "paths": ["/"], "plugins": [{"name": "mtls-auth", "config": {"ca_certificates": [ROOT_ID]}}]}]}],
    }


def client_cert_context(ca: trustme.CA, tmp_path: Path, leaf: pki.Issued | None) -> ssl.SSLContext:
    ctx = h2_context(ca)
    if leaf is not None:
        cert, key = tmp_path / "client.pem", tmp_path / "client.key"
        cert.write_text(leaf.chain_pem())
        key.write_text(leaf.key_pem())
        ctx.load_cert_chain(str(cert), str(key))
    return ctx


async def test_mtls_auth_over_h2(
    start_gateway: StartGateway, upstream: Upstream, ca: trustme.CA, server_pair: tuple[Path, Path], tmp_path: Path
) -> None:
    """The plugins see the connection's client certificate, and the 421 SNI/Host rule holds per stream."""
    root = pki.make_ca()
    gw = await h2_gateway(start_gateway, server_pair, mtls_declarative(upstream, root))
    alice = pki.issue(root, "alice.example", common_name="Alice")
    client = await connect(gw, ca, client_cert_context(ca, tmp_path, alice))
    who, misdirected = await client.exchange(H2Request("GET", "/who"),
                                             H2Request("GET", "/who", authority="default.test"))
    assert who.status == 200, who.body
    assert who.json()["headers"]["x-consumer-username"] == "alice.example"
    assert (misdirected.status, misdirected.json()["reason"]) == (421, "sni_host_mismatch")
    anonymous = await connect(gw, ca, client_cert_context(ca, tmp_path, None))
    refused = await anonymous.request("GET", "/who")
    assert (refused.status, refused.json()["reason"]) == (401, "no_cert")


async def test_sni_certificate_contexts_carry_each_listeners_alpn(
    start_gateway: StartGateway, upstream: Upstream, ca: trustme.CA, server_pair: tuple[Path, Path]
) -> None:
    """The SNI callback swaps contexts and the ALPN list comes from the swapped one
    (docs/tls-stack.md §1): a listener with the flag offers h2 for every certificate,
    one without it never does, for the same certificate."""
    leaf = ca.issue_cert("api.example.test", common_name="api.example.test")
    pair = {"cert": "".join(b.bytes().decode() for b in leaf.cert_chain_pems),
            "key": leaf.private_key_pem.bytes().decode(), "snis": ["api.example.test"]}
    declarative = {**service(upstream), "certificates": [pair]}
    gw = await h2_gateway(start_gateway, server_pair, declarative, proxy_listen="127.0.0.1:0 ssl, 127.0.0.1:0 ssl http2")
    plain_tls, h2_tls = (li.port for li in gw.listeners["proxy"])
    for port, expected in ((plain_tls, "http/1.1"), (h2_tls, "h2")):
        for name in ("api.example.test", "localhost", None):
            sock = await trio.open_tcp_stream("127.0.0.1", port)
            ctx = h2_context(ca, alpn=["h2", "http/1.1"])
            ctx.check_hostname = False
            stream = trio.SSLStream(sock, ctx, server_hostname=name)
            await stream.do_handshake()
            assert stream.selected_alpn_protocol() == expected, (port, name)
            await trio.aclose_forcefully(stream)
    client = await H2Client.connect(h2_tls, h2_context(ca), server_hostname="api.example.test")
    reply = await client.request("GET", "/api/anything", authority="api.example.test")
    assert reply.status == 200


async def test_without_the_flag_only_http11_is_offered(
    start_gateway: StartGateway, upstream: Upstream, ca: trustme.CA, server_pair: tuple[Path, Path]
) -> None:
    gw = await h2_gateway(start_gateway, server_pair, service(upstream), proxy_listen="127.0.0.1:0 ssl")
    port = port_of(gw, ssl=True)
    for offer, chosen in ((["h2", "http/1.1"], "http/1.1"), (["h2"], None)):
        sock = await trio.open_tcp_stream("127.0.0.1", port)
        stream = trio.SSLStream(sock, h2_context(ca, alpn=offer), server_hostname="localhost")
        await stream.do_handshake()
        assert stream.selected_alpn_protocol() == chosen
        await trio.aclose_forcefully(stream)
    ctx = h2_context(ca, alpn=["h2", "http/1.1"])
    reply = await (await Client.connect(port, tls=ctx, server_hostname="localhost")).request("GET", "/api/anything")
    assert reply.status == 200


async def test_http11_clients_still_served_on_an_http2_listener(
    start_gateway: StartGateway, upstream: Upstream, ca: trustme.CA, server_pair: tuple[Path, Path]
) -> None:
    gw = await h2_gateway(start_gateway, server_pair, service(upstream))
    ctx = h2_context(ca, alpn=["http/1.1"])
    client = await Client.connect(port_of(gw, ssl=True), tls=ctx, server_hostname="localhost")
    assert (await client.request("GET", "/api/anything")).status == 200
    no_alpn = ssl.create_default_context()
    ca.configure_trust(no_alpn)
    client = await Client.connect(port_of(gw, ssl=True), tls=no_alpn, server_hostname="localhost")
    assert (await client.request("GET", "/api/anything")).status == 200


async def test_enable_http2_offers_h2_on_every_ssl_listener(
    start_gateway: StartGateway, upstream: Upstream, ca: trustme.CA, server_pair: tuple[Path, Path]
) -> None:
    gw = await h2_gateway(start_gateway, server_pair, service(upstream), proxy_listen="127.0.0.1:0 ssl",
                          enable_http2="on")
    client = await connect(gw, ca)
    assert (await client.request("GET", "/api/anything")).status == 200


async def test_http2_flag_on_a_plain_listener_warns_and_serves_http11(
    start_gateway: StartGateway, upstream: Upstream, server_pair: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    gw = await h2_gateway(start_gateway, server_pair, service(upstream), proxy_listen="127.0.0.1:0 http2")
    assert any("proxy_listen 127.0.0.1:0 http2: `http2` needs `ssl`" in r.getMessage() for r in caplog.records)
    reply = await (await Client.connect(port_of(gw))).request("GET", "/api/anything")
    assert reply.status == 200


async def test_client_reset_cancels_the_upstream_exchange(
    start_gateway: StartGateway, upstream: Upstream, ca: trustme.CA, server_pair: tuple[Path, Path], tmp_path: Path,
) -> None:
    log = tmp_path / "access.json"
    gw = await h2_gateway(start_gateway, server_pair, service(upstream), proxy_access_log=str(log),
                          access_log_format="json")
    client = await connect(gw, ca)
    sid = client.start(H2Request("GET", "/api/delay/5000"))
    await client.flush()
    with trio.fail_after(5):
        while gw.proxy.in_flight == 0:
            await trio.sleep(0.01)
    client.conn.reset_stream(sid, ErrorCodes.CANCEL)
    await client.flush()
    with trio.fail_after(2):
        while gw.proxy.in_flight:
            await trio.sleep(0.01)
    assert (await client.request("GET", "/api/anything")).status == 200
    with trio.fail_after(10):
        while len(log.read_text().splitlines()) < 2:
            await trio.sleep(0.02)
    records = [json.loads(line) for line in log.read_text().splitlines()]
    # nginx's 499 "client closed request" for the reset one, as the metrics count it
    assert [(r["path"], r["status"], r["reason"]) for r in records] == [
        ("/api/delay/5000", 499, "client_closed"), ("/api/anything", 200, None)]


async def test_protocol_errors_close_with_goaway(
    start_gateway: StartGateway, upstream: Upstream, ca: trustme.CA, server_pair: tuple[Path, Path]
) -> None:
    gw = await h2_gateway(start_gateway, server_pair, service(upstream))
    # A connection-specific field is malformed in HTTP/2 (RFC 9113 §8.2.2).
    lax = h2.config.H2Configuration(client_side=True, header_encoding=None, validate_outbound_headers=False,
                                    normalize_outbound_headers=False)
    client = await H2Client.connect(port_of(gw, ssl=True), h2_context(ca), config=lax)
    client.conn.send_headers(1, [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", b"localhost"),
                                 (b":path", b"/api/anything"), (b"connection", b"keep-alive")], end_stream=True)
    await client.flush()
    goaway = await client.wait_for(h2.events.ConnectionTerminated)
    assert isinstance(goaway, h2.events.ConnectionTerminated)
    assert goaway.error_code == ErrorCodes.PROTOCOL_ERROR
    with trio.fail_after(5):
        while not client.closed:
            await client.receive()
    # Garbage after the preface: a DATA frame on stream 0.
    client = await connect(gw, ca)
    await client.stream.send_all(b"\x00\x00\x01\x00\x00\x00\x00\x00\x00x")
    goaway = await client.wait_for(h2.events.ConnectionTerminated)
    assert isinstance(goaway, h2.events.ConnectionTerminated)
    assert goaway.error_code == ErrorCodes.PROTOCOL_ERROR
    # the gateway is fine
    client = await connect(gw, ca)
    assert (await client.request("GET", "/api/anything")).status == 200


async def test_idle_connection_gets_goaway(
    start_gateway: StartGateway, upstream: Upstream, ca: trustme.CA, server_pair: tuple[Path, Path]
) -> None:
    gw = await h2_gateway(start_gateway, server_pair, service(upstream), keepalive_timeout="300ms")
    client = await connect(gw, ca)
    assert (await client.request("GET", "/api/anything")).status == 200
    started = trio.current_time()
    goaway = await client.wait_for(h2.events.ConnectionTerminated)
    assert isinstance(goaway, h2.events.ConnectionTerminated)
    assert (goaway.error_code, goaway.last_stream_id) == (ErrorCodes.NO_ERROR, 1)
    assert 0.2 < trio.current_time() - started < 3


async def test_keepalive_requests_limit_and_draining_send_goaway_after_open_streams(
    start_gateway: StartGateway, upstream: Upstream, ca: trustme.CA, server_pair: tuple[Path, Path]
) -> None:
    gw = await h2_gateway(start_gateway, server_pair, service(upstream), keepalive_requests=2)
    client = await connect(gw, ca)
    first, second = await client.exchange(H2Request("GET", "/api/delay/300"), H2Request("GET", "/api/anything"))
    assert (first.status, second.status) == (200, 200)
    goaway = await client.wait_for(h2.events.ConnectionTerminated)
    assert isinstance(goaway, h2.events.ConnectionTerminated)
    assert (goaway.error_code, goaway.last_stream_id) == (ErrorCodes.NO_ERROR, 3)
    # graceful shutdown: the open stream completes, a stream opened meanwhile is refused
    # (safe to retry), then GOAWAY names the last stream served
    gw2 = await h2_gateway(start_gateway, server_pair, service(upstream))
    client = await connect(gw2, ca)
    sid = client.start(H2Request("GET", "/api/delay/500"))
    await client.flush()
    with trio.fail_after(5):
        while gw2.proxy.in_flight == 0:
            await trio.sleep(0.01)
    gw2.proxy.start_draining()
    late = client.start(H2Request("GET", "/api/anything"))
    await client.flush()
    goaway = await client.wait_for(h2.events.ConnectionTerminated)
    assert isinstance(goaway, h2.events.ConnectionTerminated)
    assert (goaway.error_code, goaway.last_stream_id) == (ErrorCodes.NO_ERROR, sid)
    resets = {e.stream_id: e.error_code for e in client.events if isinstance(e, h2.events.StreamReset)}
    assert resets == {late: ErrorCodes.REFUSED_STREAM}
    responses = [e for e in client.events if isinstance(e, h2.events.ResponseReceived)]
    assert [(e.stream_id, dict(e.headers)[b":status"]) for e in responses] == [(sid, b"200")]
    assert any(isinstance(e, h2.events.StreamEnded) and e.stream_id == sid for e in client.events)


async def test_access_log_records_http2(
    start_gateway: StartGateway, upstream: Upstream, ca: trustme.CA, server_pair: tuple[Path, Path], tmp_path: Path
) -> None:
    log_path = tmp_path / "access.log"
    gw = await h2_gateway(start_gateway, server_pair, service(upstream), proxy_access_log=str(log_path),
                          access_log_format="json")
    client = await connect(gw, ca)
    await client.exchange(H2Request("GET", "/api/anything"), H2Request("GET", "/nowhere"))
    with trio.fail_after(2):  # a line is written once the stream task ends, just after the answer
        while len(log_path.read_text().splitlines()) < 2:
            await trio.sleep(0.01)
    lines = [json.loads(line) for line in log_path.read_text().splitlines()]
    assert sorted((line["path"], line["protocol"], line["status"]) for line in lines) == [
        ("/api/anything", "HTTP/2", 200), ("/nowhere", "HTTP/2", 404)]
    assert {line["reason"] for line in lines} == {None, "no_route"}


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
async def test_curl_http2(
    start_gateway: StartGateway, upstream: Upstream, ca_pem: Path, server_pair: tuple[Path, Path], tmp_path: Path
) -> None:
    if "HTTP2" not in subprocess.run(["curl", "-V"], capture_output=True, text=True).stdout:
        pytest.skip("this curl has no HTTP/2")
    gw = await h2_gateway(start_gateway, server_pair, service(upstream))
    port = port_of(gw, ssl=True)
    upload = tmp_path / "upload.bin"
    upload.write_bytes(bytes(range(256)) * 8192)  # 2 MiB
    result = await trio.run_process(
        ["curl", "-sS", "-v", "--http2", "--cacert", str(ca_pem), "--data-binary", f"@{upload}",
         "-H", "content-type: application/octet-stream", f"https://localhost:{port}/api/anything"],
        capture_stdout=True, capture_stderr=True, check=False)
    stderr = result.stderr.decode()
    assert result.returncode == 0, stderr
    assert "ALPN: server accepted h2" in stderr or "ALPN, server accepted to use h2" in stderr
    assert "< HTTP/2 200" in stderr
    seen = json.loads(result.stdout)
    assert seen["body_sha256"] == hashlib.sha256(upload.read_bytes()).hexdigest()
    assert seen["http_version"] == "1.1"


async def test_a_stalled_body_is_answered_408_on_its_stream(
    start_gateway: StartGateway, upstream: Upstream, ca: trustme.CA, server_pair: tuple[Path, Path]
) -> None:
    """As on HTTP/1.1 (and nginx): a body that stops for client_body_timeout gets 408, on its own stream."""
    gw = await h2_gateway(start_gateway, server_pair, service(upstream), client_body_timeout="300ms")
    client = await connect(gw, ca)
    sid = client.start(H2Request("POST", "/api/anything", headers=[("content-length", "100")]), end_stream=False)
    client.conn.send_data(sid, b"x" * 10)
    await client.flush()
    response = await client.wait_for(h2.events.ResponseReceived)
    assert isinstance(response, h2.events.ResponseReceived) and response.stream_id == sid
    assert dict(response.headers)[b":status"] == b"408"
    await client.wait_for(h2.events.StreamEnded)
    body = b"".join(e.data for e in client.events if isinstance(e, h2.events.DataReceived))
    assert json.loads(body)["reason"] == "client_body_timeout"
    assert (await client.request("GET", "/api/anything")).status == 200  # the connection stays usable
