"""Listeners: accept loops, TLS handshakes, connection limits.

Theory of operation
-------------------
``serve_ssl_over_tcp`` fixes its context when the listener starts; the gateway
needs the context of the generation current *at accept*, so the accept loop is
our own: every accepted socket asks its :class:`TlsSource` for the context to
wrap it with, and the connection carries that generation's server contexts for
the SNI callback (:mod:`trio_gw.net.tls_server`).

A failed handshake's alert is flushed to the client before closing (trio drops
it, docs/tls-stack.md §2), so curl shows ``unknown ca`` / ``protocol version`` /
``unrecognized name`` instead of a reset.

The listening socket is a non-blocking stdlib socket, and the accept loop calls
its ``accept`` itself, waiting with ``trio.lowlevel.wait_readable`` only when the
kernel has no connection ready: the accepted socket and the client's address go
straight to the connection's stream — no ``trio.socket`` wrapper to detach again,
no ``trio.SocketStream``, no ``getpeername``.  A connection accepted without
waiting does not yield to the scheduler on its own (Trio's ``accept`` does, once
per connection); the loop yields once every :data:`ACCEPT_BATCH` connections so
a flood of new connections cannot starve the established ones.  A client may
reset its connection before the gateway looks at it; whatever one connection's
setup raises ends that connection, never the node.
"""

from __future__ import annotations

import errno
import logging
import math
import socket
import ssl
from collections.abc import Awaitable, Callable
from typing import Protocol

import trio

from trio_gw.http.facts import ConnectionFacts
from trio_gw.http.responses import error_response
from trio_gw.net.connection import record_tls_facts
from trio_gw.net.limits import ConnectionLimit
from trio_gw.net.plain_stream import PlainStream
from trio_gw.net.tls_stream import TlsStream, set_nodelay
from trio_gw.tls.handshake_errors import classify_handshake_failure
from trio_gw.tls.resumed_chain import IntermediateCache

log = logging.getLogger("trio_gw.net")

#: After a failed handshake, how long the connection may linger so the alert is read before the close.
FAILED_HANDSHAKE_LINGER = 1.0
#: Connections accepted one after another without waiting before the accept loop yields to the scheduler.
ACCEPT_BATCH = 16
#: After an accept failed for want of a resource (EMFILE, ENFILE, ENOBUFS...), the wait before the next try:
#: the listen queue stays readable meanwhile, so trying again at once would spin.
ACCEPT_RETRY_DELAY = 0.05
#: While accepts keep failing, at most one log line per listener per this many seconds (with the count).
ACCEPT_FAILURE_LOG_INTERVAL = 10.0
#: ``accept`` failures that concern one connection only (the ones trio's SocketListener retries silently).
_TRANSIENT_ACCEPT_ERRNOS = frozenset(
    getattr(errno, name) for name in (
        "EPERM", "ECONNABORTED", "EPROTO", "ENETDOWN", "ENOPROTOOPT", "EHOSTDOWN", "ENONET", "EHOSTUNREACH",
        "EOPNOTSUPP", "ENETUNREACH", "ENOSR", "ESOCKTNOSUPPORT", "EPROTONOSUPPORT", "ETIMEDOUT", "ECONNRESET",
    ) if hasattr(errno, name))


class TlsSource(Protocol):
    """What a TLS listener wraps a new connection with."""

    def context_for_accept(self) -> tuple[ssl.SSLContext, object | None]:
        """The context to wrap with, and what the SNI callback needs (the stream's ``handshake_tag``)."""
        ...


class FixedTls:
    """A listener context that never changes (the Admin API and status listeners)."""

    def __init__(self, ctx: ssl.SSLContext) -> None:
        self.ctx = ctx

    def context_for_accept(self) -> tuple[ssl.SSLContext, object | None]:
        return self.ctx, None


Handler = Callable[[trio.abc.Stream, ConnectionFacts], Awaitable[None]]
#: Called once per handshake: (listener name, failure reason code or None, the connection's facts — after a
#: success its TLS facts; after a failure the client's address and the SNI it sent, when the SNI callback saw it).
HandshakeObserver = Callable[[str, "str | None", ConnectionFacts], None]


def _ignore(_listener: str, _reason: str | None, _conn: ConnectionFacts) -> None:
    return None


class Listener:
    """One bound socket and its accept loop.

    Args:
        sock: the listening socket, bound and listening (made non-blocking here, with ``TCP_NODELAY``,
            which every accepted socket inherits from it on Linux: no ``setsockopt`` per connection;
            the listener owns it and closes it in :meth:`aclose`).
    """

    def __init__(
        self,
        sock: socket.socket,
        *,
        name: str,
        handler: Handler,
        tls: TlsSource | None,
        handshake_timeout: float,
        limit: ConnectionLimit,
        observe: HandshakeObserver = _ignore,
        chains: IntermediateCache | None = None,
    ) -> None:
        sock.setblocking(False)
        set_nodelay(sock)
        self.socket = sock
        self.observe = observe
        #: Client-certificate intermediates for resumed sessions (shared by listeners that share tickets).
        self.chains = chains if chains is not None else IntermediateCache()
        self.name = name
        self.handler = handler
        self.tls = tls
        self.handshake_timeout = handshake_timeout
        self.limit = limit
        #: Accepts that failed for want of a resource, and when the current run of them began (or None).
        self.accept_failures = 0
        self._failing_since: float | None = None
        self._unreported = 0
        self._next_report = -math.inf
        sockname = sock.getsockname()
        self.host: str = sockname[0]
        self.port: int = sockname[1]

    async def serve(self, connection_nursery: trio.Nursery) -> None:
        """Accept until cancelled or :meth:`aclose`; each connection runs in ``connection_nursery``.

        Raises:
            trio.ClosedResourceError: the listener was closed.
        """
        listening = self.socket
        run = self._run
        in_a_row = 0  # connections accepted since the loop last yielded
        await trio.lowlevel.checkpoint()
        while True:
            try:
                raw, address = listening.accept()
            except BlockingIOError:
                in_a_row = 0
                await trio.lowlevel.wait_readable(listening)  # ClosedResourceError once aclose() is called
                continue
            except OSError as exc:
                if exc.errno == errno.EBADF:
                    raise trio.ClosedResourceError("the listener was closed") from None
                if exc.errno not in _TRANSIENT_ACCEPT_ERRNOS:  # EMFILE, ENOBUFS...: the node is short of something
                    self._accept_failed(exc)
                    await trio.sleep(ACCEPT_RETRY_DELAY)
                else:
                    await trio.lowlevel.checkpoint()
                continue
            if self._failing_since is not None:
                self._accepting_again()
            connection_nursery.start_soon(run, raw, address)
            in_a_row += 1
            if in_a_row >= ACCEPT_BATCH:
                in_a_row = 0
                await trio.lowlevel.checkpoint()

    def _accept_failed(self, exc: OSError) -> None:
        """Count a failed accept; log it unless a line was written less than an interval ago."""
        now = trio.current_time()
        self.accept_failures += 1
        self._unreported += 1
        if self._failing_since is None:
            self._failing_since = now
        if now >= self._next_report:
            log.warning("accept failed on %s: %s; retrying every %.0f ms (%d failed accept(s) since the last "
                        "report, at most one report per %.0f s)", self.name, exc, ACCEPT_RETRY_DELAY * 1000,
                        self._unreported, ACCEPT_FAILURE_LOG_INTERVAL)
            self._unreported = 0
            self._next_report = now + ACCEPT_FAILURE_LOG_INTERVAL

    def _accepting_again(self) -> None:
        assert self._failing_since is not None
        log.warning("accepting again on %s after %.1f s of failed accepts (%d not reported)", self.name,
                    trio.current_time() - self._failing_since, self._unreported)
        self._failing_since = None
        self._unreported = 0
        self._next_report = -math.inf

    async def aclose(self) -> None:
        """Stop accepting: the accept loop ends with ``trio.ClosedResourceError``; the socket is closed.

        New connections are refused by the kernel from here on. Idempotent.
        """
        if self.socket.fileno() != -1:
            trio.lowlevel.notify_closing(self.socket)
            self.socket.close()
        await trio.lowlevel.checkpoint()

    async def _run(self, raw: socket.socket, address: tuple[str, int]) -> None:
        try:
            raw.setblocking(False)  # TCP_NODELAY came from the listening socket; the stream owns the descriptor now
        except OSError:
            raw.close()
            await trio.lowlevel.checkpoint()
            return  # reset before we got to it
        slot = self.limit.admit()
        if slot is None:
            await self._shed(raw)
            return
        try:
            conn = ConnectionFacts(client_ip=address[0], client_port=address[1], server_port=self.port)
            stream = await self._open(raw, conn)
            del raw  # an emptied socket object need not live as long as the connection
            if stream is not None:
                await self.handler(stream, conn)
        finally:
            slot.release()

    async def _open(self, raw: socket.socket, conn: ConnectionFacts) -> trio.abc.Stream | None:
        """The connection's stream, its handshake done; ``None`` when it failed (and was closed).

        A client may reset the connection at any point of this: the ``OSError`` that follows
        (``getpeername`` inside ``ssl``, or ``getpeercert``'s own connected check) ends this
        connection only.  So does a bug: logged, and the node goes on, as for a request.
        """
        if self.tls is None:
            return PlainStream(raw, lingering=True, prepared=True)
        stream: TlsStream | None = None
        try:
            context, tag = self.tls.context_for_accept()
            stream, failure = await handshake(raw, context, self.handshake_timeout, tag, conn)
            if failure is not None:
                self.observe(self.name, failure, conn)
                await close_failed_handshake(stream, failure)
                return None
            record_tls_facts(stream, conn, self.chains)
            self.observe(self.name, None, conn)
            return stream
        except Exception as exc:
            if isinstance(exc, OSError):
                log.debug("connection from %s on %s broke while it was set up: %s", conn.client_ip, self.name, exc)
            else:
                log.exception("unexpected error setting up a connection from %s on %s", conn.client_ip, self.name)
            if stream is not None:
                await trio.aclose_forcefully(stream)
            else:
                raw.close()
            return None

    async def _shed(self, raw: socket.socket) -> None:
        """Over the limit with nothing idle to close: 503 to a plain-HTTP client, a clean close otherwise."""
        stream = PlainStream(raw, prepared=True)
        if self.tls is None:
            response, body = error_response(503, "the gateway is at its connection limit; retry shortly",
                                            reason="overloaded", headers=[(b"connection", b"close")])
            head = b"HTTP/1.1 503 Service Unavailable\r\n" + b"".join(
                name + b": " + value + b"\r\n" for name, value in response.headers) + b"\r\n"
            with trio.move_on_after(1):
                try:
                    await stream.send_all(head + body)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass
        await trio.aclose_forcefully(stream)


async def handshake(
    sock: trio.SocketStream | socket.socket, context: ssl.SSLContext, timeout: float, tag: object | None = None,
    conn: ConnectionFacts | None = None,
) -> tuple[TlsStream, str | None]:
    """Run the server handshake.

    Args:
        sock: the accepted socket (taken over by the TLS stream): a trio stream, or a stdlib
            socket already non-blocking with ``TCP_NODELAY`` (the listener's accepted sockets).
        context: the listener context.
        timeout: the handshake's deadline (``ssl_handshake_timeout``).
        tag: the stream's ``handshake_tag``, for the SNI callback.
        conn: on failure, given the SNI the client sent (when the SNI callback saw it), for the rejection log.

    Returns:
        ``(stream, None)``, or ``(stream, reason code)`` when the handshake failed: the
        client has its alert already (OpenSSL wrote it); close the stream with
        :func:`close_failed_handshake`.
    """
    stream = TlsStream.wrap_server(sock, context, tag=tag)
    try:
        with trio.CancelScope(deadline=trio.current_time() + timeout) as scope:  # no fail_after wrapper per connection
            await stream.do_handshake()
        if not scope.cancelled_caught:
            return stream, None
        reason = "timeout"
    except trio.BrokenResourceError as exc:
        reason = _failure_reason(stream, exc.__cause__)
    if conn is not None:
        conn.sni = stream.sni
    return stream, reason


def _failure_reason(stream: TlsStream, cause: BaseException | None) -> str:
    refusal = stream.refusal  # the SNI callback's own reason
    if refusal is not None:
        return str(refusal)
    if isinstance(cause, ssl.SSLError):
        if cause.reason == "CALLBACK_FAILED":
            # The SNI callback never raises and names its own refusals, so the server
            # name itself could not be decoded (not ASCII): see tls_server.ServerNameGuard.
            return "bad_server_name"
        return classify_handshake_failure(getattr(cause, "reason", None), getattr(cause, "verify_message", None))
    return "client_closed"


async def close_failed_handshake(stream: TlsStream, reason: str) -> None:
    """Close after a failed handshake, lingering briefly so the alert is read before the close."""
    if reason == "timeout":
        await trio.aclose_forcefully(stream)
        return
    with trio.move_on_after(FAILED_HANDSHAKE_LINGER):
        await stream.aclose()
    await trio.aclose_forcefully(stream)


async def open_listener(
    host: str,
    port: int,
    *,
    name: str,
    handler: Handler,
    tls: TlsSource | None,
    handshake_timeout: float,
    limit: ConnectionLimit,
    observe: HandshakeObserver = _ignore,
    chains: IntermediateCache | None = None,
    reuseport: bool = False,
    backlog: int = 16384,
) -> Listener:
    """Bind ``host:port`` (port 0 picks a free port) and return the ready listener.

    A host name (``localhost``) is resolved by ``bind`` itself, in a worker thread.
    """
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuseport:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        await trio.to_thread.run_sync(sock.bind, (host, port))
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return Listener(
        sock,
        name=name,
        handler=handler,
        tls=tls,
        handshake_timeout=handshake_timeout,
        limit=limit,
        observe=observe,
        chains=chains,
    )
