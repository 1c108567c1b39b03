"""The upstream pool's liveness check over real sockets: a connection the peer closed, reset or
wrote to while it sat idle is never handed out again."""

from __future__ import annotations

import socket

import h11
import pytest
import trio

from trio_gw.net.plain_stream import PlainStream
from trio_gw.net.upstream import PoolKey, UpstreamConnection, UpstreamPool

KEY = PoolKey("http", "127.0.0.1", 80, None, 0)


def _pair() -> tuple[socket.socket, socket.socket]:
    with socket.create_server(("127.0.0.1", 0)) as server:
        ours = socket.create_connection(server.getsockname())
        theirs, _ = server.accept()
    ours.setblocking(False)
    return ours, theirs


def _connection(sock: socket.socket) -> UpstreamConnection:
    return UpstreamConnection(KEY, PlainStream(sock), "127.0.0.1:80", sock=sock)


def _after_one_exchange(sock: socket.socket) -> UpstreamConnection:
    """A connection whose h11 state has been through one request and its response (so reusable)."""
    conn = _connection(sock)
    conn.h11.send(h11.Request(method="GET", target="/", headers=[("host", "upstream")]))
    conn.h11.send(h11.EndOfMessage())
    conn.h11.receive_data(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
    assert isinstance(conn.h11.next_event(), h11.Response)
    assert isinstance(conn.h11.next_event(), h11.EndOfMessage)
    return conn


@pytest.mark.parametrize("what_the_peer_does", ["closes", "resets", "writes"])
async def test_an_idle_connection_is_open_until_the_peer_acts(what_the_peer_does: str) -> None:
    ours, theirs = _pair()
    conn = _connection(ours)
    assert conn.is_idle_and_open()
    assert conn.is_idle_and_open()  # checking does not consume anything
    if what_the_peer_does == "closes":
        theirs.close()
    elif what_the_peer_does == "resets":
        theirs.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        theirs.close()
    else:
        theirs.sendall(b"HTTP/1.1 408 Request Timeout\r\n\r\n")
    with trio.fail_after(5):
        while conn.is_idle_and_open():
            await trio.sleep(0.01)  # the FIN, RST or bytes cross loopback
    ours.close()
    assert not conn.is_idle_and_open()  # closed under us: not open, no exception
    if what_the_peer_does != "resets":
        theirs.close()


async def test_the_pool_hands_out_live_connections_only() -> None:
    pool = UpstreamPool(size=4, idle_timeout=30.0, max_requests=100)
    live, live_peer = _pair()
    dead, dead_peer = _pair()
    for sock in (live, dead):  # the dead one is given back last: take() tries it first
        assert pool.give_back(_after_one_exchange(sock))
    dead_peer.close()
    await trio.sleep(0.05)
    taken = pool.take(KEY)
    assert taken is not None and taken.sock is live and taken.reused
    assert pool.take(KEY) is None  # the dead one was discarded, not handed out
    live.close()
    live_peer.close()
