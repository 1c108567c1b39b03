"""Server handshakes over socket pairs: the generation pinned at accept, and alerts the client can read.

The TLS stream lets OpenSSL read and write the socket itself, so these tests use a
connected pair of real sockets (no listener, no gateway).
"""

from __future__ import annotations

import os
import socket
import ssl
import uuid
from collections.abc import Awaitable, Callable

import pytest
import trio
import trio.testing
import trustme

from trio_gw.http.facts import ConnectionFacts
from trio_gw.net.contexts import ALPN_HTTP11
from trio_gw.net.generation import GenerationHolder, ProxyTls
from trio_gw.net.limits import ConnectionLimit
from trio_gw.net.listener import ACCEPT_BATCH, Handler, Listener, close_failed_handshake, handshake, open_listener

from .conftest import BuildGeneration


def served_by(ca: trustme.CA, name: str, org: str) -> dict[str, object]:
    leaf = ca.issue_cert(name, organization_name=org)
    return {"certificates": [{
        "id": str(uuid.uuid5(uuid.NAMESPACE_DNS, org)),
        "cert": "".join(b.bytes().decode() for b in leaf.cert_chain_pems),
        "key": leaf.private_key_pem.bytes().decode(),
        "snis": [{"name": name}],
    }]}


async def client_handshake(stream: trio.abc.Stream, ca: trustme.CA, name: str) -> trio.SSLStream[trio.abc.Stream]:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    tls = trio.SSLStream(stream, ctx, server_hostname=name)
    await tls.do_handshake()
    return tls


def organization(tls: trio.SSLStream[trio.abc.Stream]) -> str:
    from cryptography import x509

    der = tls.getpeercert(binary_form=True)
    assert der is not None
    return str(x509.load_der_x509_certificate(der).subject.get_attributes_for_oid(x509.oid.NameOID.ORGANIZATION_NAME)[0].value)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


async def test_a_connection_handshakes_with_the_generation_current_at_accept(
    build_generation: BuildGeneration, ca: trustme.CA,
) -> None:
    holder = GenerationHolder(build_generation(served_by(ca, "api.example", "first")))
    source = ProxyTls(holder, ALPN_HTTP11)
    context, tag = source.context_for_accept()  # accepted now...
    holder.install(build_generation(served_by(ca, "api.example", "second")))  # ...a reload before its ClientHello
    client, server = socket_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(handshake, server, context, 5, tag)
        tls = await client_handshake(client, ca, "api.example")
    assert organization(tls) == "first"
    later, later_tag = source.context_for_accept()
    client, server = socket_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(handshake, server, later, 5, later_tag)
        tls = await client_handshake(client, ca, "api.example")
    assert organization(tls) == "second"


def socket_pair() -> tuple[trio.SocketStream, trio.SocketStream]:
    a, b = trio.socket.socketpair()
    return trio.SocketStream(a), trio.SocketStream(b)


async def test_a_refused_name_gets_its_alert_not_a_reset(build_generation: BuildGeneration, ca: trustme.CA) -> None:
    holder = GenerationHolder(build_generation(served_by(ca, "api.example", "first"), ssl_sni_strict=True))
    context, tag = ProxyTls(holder, ALPN_HTTP11).context_for_accept()
    client, server = socket_pair()
    reasons: list[str | None] = []
    facts = ConnectionFacts("192.0.2.9", 4000, 443)

    async def serve() -> None:
        stream, reason = await handshake(server, context, 5, tag, facts)
        reasons.append(reason)
        await close_failed_handshake(stream, str(reason))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve)
        with pytest.raises(trio.BrokenResourceError) as info:
            await client_handshake(client, ca, "unknown.example")
    assert "UNRECOGNIZED_NAME" in str(info.value.__cause__).upper()  # the client read the alert
    assert reasons == ["unrecognized_name"]
    assert facts.sni == "unknown.example"  # the rejection log names what the client asked for


class _SourceWithABug:
    """A TLS source that raises for the first connection (a bug), then serves."""

    def __init__(self, ctx: ssl.SSLContext) -> None:
        self.ctx = ctx
        self.calls = 0

    def context_for_accept(self) -> tuple[ssl.SSLContext, object | None]:
        self.calls += 1
        if self.calls == 1:
            raise RuntimeError("a bug in the TLS source")
        return self.ctx, None


async def test_a_bug_setting_up_one_connection_ends_that_connection_only(
    ca: trustme.CA, caplog: pytest.LogCaptureFixture,
) -> None:
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("listener.example").configure_cert(server_ctx)
    served: list[ConnectionFacts] = []

    async def handler(stream: trio.abc.Stream, conn: ConnectionFacts) -> None:
        served.append(conn)
        await stream.aclose()

    listener = await open_listener("127.0.0.1", 0, name="proxy", handler=handler, tls=_SourceWithABug(server_ctx),
                                   handshake_timeout=5, limit=ConnectionLimit(10, "proxy"))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(listener.serve, nursery)
        first = await trio.open_tcp_stream("127.0.0.1", listener.port)
        assert await first.receive_some(100) == b""  # closed at once: its set-up met the bug
        second = await trio.open_tcp_stream("127.0.0.1", listener.port)
        tls = await client_handshake(second, ca, "listener.example")  # the listener still serves
        await tls.receive_some(100)  # the handler closes it
        nursery.cancel_scope.cancel()
    assert [c.tls for c in served] == [True]
    assert "unexpected error setting up a connection" in caplog.text and "a bug in the TLS source" in caplog.text
    await listener.aclose()


async def _plain_listener(handler: Handler, limit: int = 1000) -> Listener:
    return await open_listener("127.0.0.1", 0, name="proxy", handler=handler, tls=None, handshake_timeout=5,
                               limit=ConnectionLimit(limit, "proxy"))


async def test_closing_the_listener_ends_its_accept_loop_and_refuses_new_connections() -> None:
    async def handler(stream: trio.abc.Stream, conn: ConnectionFacts) -> None:
        await stream.aclose()

    listener = await _plain_listener(handler)
    async with trio.open_nursery() as nursery:
        ended: list[BaseException] = []

        async def serve() -> None:
            try:
                await listener.serve(nursery)
            except trio.ClosedResourceError as exc:
                ended.append(exc)

        nursery.start_soon(serve)
        await trio.testing.wait_all_tasks_blocked()  # the loop waits for a connection
        await listener.aclose()
        await trio.testing.wait_all_tasks_blocked()
        assert len(ended) == 1
        with pytest.raises(OSError):  # ECONNREFUSED: nothing listens any more
            await trio.open_tcp_stream("127.0.0.1", listener.port)
        await listener.aclose()  # idempotent


async def test_a_burst_of_connections_is_accepted_without_starving_the_other_tasks() -> None:
    # Connections the kernel holds ready are accepted one after another without waiting; the loop
    # still yields every ACCEPT_BATCH connections, so the other tasks run in between.
    async def handler(stream: trio.abc.Stream, conn: ConnectionFacts) -> None:
        await stream.aclose()

    count = 5 * ACCEPT_BATCH
    listener = await _plain_listener(handler)
    clients = [socket.create_connection(("127.0.0.1", listener.port)) for _ in range(count)]  # queued in the kernel
    ticks = 0  # how often another task got to run
    started_at: list[int] = []  # the tick at which each connection was handed to its task

    async def busy() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await trio.lowlevel.checkpoint()

    async with trio.open_nursery() as nursery:

        class Recording:
            def start_soon(self, fn: Callable[..., Awaitable[object]], *args: object) -> None:
                started_at.append(ticks)
                nursery.start_soon(fn, *args)

        nursery.start_soon(busy)
        nursery.start_soon(listener.serve, Recording())  # type: ignore[arg-type]  # records, then starts
        with trio.fail_after(10):
            while len(started_at) < count:
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    for sock in clients:
        sock.close()
    await listener.aclose()
    # Between two turns of the other task the loop runs at most twice (Trio runs a round's ready
    # tasks in random order): several connections without waiting, never more than two batches.
    in_one_go = max(started_at.count(t) for t in set(started_at))
    assert 1 < in_one_go <= 2 * ACCEPT_BATCH


class _Source:
    def __init__(self, ctx: ssl.SSLContext) -> None:
        self.ctx = ctx

    def context_for_accept(self) -> tuple[ssl.SSLContext, object | None]:
        return self.ctx, None


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
async def test_every_accepted_socket_has_tcp_nodelay(ca: trustme.CA, tls: bool) -> None:
    """Set once on the listening socket, inherited by each accepted one (no setsockopt per connection):
    a small record must not wait for the client's delayed ACK."""
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("listener.example").configure_cert(server_ctx)
    seen: list[tuple[int, bool]] = []

    async def handler(stream: trio.abc.Stream, conn: ConnectionFacts) -> None:
        fd = stream.fileno()  # type: ignore[attr-defined]
        with socket.socket(fileno=os.dup(fd)) as sock:  # the same socket, through a second descriptor
            seen.append((sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY), os.get_blocking(fd)))
        await stream.aclose()

    listener = await open_listener("127.0.0.1", 0, name="proxy", handler=handler,
                                   tls=_Source(server_ctx) if tls else None, handshake_timeout=5,
                                   limit=ConnectionLimit(10, "proxy"))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(listener.serve, nursery)
        for _ in range(2):
            client: trio.abc.Stream = await trio.open_tcp_stream("127.0.0.1", listener.port)
            if tls:
                client = await client_handshake(client, ca, "listener.example")
            await client.receive_some(100)  # the handler closes it
        nursery.cancel_scope.cancel()
    assert seen == [(1, False), (1, False)]  # TCP_NODELAY, non-blocking
    await listener.aclose()
