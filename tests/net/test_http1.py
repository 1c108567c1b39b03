"""The HTTP/1.1 driver over an in-memory client connection, with real upstreams on 127.0.0.1."""

from __future__ import annotations

import json
import ssl
import uuid
from typing import Any

import h11
import pytest
import trio
import trustme

from trio_gw.net.generation import GenerationHolder
from trio_gw.runtime.echo import EchoServer, open_echo_listeners

from .conftest import BuildGeneration, Driver

CA_ID = str(uuid.UUID(int=1))


async def echo(nursery: trio.Nursery, ssl_context: ssl.SSLContext | None = None) -> tuple[EchoServer, int]:
    server = EchoServer(ssl_context=ssl_context)
    listeners = await open_echo_listeners()
    nursery.start_soon(server.serve, listeners)
    return server, listeners[0].socket.getsockname()[1]


def config(url: str, **service: Any) -> dict[str, Any]:
    return {"services": [{"name": "svc", "url": url, **service,
                          "routes": [{"name": "api", "paths": ["/api"]}]}]}


def request(path: str, *extra: tuple[str, str], method: str = "GET") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: api.example"] + [f"{k}: {v}" for k, v in extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def parse(raw: bytes) -> list[tuple[int, bytes]]:
    """The responses in ``raw`` as (status, body)."""
    conn = h11.Connection(h11.CLIENT)
    conn.send(h11.Request(method="GET", target="/", headers=[("host", "x")]))
    conn.send(h11.EndOfMessage())
    conn.receive_data(raw)
    out: list[tuple[int, bytes]] = []
    status, body = 0, b""
    while True:
        event = conn.next_event()
        if isinstance(event, h11.Response):
            status, body = event.status_code, b""
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            out.append((status, body))
            if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                return out
            conn.start_next_cycle()
            conn.send(h11.Request(method="GET", target="/", headers=[("host", "x")]))
            conn.send(h11.EndOfMessage())
        else:
            return out


async def test_a_request_is_relayed_and_the_connection_kept(nursery: trio.Nursery, build_generation: BuildGeneration) -> None:
    upstream, port = await echo(nursery)
    driver = Driver(GenerationHolder(build_generation(config(f"http://127.0.0.1:{port}"))))
    nursery.start_soon(driver.serve)
    await driver.client.send_all(request("/api/one") + request("/api/two"))
    replies = parse(await driver.read_until(b'"/two"'))
    assert [status for status, _ in replies] == [200, 200]
    assert [json.loads(body)["path"] for _, body in replies] == ["/one", "/two"]
    assert upstream.connections == 1  # the pooled upstream connection was reused
    assert [(ex.status, ex.route, ex.service) for ex in driver.exchanges] == [(200, "api", "svc")] * 2


async def test_no_route_is_answered_by_the_gateway(nursery: trio.Nursery, build_generation: BuildGeneration) -> None:
    upstream, port = await echo(nursery)
    driver = Driver(GenerationHolder(build_generation(config(f"http://127.0.0.1:{port}"))))
    nursery.start_soon(driver.serve)
    await driver.client.send_all(request("/elsewhere"))
    [(status, body)] = parse(await driver.read_until(b"}"))
    assert status == 404 and json.loads(body)["reason"] == "no_route"
    assert upstream.requests == []


async def test_smuggling_framing_is_refused_and_the_connection_closed(
    nursery: trio.Nursery, build_generation: BuildGeneration,
) -> None:
    upstream, port = await echo(nursery)
    driver = Driver(GenerationHolder(build_generation(config(f"http://127.0.0.1:{port}"))))
    nursery.start_soon(driver.serve)
    await driver.client.send_all(request("/api/x", ("Content-Length", "3"), ("Transfer-Encoding", "chunked"),
                                         method="POST") + b"0\r\n\r\n")
    raw = await driver.read_until(b"\x00never")  # read until the gateway closes
    [(status, _body)] = parse(raw)
    assert status == 400 and b"connection: close" in raw.lower()
    assert upstream.requests == []


async def test_the_next_request_takes_the_new_generation(nursery: trio.Nursery, build_generation: BuildGeneration) -> None:
    first, first_port = await echo(nursery)
    second, second_port = await echo(nursery)
    holder = GenerationHolder(build_generation(config(f"http://127.0.0.1:{first_port}")))
    driver = Driver(holder)
    nursery.start_soon(driver.serve)
    await driver.client.send_all(request("/api/a"))
    await driver.read_until(b'"/a"')
    holder.install(build_generation(config(f"http://127.0.0.1:{second_port}")))
    await driver.client.send_all(request("/api/b"))
    await driver.read_until(b'"/b"')
    assert [r["path"] for r in first.requests] == ["/a"] and [r["path"] for r in second.requests] == ["/b"]


@pytest.fixture(scope="module")
def tls_upstream_pki() -> tuple[trustme.CA, ssl.SSLContext]:
    ca = trustme.CA()
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(ctx)
    return ca, ctx


async def test_a_request_keeps_the_upstream_plan_of_the_generation_it_pinned(
    nursery: trio.Nursery, build_generation: BuildGeneration, tls_upstream_pki: tuple[trustme.CA, ssl.SSLContext],
) -> None:
    """An https service deleted while a request is in flight: the request still goes over TLS.

    Before the generation, the upstream plan was looked up live when connecting:
    the deleted service had none, so the request went to the https upstream over
    plain TCP.  The lockstep stream makes the gateway wait while it sends
    ``100 Continue`` — after the head pinned its generation, before it connects —
    and the test installs the new generation exactly then.
    """
    ca, server_ctx = tls_upstream_pki
    upstream, port = await echo(nursery, server_ctx)
    with_tls = config(f"https://localhost:{port}", ca_certificates=[CA_ID])
    with_tls["ca_certificates"] = [{"id": CA_ID, "cert": ca.cert_pem.bytes().decode()}]
    holder = GenerationHolder(build_generation(with_tls))
    driver = Driver(holder, lockstep=True)
    nursery.start_soon(driver.serve)
    await driver.client.send_all(request("/api/in-flight", ("Expect", "100-continue"), ("Content-Length", "4"),
                                         method="POST"))
    holder.install(build_generation({"ca_certificates": with_tls["ca_certificates"]}))  # the service is deleted
    assert (await driver.client.receive_some(65536)).startswith(b"HTTP/1.1 100 ")
    await driver.client.send_all(b"body")
    [(status, body)] = parse(await driver.read_until(b"}"))
    assert status == 200 and json.loads(body)["body_length"] == 4
    assert upstream.connections == 1 and len(upstream.requests) == 1  # one TLS connection, no plaintext attempt
    # and the next request runs on the new generation, where the service is gone
    await driver.client.send_all(request("/api/after"))
    assert b"no_route" in await driver.read_until(b"}")
