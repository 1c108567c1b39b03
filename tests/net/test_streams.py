"""TlsStream and PlainStream against Trio's own stream conformance checks, over real sockets.

``trio.testing.check_two_way_stream`` / ``check_half_closeable_stream`` are the
checks Trio runs on its own ``SocketStream`` and ``SSLStream``: closing, conflict
detection (two senders at once), cancellation, backpressure of a clogged
stream, waking a task blocked on a stream another task closes, large duplex
transfers.
"""

from __future__ import annotations

import select
import socket
import ssl
from collections.abc import Awaitable, Callable

import pytest
import trio
import trio.testing
import trustme

from trio_gw.net.plain_stream import PlainStream
from trio_gw.net.streams import send_before_receive
from trio_gw.net.tls_stream import TlsStream

Pair = tuple[trio.abc.Stream, trio.abc.Stream]
TlsPair = tuple[TlsStream, TlsStream]


def _socket_pair() -> tuple[socket.socket, socket.socket]:
    """A connected TCP pair on 127.0.0.1 (TCP_NODELAY and real kernel buffers, unlike socketpair())."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        client = socket.create_connection(server.getsockname())
        accepted, _ = server.accept()
    return client, accepted


async def _fill(stream: trio.abc.SendStream) -> None:
    """Send until the kernel takes no more (nothing reads the other end), as Trio's own tests clog a stream."""

    async def sender() -> None:
        while True:
            await stream.send_all(b"x" * 10000)

    async def stop_when_blocked(nursery: trio.Nursery) -> None:
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(sender)
        nursery.start_soon(stop_when_blocked, nursery)


async def plain_pair() -> Pair:
    a, b = _socket_pair()
    return PlainStream(a), PlainStream(b, lingering=True)


async def clogged_plain_pair() -> Pair:
    # a Unix socket pair, as Trio clogs its own SocketStream: TCP on loopback may still
    # take a few bytes after a send blocked, which the check reads as "not clogged"
    a, b = (PlainStream(s) for s in socket.socketpair())
    await _fill(a)  # both ways: check_two_way_stream also uses the pair flipped
    await _fill(b)
    return a, b


async def test_plain_stream_is_a_conforming_half_closeable_stream() -> None:
    await trio.testing.check_half_closeable_stream(plain_pair, clogged_plain_pair)  # type: ignore[arg-type]


_CERT_FILES: dict[int, tuple[str, str]] = {}


@pytest.fixture(scope="module")
def tls_contexts(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert = ca.issue_cert("stream.example")
    cert.configure_cert(server)
    where = tmp_path_factory.mktemp("pki")
    chain, key = where / "chain.pem", where / "key.pem"
    chain.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    key.write_bytes(cert.private_key_pem.bytes())
    _CERT_FILES[id(server)] = (str(chain), str(key))
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return server, client


def _wrapped_pair(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext,
                  server_hostname: str = "stream.example") -> TlsPair:
    """A client and a server TlsStream over a fresh TCP pair, not yet handshaken."""
    a, b = _socket_pair()
    client = TlsStream.wrap_client(trio.SocketStream(trio.socket.from_stdlib_socket(a)), client_ctx,
                                   server_hostname=server_hostname)
    return client, TlsStream.wrap_server(trio.SocketStream(trio.socket.from_stdlib_socket(b)), server_ctx)


def _cert_files(server: ssl.SSLContext) -> tuple[str, str]:
    return _CERT_FILES[id(server)]


def _tls_pair_maker(
    contexts: tuple[ssl.SSLContext, ssl.SSLContext], *, clogged: bool,
) -> Callable[[], Awaitable[TlsPair]]:
    server_ctx, client_ctx = contexts

    async def make() -> TlsPair:
        client, server = _wrapped_pair(server_ctx, client_ctx)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.do_handshake)
            nursery.start_soon(server.do_handshake)
        if clogged:
            await _fill(client)  # after the handshake, both ways: nothing reads either end
            await _fill(server)
        return client, server

    return make


async def test_tls_stream_is_a_conforming_two_way_stream(tls_contexts: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
    # Without the clogged-stream checks: those cancel a send blocked on a full socket and then
    # send other bytes, which OpenSSL refuses (the record it holds must be retried as it was);
    # trio.SSLStream passes them only over memory streams that never block mid-record.  The
    # clogged behaviours are checked one by one below.
    await trio.testing.check_two_way_stream(_tls_pair_maker(tls_contexts, clogged=False), None)


async def test_a_blocked_tls_send_completes_when_the_peer_reads(
    tls_contexts: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    client, server = await _tls_pair_maker(tls_contexts, clogged=False)()
    payload = b"p" * (4 << 20)  # far more than the socket buffers hold
    received = bytearray()

    async def read_all() -> None:
        await trio.testing.wait_all_tasks_blocked()  # the sender is blocked on a full socket first
        while len(received) < len(payload):
            received.extend(await server.receive_some())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(read_all)
        await client.send_all(payload)
    assert bytes(received) == payload
    for s in (client, server):
        await trio.aclose_forcefully(s)


async def test_a_tls_send_cancelled_mid_record_breaks_sending_only(
    tls_contexts: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    client, server = await _tls_pair_maker(tls_contexts, clogged=False)()
    with trio.move_on_after(0.2) as scope:
        while True:  # nobody reads: this blocks mid-record
            await client.send_all(b"x" * 10000)
    assert scope.cancelled_caught
    with pytest.raises(trio.BrokenResourceError, match="interrupted in the middle of a TLS record"):
        await client.send_all(b"other bytes")
    # receiving still works: the peer can still talk to us
    await server.send_all(b"still here")
    assert await client.receive_some(100) == b"still here"
    for s in (client, server):
        await trio.aclose_forcefully(s)


async def test_closing_a_tls_stream_wakes_a_blocked_sender(tls_contexts: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
    client, server = await _tls_pair_maker(tls_contexts, clogged=False)()

    async def close_when_blocked() -> None:
        await trio.testing.wait_all_tasks_blocked()
        await trio.aclose_forcefully(client)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(close_when_blocked)
        with pytest.raises(trio.ClosedResourceError):
            while True:
                await client.send_all(b"x" * 10000)
    await trio.aclose_forcefully(server)


async def test_a_receive_served_from_the_buffer_still_yields(tls_contexts: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
    """A read that finds data already there (and a send that does not block) is still a checkpoint."""
    client, server = await _tls_pair_maker(tls_contexts, clogged=False)()
    await client.send_all(b"a" * 10)
    await trio.testing.wait_all_tasks_blocked()
    with trio.testing.assert_checkpoints():  # a cancellation point and a schedule point
        assert await server.receive_some(100) == b"a" * 10
    with trio.testing.assert_checkpoints():
        await server.send_all(b"b")  # a send the kernel took at once
    for s in (client, server):
        await trio.aclose_forcefully(s)


async def test_a_tls_handshake_is_a_checkpoint_whether_it_waits_or_not(
    tls_contexts: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    """The server's handshake waits for the client (its waits are the schedule points); called again
    on an established stream it has nothing to wait for and still yields once."""
    server_ctx, client_ctx = tls_contexts
    client, server = _wrapped_pair(server_ctx, client_ctx)

    async def serve() -> None:
        with trio.testing.assert_checkpoints():
            await server.do_handshake()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve)
        await trio.testing.wait_all_tasks_blocked()  # the server waits for the ClientHello
        await client.do_handshake()
    with trio.testing.assert_checkpoints():
        await server.do_handshake()  # done already: no wait, one schedule point
    for s in (client, server):
        await trio.aclose_forcefully(s)


async def test_plain_receive_served_from_the_buffer_still_yields() -> None:
    a, b = await plain_pair()
    await a.send_all(b"hello")
    await trio.testing.wait_all_tasks_blocked()
    with trio.testing.assert_checkpoints():  # a cancellation point and a schedule point
        assert await b.receive_some(100) == b"hello"
    with trio.testing.assert_checkpoints():
        await b.send_all(b"b")
    for s in (a, b):
        await trio.aclose_forcefully(s)


async def test_plain_stream_reports_a_reset_as_broken() -> None:
    a, b = _socket_pair()
    a.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # close = RST
    stream = PlainStream(b)
    a.close()
    with pytest.raises(trio.BrokenResourceError):
        while True:  # an RST may first read as end of stream on some kernels; a send then fails
            if await stream.receive_some(10) == b"":
                await stream.send_all(b"x" * 100000)
    await stream.aclose()


@pytest.mark.parametrize("ahead", [True, False])
async def test_records_read_ahead_are_delivered_without_waiting_on_the_socket(
    tls_contexts: tuple[ssl.SSLContext, ssl.SSLContext], ahead: bool,
) -> None:
    """With read-ahead one read takes several records; the ones after the first wait in
    OpenSSL's buffer — the socket is no longer readable for them, so receive_some must
    find them there (waiting on the socket would hang).  Without read-ahead they stay
    in the kernel (the socket stays readable)."""
    from trio_gw.net.openssl_shim import read_ahead, set_read_ahead

    server_ctx, client_ctx = tls_contexts
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*_cert_files(server_ctx))
    if ahead:
        set_read_ahead(context)
    assert read_ahead(context) is ahead
    client, server = await _tls_pair_maker((context, client_ctx), clogged=False)()
    for i in range(3):  # three records, sent before the server reads any
        await client.send_all(b"record %d;" % i)
    await trio.sleep(0.05)  # all in the server's socket buffer
    with trio.fail_after(5):
        got = await server.receive_some(100)
        poller = select.poll()
        poller.register(server.fileno(), select.POLLIN)
        assert bool(poller.poll(0)) is not ahead  # the other records: in OpenSSL's buffer, or still in the kernel
        while got != b"record 0;record 1;record 2;":
            got += await server.receive_some(100)
    for s in (client, server):
        await trio.aclose_forcefully(s)


async def _both_kinds(tls_contexts: tuple[ssl.SSLContext, ssl.SSLContext]) -> list[Pair]:
    return [await plain_pair(), await _tls_pair_maker(tls_contexts, clogged=False)()]


async def test_a_send_before_a_receive_lets_no_other_task_run_but_stays_a_cancel_point(
    tls_contexts: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    for sender, peer in await _both_kinds(tls_contexts):
        spins = 0

        async def spinner() -> None:
            nonlocal spins
            while True:
                spins += 1
                await trio.lowlevel.checkpoint()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(spinner)
            while spins == 0:
                await trio.lowlevel.checkpoint()
            before = spins
            for _ in range(20):
                await send_before_receive(sender, b"12345678")  # the kernel takes each at once
            assert spins == before  # no schedule point: the other task never ran
            for _ in range(20):
                await sender.send_all(b"abcdefgh")  # the default: a schedule point each (Trio shuffles
            assert spins > before  # runnable tasks, so one yield may not run the spinner; twenty do)
            nursery.cancel_scope.cancel()
        received = b""
        while len(received) < 320:
            received += await peer.receive_some(1000)
        assert received == b"12345678" * 20 + b"abcdefgh" * 20

        with trio.CancelScope() as scope:
            scope.cancel()
            await send_before_receive(sender, b"never sent")  # still a cancel point: raises Cancelled
            pytest.fail("send_before_receive ignored the cancellation")
        assert scope.cancelled_caught
        await sender.send_all(b"!")
        assert await peer.receive_some(100) == b"!"  # the cancelled bytes never went out
        for s in (sender, peer):
            await trio.aclose_forcefully(s)


async def test_a_send_before_a_receive_that_must_wait_still_waits_and_completes(
    tls_contexts: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    for sender, peer in await _both_kinds(tls_contexts):
        payload = b"w" * (4 << 20)  # more than the socket buffers: the send must wait for the reader
        received = bytearray()

        async def read_all(peer: trio.abc.Stream = peer) -> None:
            await trio.testing.wait_all_tasks_blocked()
            while len(received) < len(payload):
                received.extend(await peer.receive_some())

        async with trio.open_nursery() as nursery:
            nursery.start_soon(read_all)
            await send_before_receive(sender, payload)
        assert bytes(received) == payload
        for s in (sender, peer):
            await trio.aclose_forcefully(s)


async def test_other_streams_send_as_usual() -> None:
    sender, receiver = trio.testing.memory_stream_pair()
    with trio.testing.assert_checkpoints():
        await send_before_receive(sender, b"x")
    assert await receiver.receive_some(10) == b"x"


async def test_closing_after_the_peer_closed_is_still_a_checkpoint_and_closes(
    tls_contexts: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    """The lingering close finds the peer's end of stream already there: no wait, but aclose stays a checkpoint."""
    for ours, peer in await _both_kinds(tls_contexts):
        await peer.send_all(b"unread bytes before the end")
        await trio.aclose_forcefully(peer)  # the peer is gone: its bytes and its FIN are in our kernel buffer
        await trio.testing.wait_all_tasks_blocked()
        with trio.testing.assert_checkpoints():
            await ours.aclose()
        with pytest.raises(trio.ClosedResourceError):
            await ours.receive_some(10)


async def test_a_client_stream_sends_an_international_name_as_a_labels_and_checks_it() -> None:
    # What SSLContext.wrap_socket does with server_hostname, the stream does too: the SNI is
    # IDNA A-labels (RFC 6066), and the certificate is checked against that name.
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("xn--bcher-kva.example").configure_cert(server_ctx)
    seen: list[str | None] = []

    def record(_conn: object, name: str | None, _ctx: ssl.SSLContext) -> None:
        seen.append(name)

    server_ctx.sni_callback = record
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    client, server = _wrapped_pair(server_ctx, client_ctx, "bücher.example")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(client.do_handshake)
        nursery.start_soon(server.do_handshake)
    assert seen == ["xn--bcher-kva.example"]
    await client.aclose()
    await server.aclose()


async def test_a_client_stream_refuses_a_wrong_name_and_a_missing_one(
    tls_contexts: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    server_ctx, client_ctx = tls_contexts
    client, server = _wrapped_pair(server_ctx, client_ctx, "other.example")
    failures: list[BaseException] = []

    async def handshake(stream: TlsStream) -> None:
        try:
            await stream.do_handshake()
        except trio.BrokenResourceError as exc:
            failures.append(exc.__cause__ or exc)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(handshake, client)
        nursery.start_soon(handshake, server)
    assert any(isinstance(f, ssl.SSLCertVerificationError) and "other.example" in str(f) for f in failures)
    await trio.aclose_forcefully(client)
    await trio.aclose_forcefully(server)
    c, d = _socket_pair()
    transport = trio.SocketStream(trio.socket.from_stdlib_socket(c))
    with pytest.raises(ValueError, match="check_hostname requires server_hostname"):
        TlsStream.wrap_client(transport, client_ctx, server_hostname=None)
    await transport.aclose()  # refused before it took the socket: still the caller's
    d.close()
