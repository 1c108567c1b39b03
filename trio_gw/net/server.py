"""Listeners: accept loops, TLS handshakes, connection limits, draining.

Theory of operation
-------------------
``serve_ssl_over_tcp`` fixes its context when the listener starts; we need to
swap the listener context when policy changes (new certificates, a changed
client-certificate allowlist — a resumed session must not bypass it, notes
§10), so the accept loop is our own: every accepted socket is wrapped with the
context the :class:`ListenerContexts` holder points at *now*.

A failed handshake's alert is flushed to the client before closing (trio drops
it, notes §2), so curl shows ``unknown ca`` / ``protocol version`` /
``unrecognized name`` instead of a reset.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Awaitable, Callable
from typing import Protocol

import trio

from trio_gw.net.proxy import ConnectionInfo
from trio_gw.tls.handshake_errors import classify_handshake_failure
from trio_gw.tls.resumed_chain import IntermediateCache

log = logging.getLogger("trio_gw.net")
_ENCODING_DER = 2  # ssl._ssl.ENCODING_DER (the private chain API's certificate encoding)


class ContextSource(Protocol):
    """Gives the listener context to wrap a new connection with (swapped on policy change)."""

    def listener_context(self) -> ssl.SSLContext: ...


Handler = Callable[[trio.abc.Stream, ConnectionInfo], Awaitable[None]]
#: Called once per handshake: (listener name, failure reason code or None, TLS version).
HandshakeObserver = Callable[[str, "str | None", "str | None"], None]


def _ignore(_listener: str, _reason: str | None, _version: str | None) -> None:
    return None


class Listener:
    """One bound socket and its accept loop."""

    def __init__(
        self,
        socket_listener: trio.SocketListener,
        *,
        name: str,
        handler: Handler,
        tls: ContextSource | None,
        handshake_timeout: float,
        limiter: trio.CapacityLimiter,
        observe: HandshakeObserver = _ignore,
        chains: IntermediateCache | None = None,
    ) -> None:
        self.socket_listener = socket_listener
        self.observe = observe
        #: Client-certificate intermediates for resumed sessions (shared by listeners that share tickets).
        self.chains = chains if chains is not None else IntermediateCache()
        self.name = name
        self.handler = handler
        self.tls = tls
        self.handshake_timeout = handshake_timeout
        self.limiter = limiter
        sockname = socket_listener.socket.getsockname()
        self.host: str = sockname[0]
        self.port: int = sockname[1]

    async def serve(self, connection_nursery: trio.Nursery) -> None:
        """Accept until cancelled; each connection runs in ``connection_nursery``."""
        while True:
            try:
                sock = await self.socket_listener.accept()
            except OSError as exc:
                log.warning("accept failed on %s: %s", self.name, exc)
                await trio.sleep(0.05)
                continue
            connection_nursery.start_soon(self._run, sock)

    async def _run(self, sock: trio.SocketStream) -> None:
        if self.limiter.available_tokens <= 0:
            await trio.aclose_forcefully(sock)  # over max_connections: shed load at once
            return
        async with self.limiter:
            peer = sock.socket.getpeername()
            info = ConnectionInfo(client_ip=peer[0], client_port=peer[1], server_port=self.port)
            stream: trio.abc.Stream = sock
            if self.tls is not None:
                tls_stream, failure = await handshake(sock, self.tls.listener_context(), self.handshake_timeout)
                if tls_stream is None:
                    self.observe(self.name, failure, None)
                    return
                _record_tls_facts(tls_stream, info, self.chains)
                self.observe(self.name, None, info.tls_version)
                stream = tls_stream
            await self.handler(stream, info)


async def handshake(
    sock: trio.SocketStream, context: ssl.SSLContext, timeout: float
) -> tuple[trio.SSLStream[trio.SocketStream] | None, str | None]:
    """Run the server handshake; on failure flush the TLS alert and close.

    Returns:
        ``(stream, None)``, or ``(None, reason code)`` when the handshake failed.
    """
    stream = trio.SSLStream(sock, context, server_side=True, https_compatible=True)
    reason = "timeout"
    try:
        with trio.fail_after(timeout):
            await stream.do_handshake()
        return stream, None
    except trio.BrokenResourceError as exc:
        cause = exc.__cause__
        reason = classify_handshake_failure(
            getattr(cause, "reason", None), getattr(cause, "verify_message", None)
        ) if isinstance(cause, ssl.SSLError) else "client_closed"
        alert = stream._outgoing.read()  # trio does not flush the alert (notes §2)
        if alert:
            with trio.move_on_after(1):
                try:
                    await sock.send_all(alert)
                except trio.BrokenResourceError:
                    pass
    except trio.TooSlowError:
        pass
    await trio.aclose_forcefully(sock)
    return None, reason


def _record_tls_facts(
    stream: trio.SSLStream[trio.SocketStream], info: ConnectionInfo, chains: IntermediateCache
) -> None:
    info.tls = True
    info.tls_version = stream.version()
    cipher = stream.cipher()
    info.cipher = cipher[0] if cipher else None
    info.alpn = stream.selected_alpn_protocol()
    sslobj = stream._ssl_object
    info.sni = getattr(sslobj, "trio_gw_sni", None)
    info.peer_certificate_der = stream.getpeercert(binary_form=True)
    if info.peer_certificate_der is not None:
        # Python 3.11 has no public chain API (3.13 does).  The plugins verify the
        # chain themselves, so pass what the client sent.  A resumed session has no
        # chain: give back the intermediates verified handshakes showed above this
        # leaf, else a route trusting only the root refuses it (tls/resumed_chain.py).
        if sslobj.session_reused:
            info.peer_chain_der = chains.chain_for(info.peer_certificate_der)
            return
        chain = sslobj._sslobj.get_unverified_chain() or []  # type: ignore[attr-defined]
        info.peer_chain_der = tuple(c.public_bytes(_ENCODING_DER) for c in chain[1:])
        verified = sslobj._sslobj.get_verified_chain() or []  # type: ignore[attr-defined]
        chains.remember([c.public_bytes(_ENCODING_DER) for c in verified[1:]])


async def open_listener(
    host: str,
    port: int,
    *,
    name: str,
    handler: Handler,
    tls: ContextSource | None,
    handshake_timeout: float,
    limiter: trio.CapacityLimiter,
    observe: HandshakeObserver = _ignore,
    chains: IntermediateCache | None = None,
    reuseport: bool = False,
    backlog: int = 16384,
) -> Listener:
    """Bind ``host:port`` (port 0 picks a free port) and return the ready listener."""
    sock = trio.socket.socket(
        trio.socket.AF_INET6 if ":" in host else trio.socket.AF_INET, trio.socket.SOCK_STREAM
    )
    try:
        sock.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_REUSEADDR, 1)
        if reuseport:
            sock.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_REUSEPORT, 1)
        await sock.bind((host, port))
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return Listener(
        trio.SocketListener(sock),
        name=name,
        handler=handler,
        tls=tls,
        handshake_timeout=handshake_timeout,
        limiter=limiter,
        observe=observe,
        chains=chains,
    )
