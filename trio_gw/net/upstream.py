"""Upstream connections: open (TCP, TLS), pool and reuse them.

Theory of operation
-------------------
A pool key is everything that makes two connections interchangeable: scheme,
host, port, SNI and the serial number of the compiled TLS client context (which
carries client certificate, trust, verification and version policy).  Two
services with different TLS profiles therefore never share a connection, and a
rotated client certificate — a new context, a new serial — is used by the next
new connection while the old ones drain.  Keys are computed once per service
when a generation is built (``UpstreamPlan.key``), never per request.

A connection through a forward proxy also carries the proxy in its key.
Opening one (:func:`open_upstream`) is: TCP — or a CONNECT tunnel / a proxy
connection (``net.forward_proxy``) — then the TLS handshake with the
service's context, then the post-handshake identity checks (pins, CN check:
``tls.upstream_identity``) before the caller writes a byte.  Every TLS
failure leaves as :class:`~trio_gw.tls.upstream_identity.UpstreamTlsError`
with a stable reason code; the detail goes to the error log only.

An idle connection is reused LIFO (warmest first) while it is younger than the
idle timeout and has served fewer than ``max_requests`` — and only while its
peer is still there: before a connection is handed out, its socket is polled
without blocking (:meth:`UpstreamConnection.is_idle_and_open`); readable means
the upstream closed it (EOF, RST, a TLS close_notify) or sent bytes nobody
asked for, and either way it is dropped, as nginx's keepalive module drops an
idle connection that becomes readable.  :meth:`UpstreamPool.run` also sweeps
the pool every second, so expired and closed connections do not linger in
CLOSE-WAIT until the next request for their key.  A connection can still die
between the poll and the write; the caller then retries once on a fresh
connection when neither a response byte nor a byte of the client's body was
used (see ``net.exchange``).
"""

from __future__ import annotations

import select
import ssl
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import h11
import trio

from trio_gw.net.forward_proxy import (
    AbsoluteFormConnection,
    absolute_form_origin,
    open_connect_tunnel,
    open_proxy_stream,
)
from trio_gw.net.plain_stream import PlainStream
from trio_gw.net.tls_stream import TlsStream
from trio_gw.tls.proxy_url import ForwardProxy
from trio_gw.tls.upstream import UpstreamTlsProfile
from trio_gw.tls.upstream_identity import UpstreamTlsError, check_upstream_identity, classify_tls_failure

if TYPE_CHECKING:
    from trio_gw.net.upstream_h2 import H2Upstream


_POLLRDHUP = getattr(select, "POLLRDHUP", 0)
#: How often the pool closes expired and dead idle connections (seconds).
SWEEP_INTERVAL = 1.0


class _HasFileno(Protocol):
    def fileno(self) -> int: ...


@dataclass(frozen=True)
class PoolKey:
    scheme: str
    host: str
    port: int
    sni: str | None
    tls_serial: int  # serial of the compiled client context (one per TLS profile), 0 for plain http
    proxy: str | None = None  # the forward proxy (``ForwardProxy.describe()``), None for direct


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
    #: Bytes of the answer received during the current exchange (0: the upstream has not answered).
    received: int = 0
    #: The TCP socket under every layer (TLS, a CONNECT tunnel), for the liveness poll; None if unknown.
    sock: _HasFileno | None = None
    #: The HTTP/2 state when the upstream chose ``h2`` by ALPN (``proxy_enable_http2``), else None.
    h2: H2Upstream | None = None

    def is_idle_and_open(self) -> bool:
        """Whether nothing is waiting to be read: the peer has not closed or reset the connection.

        A non-blocking ``poll`` of the socket (a few microseconds); readable, hung up
        or in error all mean the connection cannot carry another request.  Bytes
        already buffered above the socket (TLS records read ahead, h11's trailing
        data) count as readable too.
        """
        if self.h11.trailing_data[0]:
            return False
        stream = self.stream
        if isinstance(stream, TlsStream) and stream.pending():
            return False
        if isinstance(stream, trio.SSLStream) and stream._ssl_object.pending():
            return False
        if self.sock is None:
            return True  # cannot tell (no socket): the exchange's retry covers it
        poller = select.poll()
        try:
            poller.register(self.sock.fileno(), select.POLLIN | select.POLLPRI | _POLLRDHUP)
            return not poller.poll(0)
        except (OSError, ValueError):  # ValueError: the socket was closed under it (fileno() is -1)
            return False

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
        """An idle connection for ``key`` that is fresh and still open, or ``None``."""
        idle = self._idle.get(key)
        now = trio.current_time()
        while idle:
            conn = idle.pop()
            if now - conn.idle_since < self.idle_timeout and conn.is_idle_and_open():
                conn.reused = True
                return conn
            self.discard(conn)
        return None

    def sweep(self) -> int:
        """Close every idle connection that expired or whose peer went away; returns how many."""
        now = trio.current_time()
        closed = 0
        for key, idle in list(self._idle.items()):
            keep = deque(c for c in idle if now - c.idle_since < self.idle_timeout and c.is_idle_and_open())
            for conn in idle:
                if conn not in keep:
                    self.discard(conn)
                    closed += 1
            if keep:
                self._idle[key] = keep
            else:
                del self._idle[key]
        return closed

    async def run(self) -> None:
        """Sweep every :data:`SWEEP_INTERVAL` seconds until cancelled."""
        while True:
            await trio.sleep(SWEEP_INTERVAL)
            self.sweep()

    def discard(self, conn: UpstreamConnection) -> None:
        """Close ``conn`` in the background (a system task: the caller does not wait)."""
        trio.lowlevel.spawn_system_task(conn.aclose)

    def give_back(self, conn: UpstreamConnection) -> bool:
        """Keep ``conn`` for reuse if its exchange ended cleanly; returns whether it was kept."""
        if self.size <= 0 or conn.requests >= self.max_requests:
            return False
        if conn.h2 is not None:  # HTTP/2: its stream ended both ways (net.upstream_h2), no GOAWAY, no error
            if not conn.h2.usable:
                return False
        else:
            h = conn.h11
            if (
                h.our_state is not h11.DONE
                or h.their_state is not h11.DONE
                or h.trailing_data[0]  # bytes after the response nobody asked for: never reuse
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
    profile: UpstreamTlsProfile | None = None,
    proxy: ForwardProxy | None = None,
    proxy_context: ssl.SSLContext | None = None,
) -> UpstreamConnection:
    """Connect to ``key.host:key.port`` (directly or via ``proxy``), handshake, check identity.

    Args:
        key: the pool key (host, port, SNI, context identity, proxy).
        context: the compiled client context, ``None`` for plain http.
        connect_timeout: seconds for everything: TCP, CONNECT, handshake, checks.
        profile: the TLS profile ``context`` was compiled from (pins, CN check).
        proxy: forward proxy to go through, if any.
        proxy_context: TLS context for an ``https://`` proxy.

    Raises:
        OSError: the connection was refused or unreachable.
        trio.TooSlowError: the whole opening exceeded ``connect_timeout``.
        UpstreamTlsError: the TLS handshake, an identity check or the CONNECT failed
            (``reason`` says which).
    """
    conn: h11.Connection | None = None
    with trio.fail_after(connect_timeout):
        if proxy is None:
            stream: trio.abc.Stream = await trio.open_tcp_stream(key.host, key.port)
        elif context is not None:
            stream = await open_connect_tunnel(proxy, proxy_context, key.host, key.port)
        else:
            stream = await open_proxy_stream(proxy, proxy_context)
            conn = AbsoluteFormConnection(absolute_form_origin(key.host, key.port), proxy.authorization)
        version = None
        if context is not None:
            stream, version = await _handshake(stream, context, key, profile)  # the caller logs a failure
        elif isinstance(stream, trio.SocketStream):
            stream = PlainStream.take(stream)  # the cheap path for plain http (net.plain_stream)
    peer = f"{key.host}:{key.port}"
    made = UpstreamConnection(key=key, stream=stream, peer=peer, tls_version=version, sock=_socket_of(stream))
    if context is not None and _alpn_of(stream) == "h2":
        from trio_gw.net.upstream_h2 import H2Upstream  # h2 is imported only once an upstream picks it

        made.h2 = H2Upstream()
    if conn is not None:
        made.h11 = conn
    return made


def _alpn_of(stream: trio.abc.Stream) -> str | None:
    """The protocol the upstream chose by ALPN (``None``: none offered or chosen)."""
    if isinstance(stream, (TlsStream, trio.SSLStream)):
        return stream.selected_alpn_protocol()
    return None


def _socket_of(stream: trio.abc.Stream) -> _HasFileno | None:
    """The TCP socket under TLS and tunnel layers (for the liveness poll)."""
    for _ in range(4):
        if isinstance(stream, (TlsStream, PlainStream)):
            return stream  # owns the socket (its fileno)
        if isinstance(stream, trio.SocketStream):
            return stream.socket
        inner = getattr(stream, "transport_stream", None) or getattr(stream, "inner", None)
        if not isinstance(inner, trio.abc.Stream):
            return None
        stream = inner
    return None


def _negotiated(tls: TlsStream | trio.SSLStream[trio.abc.Stream]) -> bool:
    """Whether the failed handshake got past the ServerHello (a cipher was fixed).

    trio refuses ``cipher()`` before the handshake completes, so this reads the
    ``SSLObject`` underneath (as ``net.connection.close_stream`` does).
    """
    if isinstance(tls, TlsStream):
        return tls.cipher() is not None
    return tls._ssl_object.cipher() is not None


async def _handshake(
    raw: trio.abc.Stream, context: ssl.SSLContext, key: PoolKey, profile: UpstreamTlsProfile | None
) -> tuple[trio.abc.Stream, str | None]:
    """TLS on ``raw``: a :class:`TlsStream` over a direct TCP connection (OpenSSL on the
    socket, the cheap path); ``trio.SSLStream`` over a CONNECT tunnel, which is a
    stream, not a socket."""
    tls: TlsStream | trio.SSLStream[trio.abc.Stream]
    if isinstance(raw, trio.SocketStream):
        tls = TlsStream.wrap_client(raw, context, server_hostname=key.sni)
    else:
        tls = trio.SSLStream(raw, context, server_hostname=key.sni, https_compatible=True)
    try:
        try:
            await tls.do_handshake()
        except (trio.BrokenResourceError, ssl.SSLError) as exc:
            cause = exc if isinstance(exc, ssl.SSLError) else exc.__cause__
            if not isinstance(cause, ssl.SSLError):
                raise
            code = getattr(cause, "verify_code", None)
            detail = getattr(cause, "verify_message", None) or cause.reason or str(cause)
            reason = classify_tls_failure(cause.reason, code, negotiated=_negotiated(tls))
            raise UpstreamTlsError(reason, str(detail)) from exc
        if profile is not None:
            # before a single byte of the request is written (pins, CN check)
            check_upstream_identity(
                tls.getpeercert(binary_form=True), host=key.host, pins=profile.pins,
                verify=profile.verify, force_common_name_check=profile.force_common_name_check,
            )
    except BaseException:
        # a TlsStream owns the socket now; an SSLStream leaves it to ``raw``
        await trio.aclose_forcefully(tls if isinstance(tls, TlsStream) else raw)
        raise
    return tls, tls.version()
