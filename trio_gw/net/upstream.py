"""Upstream connections: open (TCP, TLS), pool and reuse them.

Theory of operation
-------------------
A pool key is everything that makes two connections interchangeable: scheme,
host, port, SNI and the *identity* of the compiled TLS client context (which
carries client certificate, trust, verification and version policy).  Two
services with different TLS profiles therefore never share a connection, and a
rotated client certificate — a new context — is used by the next new
connection while the old ones drain.

An idle connection is reused LIFO (warmest first) while it is younger than the
idle timeout and has served fewer than ``max_requests``.  A reused connection
may have been closed by the upstream in the meantime; the caller retries such a
request once on a fresh connection when nothing of the response was received
(see ``net.proxy``).
"""

from __future__ import annotations

import ssl
from collections import deque
from dataclasses import dataclass, field

import h11
import trio

from trio_gw.net.contexts import TLS_RECEIVE_SIZE


@dataclass(frozen=True)
class PoolKey:
    scheme: str
    host: str
    port: int
    sni: str | None
    tls_context_id: int  # id() of the cached client context, 0 for plain http


@dataclass(eq=False)
class UpstreamConnection:
    """One upstream connection with its h11 client state."""

    key: PoolKey
    stream: trio.abc.Stream
    peer: str
    h11: h11.Connection = field(default_factory=lambda: h11.Connection(h11.CLIENT))
    requests: int = 0
    idle_since: float = 0.0
    reused: bool = False
    tls_version: str | None = None

    async def receive_event(self) -> object:
        """The next h11 event; EOF becomes h11's own ``ConnectionClosed`` / protocol error."""
        conn = self.h11
        while True:
            event = conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            conn.receive_data(await self.stream.receive_some(TLS_RECEIVE_SIZE))  # type: ignore[arg-type]  # h11 takes bytearray too

    async def aclose(self) -> None:
        await trio.aclose_forcefully(self.stream)


class UpstreamPool:
    """Idle keep-alive connections per :class:`PoolKey`, bounded and expiring."""

    def __init__(self, *, size: int, idle_timeout: float, max_requests: int) -> None:
        self.size = size
        self.idle_timeout = idle_timeout
        self.max_requests = max_requests
        self._idle: dict[PoolKey, deque[UpstreamConnection]] = {}

    def take(self, key: PoolKey) -> UpstreamConnection | None:
        """An idle connection for ``key`` that is still fresh, or ``None``."""
        idle = self._idle.get(key)
        now = trio.current_time()
        while idle:
            conn = idle.pop()
            if now - conn.idle_since < self.idle_timeout:
                conn.reused = True
                return conn
            trio.lowlevel.spawn_system_task(conn.aclose)
        return None

    def give_back(self, conn: UpstreamConnection) -> bool:
        """Keep ``conn`` for reuse if its exchange ended cleanly; returns whether it was kept."""
        h = conn.h11
        if (
            self.size <= 0
            or conn.requests >= self.max_requests
            or h.our_state is not h11.DONE
            or h.their_state is not h11.DONE
        ):
            return False
        h.start_next_cycle()
        idle = self._idle.setdefault(conn.key, deque())
        if len(idle) >= self.size:
            return False
        conn.idle_since = trio.current_time()
        idle.append(conn)
        return True

    def idle_count(self) -> int:
        return sum(len(d) for d in self._idle.values())

    async def aclose(self) -> None:
        idle, self._idle = self._idle, {}
        for conns in idle.values():
            for conn in conns:
                await conn.aclose()


async def open_upstream(
    key: PoolKey,
    *,
    context: ssl.SSLContext | None,
    connect_timeout: float,
) -> UpstreamConnection:
    """Connect to ``key.host:key.port`` and complete the TLS handshake when ``context`` is given.

    Raises:
        OSError: the connection was refused or unreachable.
        trio.TooSlowError: connect + handshake exceeded ``connect_timeout``.
        ssl.SSLError / trio.BrokenResourceError: the TLS handshake failed.
    """
    with trio.fail_after(connect_timeout):
        sock = await trio.open_tcp_stream(key.host, key.port)
        stream: trio.abc.Stream = sock
        version = None
        if context is not None:
            tls = trio.SSLStream(sock, context, server_hostname=key.sni, https_compatible=True)
            try:
                await tls.do_handshake()
            except BaseException:
                await trio.aclose_forcefully(sock)
                raise
            version = tls.version()
            stream = tls
    peer = f"{key.host}:{key.port}"
    return UpstreamConnection(key=key, stream=stream, peer=peer, tls_version=version)
