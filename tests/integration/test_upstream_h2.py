"""HTTP/2 to upstreams (Tyk ``proxy_enable_http2``) against a real h2-over-TLS server on 127.0.0.1:0:
ALPN decides, one stream at a time on a pooled connection, flow control both ways, refused streams and
GOAWAY retried on a new connection, resets answered 502, HTTP/1.1 kept for upstreams that do not pick h2."""

from __future__ import annotations

import json
import ssl
import uuid
from pathlib import Path
from typing import Any

import pytest
import trio
import trustme
from cryptography import x509

from trio_gw.testing.forward_proxy import start_proxy
from trio_gw.testing.h2_server import H2TestServer
from trio_gw.testing.http_client import Client, raw_exchange

from .conftest import StartGateway, port_of

pytestmark = pytest.mark.filterwarnings("ignore::trio.TrioDeprecationWarning")


@pytest.fixture(scope="module")
def upstream_ca() -> trustme.CA:
    return trustme.CA(organization_name="h2 upstreams")


def _server_tls(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1").configure_cert(ctx)
    return ctx


async def _start(nursery: trio.Nursery, ca: trustme.CA, **options: Any) -> H2TestServer:
    server = H2TestServer(_server_tls(ca), **options)
    await nursery.start(server.serve)
    return server


async def _gateway(start_gateway: StartGateway, server: H2TestServer, ca: trustme.CA, tmp_path: Path,
                   **settings: Any) -> Any:
    ca_file = tmp_path / "h2-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    declarative = {"_format_version": "3.0", "services": [
        {"name": "h2", "url": f"https://127.0.0.1:{server.port}", "routes": [{"name": "h2", "paths": ["/h2"]}]}]}
    return await start_gateway(declarative, proxy_ssl_trusted_certificate=[str(ca_file)], **settings)


async def _request(gw: Any, method: str = "GET", target: str = "/h2/x?y=1", **kwargs: Any) -> tuple[int, bytes, dict[str, str]]:
    client = await Client.connect(port_of(gw))
    try:
        reply = await client.request(method, target, **kwargs)
        return reply.status, reply.body, reply.headers
    finally:
        await client.aclose()


async def test_an_upstream_that_picks_h2_gets_the_request_in_http2_terms(
    nursery: trio.Nursery, start_gateway: StartGateway, upstream_ca: trustme.CA, tmp_path: Path,
) -> None:
    server = await _start(nursery, upstream_ca)
    gw = await _gateway(start_gateway, server, upstream_ca, tmp_path, proxy_enable_http2=True)
    status, body, headers = await _request(gw, headers=[("x-team", "a"), ("te", "trailers")])
    assert status == 200 and headers["x-h2-test"] == "yes"
    (seen,) = server.requests
    assert seen.protocol == "h2" and seen.stream_id == 1
    fields = seen.fields
    assert (fields[":method"], fields[":scheme"], fields[":path"]) == ("GET", "https", "/x?y=1")
    assert fields[":authority"] == f"127.0.0.1:{server.port}" and "host" not in fields
    assert fields["x-team"] == "a" and fields["x-forwarded-for"] == "127.0.0.1"
    assert not {"connection", "keep-alive", "transfer-encoding", "upgrade", "te"} & set(fields)  # hop-by-hop
    assert json.loads(body)["protocol"] == "h2"


async def test_without_proxy_enable_http2_the_same_upstream_is_spoken_to_in_http11(
    nursery: trio.Nursery, start_gateway: StartGateway, upstream_ca: trustme.CA, tmp_path: Path,
) -> None:
    server = await _start(nursery, upstream_ca)
    gw = await _gateway(start_gateway, server, upstream_ca, tmp_path)
    status, body, _ = await _request(gw)
    assert status == 200 and json.loads(body)["protocol"] == "http/1.1"


async def test_an_upstream_that_offers_only_http11_keeps_it(
    nursery: trio.Nursery, start_gateway: StartGateway, upstream_ca: trustme.CA, tmp_path: Path,
) -> None:
    server = await _start(nursery, upstream_ca, alpn=("http/1.1",))
    gw = await _gateway(start_gateway, server, upstream_ca, tmp_path, proxy_enable_http2=True)
    for _ in range(2):
        status, body, _ = await _request(gw)
        assert status == 200 and json.loads(body)["protocol"] == "http/1.1"
    assert server.connections == 1  # pooled as any HTTP/1.1 connection


async def test_one_pooled_connection_carries_one_stream_after_another(
    nursery: trio.Nursery, start_gateway: StartGateway, upstream_ca: trustme.CA, tmp_path: Path,
) -> None:
    server = await _start(nursery, upstream_ca)
    gw = await _gateway(start_gateway, server, upstream_ca, tmp_path, proxy_enable_http2=True)
    for _ in range(3):
        assert (await _request(gw))[0] == 200
    assert server.connections == 1
    assert [r.stream_id for r in server.requests] == [1, 3, 5]


async def test_bodies_larger_than_the_windows_flow_both_ways(
    nursery: trio.Nursery, start_gateway: StartGateway, upstream_ca: trustme.CA, tmp_path: Path,
) -> None:
    big = bytes(range(256)) * 4096 * 2  # 2 MiB: beyond h2's 64 KiB default window and the gateway's own
    server = await _start(nursery, upstream_ca, read_delay=0.001)
    gw = await _gateway(start_gateway, server, upstream_ca, tmp_path, proxy_enable_http2=True)
    status, body, _ = await _request(gw, "POST", "/h2/upload", body=big)
    assert status == 200 and json.loads(body)["body_length"] == len(big)
    status, body, _ = await _request(gw, "POST", "/h2/chunked", chunks=[big[:700_000], big[700_000:]])
    assert status == 200 and json.loads(body)["body_length"] == len(big)
    assert server.requests[0].body == big and server.requests[1].body == big
    assert "content-length" not in server.requests[1].fields  # a chunked body has no length: DATA frames end it
    large = await _start(nursery, upstream_ca, body_size=3 * 1024 * 1024)
    gw2 = await _gateway(start_gateway, large, upstream_ca, tmp_path, proxy_enable_http2=True)
    status, body, headers = await _request(gw2)
    assert status == 200 and len(body) == 3 * 1024 * 1024 and headers["content-length"] == str(len(body))


async def test_a_refused_stream_and_a_goaway_are_retried_on_a_new_connection(
    nursery: trio.Nursery, start_gateway: StartGateway, upstream_ca: trustme.CA, tmp_path: Path,
) -> None:
    server = await _start(nursery, upstream_ca, script=[200, "refuse", 200, "goaway", 200])
    gw = await _gateway(start_gateway, server, upstream_ca, tmp_path, proxy_enable_http2=True)
    assert (await _request(gw))[0] == 200  # connection 1, stream 1
    assert (await _request(gw))[0] == 200  # stream 3 refused on the reused connection: retried on connection 2
    assert (await _request(gw))[0] == 200  # connection 2, stream 3: GOAWAY before it, retried on connection 3
    assert server.connections == 3
    assert [(r.connection, r.stream_id) for r in server.requests] == [(1, 1), (2, 1), (3, 1)]


@pytest.mark.parametrize(("answer", "reason"), [
    ("reset", "upstream_closed"),  # RST_STREAM(INTERNAL_ERROR) before any answer
    ("malformed", "upstream_protocol_error"),  # a connection field, which HTTP/2 forbids
])
async def test_a_failed_stream_is_502_with_its_reason_and_the_connection_is_not_reused(
    nursery: trio.Nursery, start_gateway: StartGateway, upstream_ca: trustme.CA, tmp_path: Path, answer: str,
    reason: str,
) -> None:
    server = await _start(nursery, upstream_ca, script=[answer, 200])
    gw = await _gateway(start_gateway, server, upstream_ca, tmp_path, proxy_enable_http2=True)
    status, body, _ = await _request(gw)
    assert status == 502 and json.loads(body)["reason"] == reason
    assert b"connection" not in body and b"INTERNAL" not in body  # the reason code, never the upstream's detail
    assert (await _request(gw))[0] == 200 and server.connections == 2  # the broken connection was not reused


async def test_a_reset_mid_answer_cuts_the_response_and_is_in_the_error_log(
    nursery: trio.Nursery, start_gateway: StartGateway, upstream_ca: trustme.CA, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The head and 10 of 100 bytes reached the client, then the upstream reset the stream: the
    client's response ends short and its connection closes, as for an HTTP/1.1 upstream closing
    mid-body, and the error log says which reset it was."""
    server = await _start(nursery, upstream_ca, script=["cut", 200])
    gw = await _gateway(start_gateway, server, upstream_ca, tmp_path, proxy_enable_http2=True)
    got = await raw_exchange(port_of(gw), b"GET /h2/x HTTP/1.1\r\nhost: a\r\n\r\n")  # reads until the close
    head, _, body = got.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") and b"content-length: 100" in head.lower() and body == b"0123456789"
    lines = [r.message for r in caplog.records if "upstream request failed" in r.message]
    assert lines == [f"upstream request failed: reason=upstream_closed upstream=127.0.0.1:{server.port} "
                     "error=the upstream reset the stream (INTERNAL_ERROR) before its response was complete; "
                     "the client's response was cut short after its head (status 200) and 10 body bytes"]
    assert (await _request(gw))[0] == 200 and server.connections == 2  # the broken connection was not reused


async def test_a_whole_early_answer_then_a_reset_reaches_the_client_complete(
    nursery: trio.Nursery, start_gateway: StartGateway, upstream_ca: trustme.CA, tmp_path: Path,
) -> None:
    """RFC 9113 §8.1: a server may answer before the request's end, then RST_STREAM(NO_ERROR) to stop the body."""
    server = await _start(nursery, upstream_ca, script=["early", 200])
    gw = await _gateway(start_gateway, server, upstream_ca, tmp_path, proxy_enable_http2=True)
    status, body, _ = await _request(gw, "POST", "/h2/upload", body=b"u" * 50_000)  # fits the socket buffers
    assert (status, body) == (413, b"no")
    assert (await _request(gw))[0] == 200 and server.connections == 2  # that connection was not pooled


async def test_h2_is_chosen_inside_a_connect_tunnel_and_with_a_client_certificate(
    nursery: trio.Nursery, start_gateway: StartGateway, upstream_ca: trustme.CA, tmp_path: Path,
) -> None:
    clients = trustme.CA(organization_name="h2 clients")
    tls = _server_tls(upstream_ca)
    tls.verify_mode = ssl.CERT_REQUIRED
    clients.configure_trust(tls)
    server = H2TestServer(tls)
    await nursery.start(server.serve)
    proxy, proxy_port = await start_proxy(nursery)
    issued = clients.issue_cert("gw.clients.test", common_name="gw-h2")
    cert = {"id": str(uuid.uuid4()), "cert": "".join(b.bytes().decode() for b in issued.cert_chain_pems),
            "key": issued.private_key_pem.bytes().decode()}
    ca_file = tmp_path / "h2-ca.pem"
    upstream_ca.cert_pem.write_to_path(str(ca_file))
    gw = await start_gateway({"_format_version": "3.0", "certificates": [cert], "services": [{
        "name": "h2", "url": f"https://127.0.0.1:{server.port}", "client_certificate": cert["id"],
        "proxy_url": f"http://user:s3cret@127.0.0.1:{proxy_port}", "routes": [{"name": "h2", "paths": ["/h2"]}]}]},
        proxy_ssl_trusted_certificate=[str(ca_file)], proxy_enable_http2=True)
    assert (await _request(gw))[0] == 200
    (seen,) = server.requests
    assert seen.protocol == "h2" and seen.client_certificate is not None
    subject = x509.load_der_x509_certificate(seen.client_certificate).subject.rfc4514_string()
    assert "CN=gw-h2" in subject
    assert proxy.heads == [(f"CONNECT 127.0.0.1:{server.port} HTTP/1.1".encode(), proxy.expected_auth)]
