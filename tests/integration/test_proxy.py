"""The proxy end to end: real sockets on 127.0.0.1, an echo upstream, an in-process gateway."""

from __future__ import annotations

import hashlib
import json
import shutil
import ssl
from pathlib import Path

import pytest
import trio
import yaml

from trio_gw.testing.http_client import Client, raw_exchange

from .conftest import StartGateway, Upstream, port_of


def service(upstream: Upstream, **route: object) -> dict[str, object]:
    r = {"name": "r", "paths": ["/api"], **route}
    return {"_format_version": "3.0", "services": [{"name": "echo", "url": upstream.url, "routes": [r]}]}


async def test_routes_and_strips_path(start_gateway: StartGateway, upstream: Upstream) -> None:
    gw = await start_gateway(service(upstream))
    client = await Client.connect(port_of(gw))
    reply = await client.request("GET", "/api/anything/x?a=1", host="example.test")
    assert reply.status == 200
    seen = reply.json()
    assert seen["path"] == "/anything/x"
    assert seen["query"] == "a=1"
    assert seen["headers"]["host"] == "127.0.0.1:" + str(upstream.port)
    assert seen["headers"]["x-forwarded-for"] == "127.0.0.1"
    assert seen["headers"]["x-forwarded-proto"] == "http"
    assert seen["headers"]["x-forwarded-host"] == "example.test"
    assert seen["headers"]["x-forwarded-prefix"] == "/api"


async def test_preserve_host_and_no_strip(start_gateway: StartGateway, upstream: Upstream) -> None:
    gw = await start_gateway(service(upstream, strip_path=False, preserve_host=True))
    client = await Client.connect(port_of(gw))
    seen = (await client.request("GET", "/api/v1", host="api.example.test")).json()
    assert seen["path"] == "/api/v1"
    assert seen["headers"]["host"] == "api.example.test"


async def test_no_route_is_404_json(start_gateway: StartGateway, upstream: Upstream) -> None:
    gw = await start_gateway(service(upstream))
    client = await Client.connect(port_of(gw))
    reply = await client.request("GET", "/elsewhere")
    assert reply.status == 404
    assert reply.headers["content-type"].startswith("application/json")
    assert reply.json()["message"] == "no Route matched with those values"
    # the connection stays usable after an error answer
    assert (await client.request("GET", "/api/anything")).status == 200


async def test_upstream_refused_is_502(start_gateway: StartGateway, dead_port: int) -> None:
    conf = {"_format_version": "3.0", "services": [
        {"name": "dead", "url": f"http://127.0.0.1:{dead_port}", "routes": [{"paths": ["/"]}]}]}
    gw = await start_gateway(conf)
    reply = await (await Client.connect(port_of(gw))).request("GET", "/")
    assert reply.status == 502
    assert reply.json()["reason"] == "upstream_connect_failed"


async def test_a_failed_upstream_connection_is_in_the_error_log_once_per_interval(
    start_gateway: StartGateway, caplog: pytest.LogCaptureFixture, dead_port: int,
) -> None:
    # nginx logs "connect() failed (111: Connection refused) while connecting to upstream"; a down
    # upstream under load must still be one line per interval, with the count of the others.
    conf = {"_format_version": "3.0", "services": [
        {"name": "dead", "url": f"http://127.0.0.1:{dead_port}", "routes": [{"paths": ["/"]}]}]}
    gw = await start_gateway(conf)
    client = await Client.connect(port_of(gw))
    for _ in range(5):
        assert (await client.request("GET", "/")).status == 502
    lines = [r for r in caplog.records if r.name == "trio_gw.proxy" and "upstream connection failed" in r.message]
    assert len(lines) == 1, [r.message for r in lines]
    assert lines[0].levelname == "WARNING"  # ERROR is kept for the gateway's own faults
    assert f"reason=upstream_connect_failed upstream=127.0.0.1:{dead_port}" in lines[0].message
    assert "Connection refused" in lines[0].message
    # after the interval, the next failure is logged with how many were held back
    proxy = gw.proxy
    proxy.upstream_failures.interval = 0.01
    await trio.sleep(0.02)
    assert (await client.request("GET", "/")).status == 502
    lines = [r for r in caplog.records if r.name == "trio_gw.proxy" and "upstream connection failed" in r.message]
    assert len(lines) == 2 and "(4 more in the last" in lines[1].message
    # A full limiter forgets its quiet upstreams before a new one would share the overflow key (and its
    # one line per interval) with the others: with room for two, the dead port's key has gone quiet, so
    # three new upstreams failing at once are each logged.
    proxy.upstream_failures.max_keys = 2
    await trio.sleep(0.02)
    for peer in ("a.example:80", "b.example:80", "c.example:80"):
        proxy._log_upstream_failure("connection", peer, "upstream_connect_failed", "refused")
    messages = [r.message for r in caplog.records if "upstream connection failed" in r.message][2:]
    assert [m.split()[4] for m in messages] == ["upstream=a.example:80", "upstream=b.example:80",
                                                "upstream=c.example:80"]


async def test_upstream_timeout_is_504(
    start_gateway: StartGateway, upstream: Upstream, caplog: pytest.LogCaptureFixture,
) -> None:
    conf = {"_format_version": "3.0", "services": [
        {"name": "slow", "url": upstream.url, "read_timeout": 200, "routes": [{"paths": ["/"]}]}]}
    gw = await start_gateway(conf)
    reply = await (await Client.connect(port_of(gw))).request("GET", "/delay/2000")
    assert reply.status == 504
    assert reply.json() == {"message": "The upstream server is timing out", "reason": "upstream_read_timeout"}
    # the error log says which deadline passed (nginx: "upstream timed out ... while reading response header")
    lines = [r.message for r in caplog.records if "upstream request failed" in r.message]
    assert lines == [f"upstream request failed: reason=upstream_read_timeout upstream=127.0.0.1:{upstream.port} "
                     "error=nothing received from the upstream for read_timeout (0.2 s)"]


async def test_large_bodies_stream_both_ways(start_gateway: StartGateway, upstream: Upstream) -> None:
    gw = await start_gateway(service(upstream))
    client = await Client.connect(port_of(gw))
    body = bytes(range(256)) * (6 * 4096)  # 6 MiB
    reply = await client.request("POST", "/api/echo", body=body, headers=[("content-type", "application/x-test")])
    assert reply.status == 200
    assert len(reply.body) == len(body)
    assert hashlib.sha256(reply.body).digest() == hashlib.sha256(body).digest()
    reply = await client.request("GET", "/api/bytes/5000000")
    assert len(reply.body) == 5_000_000


async def test_chunked_upload(start_gateway: StartGateway, upstream: Upstream) -> None:
    gw = await start_gateway(service(upstream))
    client = await Client.connect(port_of(gw))
    chunks = [b"a" * 1000, b"b" * 70000, b"c"]
    seen = (await client.request("POST", "/api/anything", chunks=chunks)).json()
    assert seen["body_length"] == 71001
    assert seen["body_sha256"] == hashlib.sha256(b"".join(chunks)).hexdigest()
    assert seen["headers"].get("transfer-encoding") == "chunked"


async def test_expect_100_continue(start_gateway: StartGateway, upstream: Upstream) -> None:
    gw = await start_gateway(service(upstream))
    client = await Client.connect(port_of(gw))
    reply = await client.request("PUT", "/api/anything", body=b"x" * 10, headers=[("expect", "100-continue")])
    assert reply.informational == [100]
    assert reply.json()["body_length"] == 10
    assert "expect" not in reply.json()["headers"]


async def test_http10_client(start_gateway: StartGateway, upstream: Upstream) -> None:
    gw = await start_gateway(service(upstream))
    out = await raw_exchange(port_of(gw), b"GET /api/bytes/10 HTTP/1.0\r\nHost: x\r\n\r\n")
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert body == b"x" * 10


async def test_keepalive_both_sides(start_gateway: StartGateway, upstream: Upstream) -> None:
    gw = await start_gateway(service(upstream))
    client = await Client.connect(port_of(gw))
    for _ in range(5):
        assert (await client.request("GET", "/api/anything")).status == 200
    assert upstream.server.connections == 1  # one pooled upstream connection served all five
    with trio.fail_after(2):  # the gateway returns it to the pool just after the client got the reply
        while gw.pool.idle_count() != 1:
            await trio.sleep(0.01)


async def test_smuggling_cl_te_rejected_and_closed(start_gateway: StartGateway, upstream: Upstream) -> None:
    gw = await start_gateway(service(upstream))
    attack = (b"POST /api/anything HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
              b"0\r\n\r\nGET /api/anything HTTP/1.1\r\nHost: x\r\n\r\n")
    out = await raw_exchange(port_of(gw), attack)
    assert out.startswith(b"HTTP/1.1 400")
    assert out.count(b"HTTP/1.1") == 1  # the smuggled request was never answered
    assert upstream.server.requests == []


async def test_absolute_form_is_served_by_its_authority(start_gateway: StartGateway, upstream: Upstream) -> None:
    """RFC 9112 §3.2.2: a server MUST accept absolute-form, and its authority replaces Host
    (nginx routes and sets $host by it): the route on api.example is taken although the Host
    header names another, and the upstream gets origin-form with the same host."""
    routes = [{"name": "api", "hosts": ["api.example"], "paths": ["/"], "preserve_host": True, "strip_path": False},
              {"name": "other", "hosts": ["other.example"], "paths": ["/"]}]
    gw = await start_gateway({"_format_version": "3.0",
                              "services": [{"name": "echo", "url": upstream.url, "routes": routes}]})
    out = await raw_exchange(port_of(gw), b"GET http://API.example:8080/v1/x?q=1 HTTP/1.1\r\n"
                                          b"Host: other.example\r\nConnection: close\r\n\r\n")
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    seen = json.loads(body)
    assert (seen["path"], seen["query"]) == ("/v1/x", "q=1")
    assert seen["headers"]["host"] == "API.example:8080"
    assert [r["path"] for r in upstream.server.requests] == ["/v1/x"]
    # an HTTP/1.0 absolute-form request needs no Host at all
    out = await raw_exchange(port_of(gw), b"GET http://api.example/y HTTP/1.0\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 200") and json.loads(out.partition(b"\r\n\r\n")[2])["path"] == "/y"


@pytest.mark.parametrize(("line", "status", "reason"), [
    (b"GET ftp://api.example/x HTTP/1.1", 400, "invalid_target"),
    (b"GET http://user@api.example/x HTTP/1.1", 400, "invalid_target"),
    (b"TRACE /x HTTP/1.1", 405, "trace_not_allowed"),
    (b"TRACE http://api.example/x HTTP/1.1", 405, "trace_not_allowed"),
])
async def test_refused_targets_and_trace_never_reach_the_upstream(
    start_gateway: StartGateway, upstream: Upstream, line: bytes, status: int, reason: str,
) -> None:
    gw = await start_gateway(service(upstream, paths=["/"]))
    out = await raw_exchange(port_of(gw), line + b"\r\nHost: api.example\r\nCookie: session=secret\r\n\r\n")
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 %d " % status)
    assert json.loads(body)["reason"] == reason
    assert b"secret" not in out
    assert upstream.server.requests == []


async def test_client_max_body_size_refuses_a_larger_body_before_it_goes_upstream(
    start_gateway: StartGateway, upstream: Upstream,
) -> None:
    """nginx's client_max_body_size (Kong: nginx_http_client_max_body_size): a Content-Length beyond it
    is 413 before a byte is read (no 100 Continue either); chunks are refused at the size line that
    crosses it; a body within it goes through."""
    gw = await start_gateway(service(upstream), client_max_body_size="1k")
    within = await (await Client.connect(port_of(gw))).request("POST", "/api/anything", body=b"x" * 1024)
    assert within.status == 200 and within.json()["body_length"] == 1024
    out = await raw_exchange(port_of(gw), b"POST /api/anything HTTP/1.1\r\nHost: a\r\nContent-Length: 1025\r\n"
                                          b"Expect: 100-continue\r\n\r\n")
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413 ") and b"100 Continue" not in out
    assert json.loads(body) == {"message": "Request body too large", "reason": "body_too_large"}
    chunked = (b"POST /api/anything HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"200\r\n" + b"a" * 512 + b"\r\n" + b"201\r\n" + b"b" * 513 + b"\r\n0\r\n\r\n")
    out = await raw_exchange(port_of(gw), chunked)
    assert out.startswith(b"HTTP/1.1 413 ") and out.count(b"HTTP/1.1") == 1
    assert [r["body_length"] for r in upstream.server.requests] == [1024]  # nothing of the refused ones


async def test_oversize_head_is_431(start_gateway: StartGateway, upstream: Upstream) -> None:
    gw = await start_gateway(service(upstream), max_header_size=4096)
    out = await raw_exchange(port_of(gw), b"GET /api HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 8000 + b"\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 431")
    assert upstream.server.requests == []


async def test_forwarded_headers_trusted_only_from_trusted_ips(
    start_gateway: StartGateway, upstream: Upstream
) -> None:
    spoof = [("x-forwarded-for", "6.6.6.6"), ("x-forwarded-proto", "https")]
    gw = await start_gateway(service(upstream))
    seen = (await (await Client.connect(port_of(gw))).request("GET", "/api/anything", headers=spoof)).json()
    assert seen["headers"]["x-forwarded-for"] == "127.0.0.1"
    assert seen["headers"]["x-forwarded-proto"] == "http"
    gw2 = await start_gateway(service(upstream), trusted_ips="127.0.0.0/8")
    seen = (await (await Client.connect(port_of(gw2))).request("GET", "/api/anything", headers=spoof)).json()
    assert seen["headers"]["x-forwarded-for"] == "6.6.6.6, 127.0.0.1"
    assert seen["headers"]["x-forwarded-proto"] == "https"


async def test_https_termination(
    start_gateway: StartGateway, upstream: Upstream, server_pair: tuple[Path, Path], client_ctx: ssl.SSLContext
) -> None:
    cert, key = server_pair
    gw = await start_gateway(service(upstream), ssl_cert=str(cert), ssl_cert_key=str(key))
    client = await Client.connect(port_of(gw, ssl=True), tls=client_ctx, server_hostname="localhost")
    seen = (await client.request("GET", "/api/anything")).json()
    assert seen["headers"]["x-forwarded-proto"] == "https"
    assert client.stream.version() == "TLSv1.3"  # type: ignore[attr-defined]


async def test_failed_handshake_sends_its_alert(
    start_gateway: StartGateway, upstream: Upstream, server_pair: tuple[Path, Path], client_ctx: ssl.SSLContext
) -> None:
    cert, key = server_pair
    gw = await start_gateway(service(upstream), ssl_cert=str(cert), ssl_cert_key=str(key), ssl_max_version="1.2")
    client_ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    with pytest.raises(trio.BrokenResourceError) as info:
        await Client.connect(port_of(gw, ssl=True), tls=client_ctx, server_hostname="localhost")
    assert "PROTOCOL_VERSION" in str(info.value.__cause__).upper()  # the alert arrived, not a reset


async def test_reload_swaps_configuration(start_gateway: StartGateway, upstream: Upstream, tmp_path: Path) -> None:
    gw = await start_gateway(service(upstream))
    client = await Client.connect(port_of(gw))
    assert (await client.request("GET", "/v2/anything")).status == 404
    assert gw.settings.declarative_config is not None
    path = Path(gw.settings.declarative_config)
    path.write_text(yaml.safe_dump(service(upstream, paths=["/v2"])))
    await gw.reload()
    assert (await client.request("GET", "/v2/anything")).status == 200
    path.write_text("services: [")  # broken: the old configuration stays
    await gw.reload()
    assert (await client.request("GET", "/v2/anything")).status == 200


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed")
async def test_curl_over_https(
    start_gateway: StartGateway, upstream: Upstream, server_pair: tuple[Path, Path], ca_pem: Path
) -> None:
    cert, key = server_pair
    gw = await start_gateway(service(upstream), ssl_cert=str(cert), ssl_cert_key=str(key))
    port = port_of(gw, ssl=True)
    result = await trio.run_process(
        ["curl", "-sS", "--cacert", str(ca_pem), "--tlsv1.2", "--tls-max", "1.2",
         "-w", "\n%{http_code} %{ssl_verify_result}", f"https://localhost:{port}/api/bytes/3"],
        capture_stdout=True, capture_stderr=True, check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().endswith("xxx\n200 0")


async def test_slow_head_gets_408_and_idle_keepalive_closes(start_gateway: StartGateway, upstream: Upstream) -> None:
    gw = await start_gateway(service(upstream), client_header_timeout="300ms", keepalive_timeout="300ms")
    out = await raw_exchange(port_of(gw), b"GET /api/anything HTTP/1.1\r\nHost: x\r\n")  # never finished
    assert out.startswith(b"HTTP/1.1 408")
    client = await Client.connect(port_of(gw))
    assert (await client.request("GET", "/api/anything")).status == 200
    with trio.fail_after(3):
        assert await client.stream.receive_some(10) == b""  # closed quietly after keepalive_timeout


async def test_a_connection_that_never_sends_is_closed_at_client_header_timeout(
    start_gateway: StartGateway, upstream: Upstream
) -> None:
    # Waiting for a first request holds no cancel scope (IdleConnections' deadline queue): still closed in time.
    gw = await start_gateway(service(upstream), client_header_timeout="300ms", keepalive_timeout="60s")
    stream = await trio.open_tcp_stream("127.0.0.1", port_of(gw))
    started = trio.current_time()
    with trio.fail_after(3):
        assert await stream.receive_some(10) == b""  # closed quietly: it had begun no request
    assert trio.current_time() - started >= 0.3
    assert len(gw.proxy.idle) == 0
    await stream.aclose()


async def test_client_that_stops_reading_is_dropped_after_send_timeout(
    start_gateway: StartGateway, upstream: Upstream, tmp_path: Path,
) -> None:
    log = tmp_path / "access.json.log"
    gw = await start_gateway(service(upstream), send_timeout="300ms", proxy_access_log=str(log),
                             access_log_format="json")
    stream = await trio.open_tcp_stream("127.0.0.1", port_of(gw))
    await stream.send_all(b"GET /api/bytes/200000000 HTTP/1.1\r\nHost: x\r\n\r\n")
    with trio.fail_after(10):
        while not gw.proxy.in_flight:
            await trio.sleep(0.01)
        # We never read: the socket buffers fill, the gateway's write waits, and
        # after send_timeout it gives the request (and its upstream connection) up.
        while gw.proxy.in_flight:
            await trio.sleep(0.05)
    received = 0
    with trio.fail_after(10):
        while chunk := await stream.receive_some(1 << 20):
            received += len(chunk)
    assert 0 < received < 200_000_000  # what the buffers held, then the close
    await stream.aclose()
    assert await _access_record(log) == (200, "client_send_timeout")  # the status the client got, and why it ended


async def test_graceful_shutdown_finishes_in_flight_request(start_gateway: StartGateway, upstream: Upstream) -> None:
    gw = await start_gateway(service(upstream))
    client = await Client.connect(port_of(gw))
    async with trio.open_nursery() as nursery:
        replies = []

        async def slow() -> None:
            replies.append(await client.request("GET", "/api/delay/500"))

        nursery.start_soon(slow)
        await trio.sleep(0.2)
        gw.proxy.draining = True  # what SIGTERM does first; the request in flight must still complete
    assert replies[0].status == 200
    assert replies[0].headers.get("connection") != "keep-alive"


async def test_status_reports_configuration_and_database(start_gateway: StartGateway, upstream: Upstream) -> None:
    gw = await start_gateway(service(upstream))
    reply = await (await Client.connect(port_of(gw, kind="status"))).request("GET", "/status")
    status = reply.json()
    assert reply.status == 200
    assert status["configuration_hash"] == gw.generation.snapshot.config_hash
    assert status["database"]["kind"] == "off"
    assert status["snapshot_age_seconds"] >= 0


async def _upstream_that_hangs_up(nursery: trio.Nursery, reply: bytes = b"", *, stall: bool = False) -> int:
    """An upstream that reads a request head, sends ``reply`` and closes the connection (or, with
    ``stall``, keeps it open and sends nothing more); its port."""
    async def read_then_hang_up(stream: trio.SocketStream) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            data += await stream.receive_some(65536)
        await stream.send_all(reply)
        if stall:
            await trio.sleep_forever()
        await stream.aclose()

    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    nursery.start_soon(trio.serve_listeners, read_then_hang_up, listeners)
    return int(listeners[0].socket.getsockname()[1])


def _one_route(port: int, **service: object) -> dict[str, object]:
    return {"_format_version": "3.0", "services": [
        {"name": "rude", "url": f"http://127.0.0.1:{port}", "routes": [{"paths": ["/"]}], **service}]}


async def _access_record(log: Path) -> tuple[int, str]:
    """The status and reason of the access log's one JSON line, once it is written (a bounded wait)."""
    with trio.move_on_after(10):
        while not log.read_text():
            await trio.sleep(0.02)
    record = json.loads(log.read_text())
    return record["status"], record["reason"]


@pytest.mark.parametrize("reply", [b"", b"HTTP/1.1 200 OK\r\ncontent-le"], ids=["nothing", "half-a-head"])
async def test_an_upstream_that_closes_without_answering_is_502_and_in_the_error_log(
    start_gateway: StartGateway, nursery: trio.Nursery, caplog: pytest.LogCaptureFixture, reply: bytes,
) -> None:
    port = await _upstream_that_hangs_up(nursery, reply)
    gw = await start_gateway(_one_route(port))
    answer = await (await Client.connect(port_of(gw))).request("GET", "/")
    assert answer.status == 502 and answer.json()["reason"] == "upstream_closed"
    lines = [r.message for r in caplog.records if "upstream request failed" in r.message]
    assert lines == [f"upstream request failed: reason=upstream_closed upstream=127.0.0.1:{port} "
                     "error=the upstream closed the connection before its response was complete"]


@pytest.mark.parametrize(("reply", "relayed", "count"), [
    (b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n0123456789", b"0123456789", 10),
    # the 20-byte chunk's first 3 bytes are relayed as they come, as a chunk of their own; no last chunk
    (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\na\r\n0123456789\r\n14\r\nabc",
     b"a\r\n0123456789\r\n3\r\nabc\r\n", 13),
], ids=["content-length", "chunked"])
async def test_an_upstream_that_closes_mid_body_cuts_the_response_and_is_in_the_error_log(
    start_gateway: StartGateway, nursery: trio.Nursery, caplog: pytest.LogCaptureFixture, tmp_path: Path,
    reply: bytes, relayed: bytes, count: int,
) -> None:
    """nginx's "upstream prematurely closed connection while reading upstream": the client has the head
    already, so its response ends short (framing tells it: the missing bytes or last chunk) and its
    connection closes; the error log says so, and the access log keeps the status the client got."""
    port = await _upstream_that_hangs_up(nursery, reply)
    log = tmp_path / "access.json.log"
    gw = await start_gateway(_one_route(port), proxy_access_log=str(log), access_log_format="json")
    got = await raw_exchange(port_of(gw), b"GET /x HTTP/1.1\r\nhost: a\r\n\r\n")  # reads until the close
    head, _, body = got.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") and body == relayed
    lines = [r.message for r in caplog.records if "upstream request failed" in r.message]
    assert lines == [f"upstream request failed: reason=upstream_closed upstream=127.0.0.1:{port} "
                     "error=the upstream closed the connection before its response was complete; the client's "
                     f"response was cut short after its head (status 200) and {count} body bytes"]
    assert (await _access_record(log)) == (200, "upstream_closed")


async def test_a_204_from_the_upstream_loses_its_content_length(
    start_gateway: StartGateway, nursery: trio.Nursery,
) -> None:
    """RFC 9110 §8.6: no Content-Length on a 204; nginx drops an upstream's, and so does the gateway —
    and the bytes that upstream sent after its head never reach the client."""
    port = await _upstream_that_hangs_up(nursery, b"HTTP/1.1 204 No Content\r\ncontent-length: 5\r\nx-a: 1\r\n\r\nhello")
    gw = await start_gateway(_one_route(port))
    out = await raw_exchange(port_of(gw), b"GET / HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n")
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 204 ") and b"x-a: 1" in head
    assert b"content-length" not in head.lower()
    assert body == b""


async def test_an_upstream_that_stalls_mid_body_cuts_the_response_at_read_timeout(
    start_gateway: StartGateway, nursery: trio.Nursery, caplog: pytest.LogCaptureFixture, tmp_path: Path,
) -> None:
    port = await _upstream_that_hangs_up(
        nursery, b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n0123456789", stall=True)
    log = tmp_path / "access.json.log"
    gw = await start_gateway(_one_route(port, read_timeout=200), proxy_access_log=str(log), access_log_format="json")
    got = await raw_exchange(port_of(gw), b"GET /x HTTP/1.1\r\nhost: a\r\n\r\n")  # reads until the close
    assert got.startswith(b"HTTP/1.1 200 ") and got.endswith(b"\r\n\r\n0123456789")
    lines = [r.message for r in caplog.records if "upstream request failed" in r.message]
    assert lines == [f"upstream request failed: reason=upstream_read_timeout upstream=127.0.0.1:{port} "
                     "error=nothing received from the upstream for read_timeout (0.2 s); the client's response "
                     "was cut short after its head (status 200) and 10 body bytes"]
    assert (await _access_record(log)) == (200, "upstream_read_timeout")
