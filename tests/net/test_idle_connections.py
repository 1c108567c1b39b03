"""IdleConnections: an idle keep-alive connection's deadline without a cancel scope, over real sockets.

A timed entry (:meth:`IdleConnections.receive` on one of the gateway's own
streams) is woken by :meth:`IdleConnections.run` when its deadline passes, by
``close_oldest`` when its slot is needed, and after a grace by ``close_all``
(a drain); data that arrives first is returned, and the stream stays usable
for a clean close.  Streams that cannot be interrupted (memory streams) fall
back to a cancel scope with the same behaviour.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator

import pytest
import trio
import trio.testing

from trio_gw.net import limits
from trio_gw.net.limits import IdleConnections
from trio_gw.net.tls_stream import TlsStream

from .test_streams import Pair, _socket_pair, _tls_pair_maker, plain_pair, tls_contexts  # noqa: F401  # tls_contexts: a fixture

KINDS = ["plain", "tls", "memory"]


async def _pair(kind: str, contexts: tuple[ssl.SSLContext, ssl.SSLContext]) -> Pair:
    if kind == "plain":
        return await plain_pair()
    if kind == "tls":
        return await _tls_pair_maker(contexts, clogged=False)()
    client, served = trio.testing.memory_stream_pair()
    return client, served


@pytest.fixture
async def idle() -> AsyncIterator[IdleConnections]:
    idle = IdleConnections()
    async with trio.open_nursery() as nursery:
        await nursery.start(idle.run)
        yield idle
        nursery.cancel_scope.cancel()


async def _receive(idle: IdleConnections, stream: trio.abc.ReceiveStream, timeout: float,
                   into: list[bytes | bytearray | None]) -> None:
    into.append(await idle.receive(stream, 1024, timeout))


@pytest.mark.parametrize("kind", KINDS)
async def test_nothing_arrives_none_at_the_deadline_and_the_stream_still_closes_cleanly(
    kind: str, tls_contexts: tuple[ssl.SSLContext, ssl.SSLContext], idle: IdleConnections
) -> None:
    client, served = await _pair(kind, tls_contexts)
    started = trio.current_time()
    got = await idle.receive(served, 1024, 0.2)
    waited = trio.current_time() - started
    assert got is None
    assert 0.2 <= waited < 2.0
    assert len(idle) == 0
    # the stream was not closed under us: the server can still say something and close
    await served.send_all(b"bye")
    await served.aclose()
    assert await client.receive_some(1024) == b"bye"


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("sends", [True, False], ids=["data", "end-of-stream"])
async def test_what_the_client_sends_before_the_deadline_is_returned(
    kind: str, sends: bool, tls_contexts: tuple[ssl.SSLContext, ssl.SSLContext], idle: IdleConnections
) -> None:
    client, served = await _pair(kind, tls_contexts)
    got: list[bytes | bytearray | None] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_receive, idle, served, 5.0, got)
        await trio.testing.wait_all_tasks_blocked()
        assert len(idle) == 1
        if sends:
            await client.send_all(b"GET / HTTP/1.1\r\n")
        else:
            await client.aclose()
    assert got == ([b"GET / HTTP/1.1\r\n"] if sends else [b""])  # b"": the client closed, not None
    assert len(idle) == 0
    if sends:  # and the stream receives normally afterwards: nothing of the interruption is left behind
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.send_all, b"more")
            assert await served.receive_some(1024) == b"more"


@pytest.mark.parametrize("kind", KINDS)
async def test_close_oldest_wakes_the_oldest_only(
    kind: str, tls_contexts: tuple[ssl.SSLContext, ssl.SSLContext], idle: IdleConnections
) -> None:
    (c1, s1), (c2, s2) = await _pair(kind, tls_contexts), await _pair(kind, tls_contexts)
    first: list[bytes | bytearray | None] = []
    second: list[bytes | bytearray | None] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_receive, idle, s1, 30.0, first)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(_receive, idle, s2, 30.0, second)
        await trio.testing.wait_all_tasks_blocked()
        assert idle.close_oldest()
        await trio.testing.wait_all_tasks_blocked()
        assert first == [None] and second == []
        assert len(idle) == 1
        await c2.send_all(b"x")
    assert second == [b"x"]
    assert not idle.close_oldest()  # nobody idle any more


@pytest.mark.parametrize("kind", KINDS)
async def test_a_drain_gives_a_request_on_its_way_the_grace_then_closes_the_rest(
    kind: str, tls_contexts: tuple[ssl.SSLContext, ssl.SSLContext], idle: IdleConnections,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    grace = 0.5  # long enough that nothing below races it on a loaded machine
    monkeypatch.setattr(limits, "DRAIN_IDLE_GRACE", grace)
    (c1, s1), (c2, s2) = await _pair(kind, tls_contexts), await _pair(kind, tls_contexts)
    quiet: list[bytes | bytearray | None] = []
    talking: list[bytes | bytearray | None] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_receive, idle, s1, 60.0, quiet)
        nursery.start_soon(_receive, idle, s2, 60.0, talking)
        await trio.testing.wait_all_tasks_blocked()
        drained_at = trio.current_time()
        assert idle.close_all() == 2
        await trio.testing.wait_all_tasks_blocked()
        assert quiet == [] and talking == []  # the grace is running
        await c2.send_all(b"GET")  # on its way within the grace: served
        with trio.fail_after(grace / 2):
            while not talking:
                await trio.sleep(0)
        # The one that got its request has left; the quiet one is still counted while its grace runs —
        # a timed entry is, in the drain's queue; a scope-based one (memory streams) left at close_all.
        assert len(idle) == (0 if kind == "memory" else 1)
    assert talking == [b"GET"]
    assert quiet == [None]
    assert len(idle) == 0
    assert trio.current_time() - drained_at < 2.0


async def test_an_interrupt_while_the_task_is_runnable_ends_its_next_wait(
    tls_contexts: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    # The race the flag covers: the deadline passes after the socket became readable and the task
    # was scheduled, but before it ran.  It then finds only part of a TLS record, and must not wait
    # again with no deadline left (a client trickling bytes would hold the connection forever).
    server_ctx, client_ctx = tls_contexts
    a, b = _socket_pair()
    served = TlsStream.wrap_server(trio.SocketStream(trio.socket.from_stdlib_socket(b)), server_ctx)
    client = trio.socket.from_stdlib_socket(a)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = client_ctx.wrap_bio(incoming, outgoing, server_hostname="stream.example")

    async def client_handshake() -> None:
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                await client.send(outgoing.read())
                incoming.write(await client.recv(65536))
        await client.send(outgoing.read())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(client_handshake)
        nursery.start_soon(served.do_handshake)
    tls.write(b"hello")
    record = outgoing.read()  # one application-data record, held back to be sent in two parts

    receiver: list[trio.lowlevel.Task] = []
    interrupted: list[bool] = []

    class InterruptWhenScheduled(trio.abc.Instrument):
        def before_task_step(self, task: trio.lowlevel.Task) -> None:
            if receiver and task is receiver[0]:
                trio.lowlevel.remove_instrument(self)
                served.interrupt_receive()  # the task is runnable, not waiting: only the flag can reach it
                interrupted.append(True)

    async def receive() -> None:
        receiver.append(trio.lowlevel.current_task())
        with trio.fail_after(5), pytest.raises(trio.ClosedResourceError):  # without the flag: waits forever
            await served.receive_some(1024)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(receive)
        await trio.testing.wait_all_tasks_blocked()
        # its receive waits on the socket now (the tickets it had to read are read)
        trio.lowlevel.add_instrument(InterruptWhenScheduled())
        await client.send(record[:3])  # readable, but not a whole record
    assert interrupted == [True]
    # nothing is left over: the rest of the record completes it for the next receive
    await client.send(record[3:])
    assert await served.receive_some(1024) == b"hello"
