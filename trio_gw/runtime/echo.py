"""A small built-in upstream for the demo and the tests.

Routes (all methods):

* ``/anything...`` (any path not below) — JSON describing the request it received:
  method, path, query, headers, body length and SHA-256, and the client
  certificate subject when it came over mTLS.
* ``/echo...`` — streams the request body back (``content-type`` kept).
* ``/bytes/N`` — N bytes of ``x``, streamed in 64 KiB pieces.
* ``/delay/MS...`` — waits MS milliseconds, then answers like ``/anything``.
* ``/status/N`` — answers with status N and a JSON body.
"""

from __future__ import annotations

import hashlib
import json
import ssl
from dataclasses import dataclass, field
from typing import Any

import h11
import trio

from trio_gw.net.contexts import TLS_RECEIVE_SIZE

CHUNK = 65536


@dataclass
class EchoServer:
    """Counters the tests read: requests seen and connections accepted."""

    #: What each request looked like, oldest first: every one, or the latest ``keep_requests``.
    requests: list[dict[str, Any]] = field(default_factory=list)
    #: None keeps every request (tests read them all); a number bounds ``requests`` for an upstream
    #: that runs for long (the demo, the bench), which would otherwise grow by ~1 KB per request.
    keep_requests: int | None = None
    connections: int = 0
    #: Requests being answered now, and the most seen at once (shows concurrency without a clock).
    in_flight: int = 0
    max_in_flight: int = 0
    ssl_context: ssl.SSLContext | None = None

    async def serve(self, listeners: list[trio.SocketListener]) -> None:
        async with trio.open_nursery() as nursery:
            for listener in listeners:
                nursery.start_soon(self._accept_loop, listener)

    async def _accept_loop(self, listener: trio.SocketListener) -> None:
        async with trio.open_nursery() as nursery:
            while True:
                sock = await listener.accept()
                nursery.start_soon(self._handle, sock)

    async def _handle(self, sock: trio.SocketStream) -> None:
        self.connections += 1
        stream: trio.abc.Stream = sock
        subject = None
        try:
            if self.ssl_context is not None:
                tls = trio.SSLStream(sock, self.ssl_context, server_side=True, https_compatible=True)
                with trio.fail_after(10):
                    await tls.do_handshake()
                der = tls.getpeercert(binary_form=True)
                if der:
                    from cryptography import x509

                    subject = x509.load_der_x509_certificate(der).subject.rfc4514_string()
                stream = tls
            await _serve_h11(stream, self, subject)
        except (trio.BrokenResourceError, trio.TooSlowError, h11.ProtocolError, ssl.SSLError):
            pass
        finally:
            await trio.aclose_forcefully(stream)


async def _receive(stream: trio.abc.Stream, conn: h11.Connection) -> Any:
    while True:
        event = conn.next_event()
        if event is not h11.NEED_DATA:
            return event
        conn.receive_data(await stream.receive_some(TLS_RECEIVE_SIZE))  # type: ignore[arg-type]  # h11 takes bytearray too


async def _serve_h11(stream: trio.abc.Stream, server: EchoServer, subject: str | None) -> None:
    conn = h11.Connection(h11.SERVER)
    while True:
        event = await _receive(stream, conn)
        if not isinstance(event, h11.Request):
            return
        path = event.target.decode("ascii", "replace")
        if conn.they_are_waiting_for_100_continue:
            await stream.send_all(conn.send(h11.InformationalResponse(status_code=100, headers=[])))
        if path.startswith("/echo"):
            await _echo_body(stream, conn, event)
        else:
            await _describe(stream, conn, event, server, subject)
        if conn.our_state is h11.MUST_CLOSE or conn.their_state is not h11.DONE:
            return
        conn.start_next_cycle()


async def _echo_body(stream: trio.abc.Stream, conn: h11.Connection, req: h11.Request) -> None:
    ctype = [(k, v) for k, v in req.headers if k == b"content-type"]
    await stream.send_all(conn.send(h11.Response(status_code=200, headers=ctype)))
    while True:
        event = await _receive(stream, conn)
        if isinstance(event, h11.Data):
            await stream.send_all(conn.send(h11.Data(data=event.data)))
        else:
            break
    await stream.send_all(conn.send(h11.EndOfMessage()))


async def _describe(
    stream: trio.abc.Stream, conn: h11.Connection, req: h11.Request, server: EchoServer, subject: str | None
) -> None:
    digest, length = hashlib.sha256(), 0
    while True:
        event = await _receive(stream, conn)
        if isinstance(event, h11.Data):
            digest.update(event.data)
            length += len(event.data)
        else:
            break
    target = req.target.decode("ascii", "replace")
    path, _, query = target.partition("?")
    seen = {
        "method": req.method.decode(),
        "path": path,
        "query": query,
        "http_version": req.http_version.decode(),
        "headers": {k.decode(): v.decode("latin-1") for k, v in req.headers},
        "body_length": length,
        "body_sha256": digest.hexdigest(),
        "client_cert_subject": subject,
    }
    server.requests.append(seen)
    if server.keep_requests is not None and len(server.requests) > server.keep_requests:
        del server.requests[: len(server.requests) - server.keep_requests]
    status = 200
    parts = path.strip("/").split("/")
    if parts[0] == "delay" and len(parts) > 1 and parts[1].isdigit():
        server.in_flight += 1
        server.max_in_flight = max(server.max_in_flight, server.in_flight)
        try:
            await trio.sleep(int(parts[1]) / 1000)
        finally:
            server.in_flight -= 1
    elif parts[0] == "status" and len(parts) > 1 and parts[1].isdigit():
        status = int(parts[1])
    elif parts[0] == "bytes" and len(parts) > 1 and parts[1].isdigit():
        await _send_bytes(stream, conn, int(parts[1]))
        return
    body = json.dumps(seen).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await stream.send_all(conn.send(h11.Response(status_code=status, headers=headers)))
    if req.method != b"HEAD":
        await stream.send_all(conn.send(h11.Data(data=body)))
    await stream.send_all(conn.send(h11.EndOfMessage()))


async def _send_bytes(stream: trio.abc.Stream, conn: h11.Connection, n: int) -> None:
    headers = [(b"content-type", b"application/octet-stream"), (b"content-length", str(n).encode())]
    await stream.send_all(conn.send(h11.Response(status_code=200, headers=headers)))
    block = b"x" * CHUNK
    while n > 0:
        piece = block[: min(n, CHUNK)]
        await stream.send_all(conn.send(h11.Data(data=piece)))
        n -= len(piece)
    await stream.send_all(conn.send(h11.EndOfMessage()))


async def open_echo_listeners(host: str = "127.0.0.1", port: int = 0) -> list[trio.SocketListener]:
    return await trio.open_tcp_listeners(port, host=host)
