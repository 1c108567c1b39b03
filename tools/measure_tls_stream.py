#!/usr/bin/env python3
"""What a small TLS record and a handshake cost through ``TlsStream`` and through ``trio.SSLStream``.

    python tools/measure_tls_stream.py                   5 rounds of each, the median printed
    python tools/measure_tls_stream.py --rounds 9 --messages 20000 --handshakes 500

The gateway's TLS stream (``trio_gw.net.tls_stream.TlsStream``: OpenSSL on a
non-blocking socket, Trio's readiness waits) replaced ``trio.SSLStream``
(OpenSSL over memory BIOs, records moved in Python).  This measures the two on
the same footing: one Trio process, a TLS 1.3 server and client connected over
real TCP on 127.0.0.1 (``TCP_NODELAY``), an ECDSA P-256 certificate from a
throw-away trustme CA.  Both ends use the stream kind measured, so each figure
is the cost of both ends together:

* ``echo``: the client sends a 64-byte message, the server echoes it, the
  client reads it back — one small record each way;
* ``handshake``: a new connection, a full handshake (no resumption), one
  64-byte echo (so both sides have finished), both ends closed.

The figure is process CPU time per operation (``time.process_time``), the
median of ``--rounds`` rounds, kinds interleaved so that the machine's noise
falls on both.  Nothing here is a test; no figure is asserted.
"""

from __future__ import annotations

import argparse
import socket
import ssl
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import trio
import trustme

from trio_gw.net.tls_stream import TlsStream, set_nodelay

MESSAGE = b"x" * 64


def contexts() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    ca = trustme.CA(key_type=trustme.KeyType.ECDSA)
    leaf = ca.issue_cert("bench.test", key_type=trustme.KeyType.ECDSA)
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.minimum_version = ssl.TLSVersion.TLSv1_3
    leaf.configure_cert(server)
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.minimum_version = ssl.TLSVersion.TLSv1_3
    ca.configure_trust(client)
    return server, client


async def tcp_pair(listener: trio.SocketListener) -> tuple[trio.SocketStream, trio.SocketStream]:
    port = listener.socket.getsockname()[1]
    client = await trio.open_tcp_stream("127.0.0.1", port)
    server = await listener.accept()
    for stream in (client, server):
        set_nodelay(stream.socket)
    return server, client


def wrap(kind: str, server_t: trio.SocketStream, client_t: trio.SocketStream,
         server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext) -> tuple[Any, Any]:
    if kind == "TlsStream":
        return (TlsStream.wrap_server(server_t, server_ctx),
                TlsStream.wrap_client(client_t, client_ctx, server_hostname="bench.test"))
    return (trio.SSLStream(server_t, server_ctx, server_side=True, https_compatible=True),
            trio.SSLStream(client_t, client_ctx, server_hostname="bench.test", https_compatible=True))


async def receive_exactly(stream: Any, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = await stream.receive_some(16384)
        if not chunk:
            raise RuntimeError("end of stream")
        data += chunk
    return data


async def echo_round_trips(kind: str, n: int, listener: trio.SocketListener,
                           ctxs: tuple[ssl.SSLContext, ssl.SSLContext]) -> float:
    server_t, client_t = await tcp_pair(listener)
    server, client = wrap(kind, server_t, client_t, *ctxs)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.do_handshake)
        await client.do_handshake()

    async def serve() -> None:
        for _ in range(n):
            await server.send_all(await receive_exactly(server, len(MESSAGE)))

    start = time.process_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve)
        for _ in range(n):
            await client.send_all(MESSAGE)
            await receive_exactly(client, len(MESSAGE))
    spent = time.process_time() - start
    for stream in (client, server):
        await trio.aclose_forcefully(stream)
    return spent / n


async def handshakes(kind: str, n: int, listener: trio.SocketListener,
                     ctxs: tuple[ssl.SSLContext, ssl.SSLContext]) -> float:
    start = time.process_time()
    for _ in range(n):
        server_t, client_t = await tcp_pair(listener)
        server, client = wrap(kind, server_t, client_t, *ctxs)

        async def serve(server: Any = server) -> None:
            await server.do_handshake()
            await server.send_all(await receive_exactly(server, len(MESSAGE)))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve)
            await client.do_handshake()
            await client.send_all(MESSAGE)
            await receive_exactly(client, len(MESSAGE))
        for stream in (client, server):
            await trio.aclose_forcefully(stream)
    return (time.process_time() - start) / n


async def measure(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    ctxs = contexts()
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1", backlog=128)
    listener = listeners[0]
    kinds = ("TlsStream", "SSLStream")
    samples: dict[str, dict[str, list[float]]] = {k: {"echo": [], "handshake": []} for k in kinds}
    tests: list[tuple[str, Callable[..., Awaitable[float]], int]] = [
        ("echo", echo_round_trips, args.messages), ("handshake", handshakes, args.handshakes)]
    for _ in range(args.rounds):
        for name, run, n in tests:
            for kind in kinds:
                samples[kind][name].append(await run(kind, n, listener, ctxs))
    await listener.aclose()
    return {k: {name: statistics.median(v) for name, v in by.items()} for k, by in samples.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="rounds of each measurement (median reported)")
    parser.add_argument("--messages", type=int, default=10000, help="echo round trips per round")
    parser.add_argument("--handshakes", type=int, default=300, help="handshakes per round")
    args = parser.parse_args(argv)
    figures = trio.run(measure, args)
    print(f"{'':>10}  {'echo (64 B each way)':>22}  {'handshake + 1 echo':>20}   CPU per operation, both ends")
    for kind, by in figures.items():
        print(f"{kind:>10}  {by['echo'] * 1e6:>19.1f} µs  {by['handshake'] * 1e6:>17.0f} µs")
    t, s = figures["TlsStream"], figures["SSLStream"]
    print(f"{'ratio':>10}  {s['echo'] / t['echo']:>20.2f}×  {s['handshake'] / t['handshake']:>18.2f}×   "
          "(SSLStream / TlsStream)")
    return 0


if __name__ == "__main__":
    socket.setdefaulttimeout(None)
    sys.exit(main())
