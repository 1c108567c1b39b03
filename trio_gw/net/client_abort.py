"""Clients that close their connection while their request waits on the upstream: nginx's 499.

Theory of operation
-------------------
A request whose client went away keeps its upstream busy for nothing: a slow
report, a long poll, a download nobody will read.  nginx notices the client's
FIN while it waits on the upstream (epoll reports ``EPOLLRDHUP`` on the client's
socket), closes the upstream connection and logs ``499`` — "client closed
request" — unless ``proxy_ignore_client_abort`` is on; Kong inherits that.

An HTTP/1.1 request task here waits on the upstream's socket only, and watching
the client's socket as well would cost a task, or a nursery, per request.  So a
request registers its client stream for as long as it waits on the upstream
(:meth:`ClientAborts.watch`/:meth:`ClientAborts.unwatch`: one dict entry), and one
task per worker (:meth:`ClientAborts.run`) looks once per :data:`CHECK_INTERVAL` at
the requests that were registered at its previous look too — so a request that
takes less than an interval is never looked at — and asks the kernel for the
TCP state of each one's client socket (``TCP_INFO``: one ``getsockopt``).  A
client that sent its FIN or reset the connection has its exchange marked
(``Exchange.client_closed``) and the upstream receive it waits in interrupted
(``interrupt_receive``, as the idle deadlines do); the relay then ends the
exchange with :class:`~trio_gw.net.relay_errors.ClientGone`, the upstream
connection is closed rather than pooled, and the access log records ``499``
with the reason ``client_closed``.

As with nginx on epoll, a FIN counts even when the client only half-closed
(``shutdown(SHUT_WR)``) and would still read: HTTP/1.1 gives a client no way to
say "done sending, still listening" that a gateway could tell from leaving, and
Kong's clients are treated the same.  A client's FIN is seen at most
2 × :data:`CHECK_INTERVAL` after it arrived.  Where ``TCP_INFO`` does not exist
(not Linux), nothing is watched.  HTTP/2 clients need none of this: their
connection is always being read, so its end is seen at once.
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING, Protocol

import trio

if TYPE_CHECKING:
    from trio_gw.net.exchange import Exchange

__all__ = ["CHECK_INTERVAL", "ClientAborts", "tcp_peer_closed"]

#: How often the waiting requests' client sockets are looked at (seconds).
CHECK_INTERVAL = 1.0
#: ``TCP_INFO``'s first byte is the connection's state (``include/net/tcp_states.h``): the peer's FIN
#: was received (CLOSE_WAIT), or the connection was reset (CLOSE).  Our side is still open in both.
_TCP_CLOSE = 7
_TCP_CLOSE_WAIT = 8
_TCP_INFO: int | None = getattr(socket, "TCP_INFO", None)


def tcp_peer_closed(sock: socket.socket) -> bool:
    """Whether the kernel has seen the peer end the TCP connection ``sock`` (a FIN or a reset).

    Data the peer sent before its FIN may still be unread: the state says the peer is done sending,
    whatever is buffered.  ``False`` when it cannot be told (no ``TCP_INFO``, a closed socket).
    """
    if _TCP_INFO is None:
        return False
    try:
        state = sock.getsockopt(socket.IPPROTO_TCP, _TCP_INFO, 1)[0]
    except (OSError, IndexError):
        return False
    return state in (_TCP_CLOSE, _TCP_CLOSE_WAIT)


class Watched(Protocol):
    """A client stream whose end the watcher can tell (the gateway's own streams)."""

    def peer_closed(self) -> bool: ...


class ClientAborts:
    """The requests waiting on their upstream, and the task that ends those whose client left."""

    def __init__(self, interval: float = CHECK_INTERVAL) -> None:
        self.interval = interval
        #: Client stream -> its exchange, for the requests waiting on the upstream now.
        self._waiting: dict[Watched, Exchange] = {}
        #: The streams registered at the previous look (only they are looked at now).
        self._seen: set[Watched] = set()
        #: Exchanges ended because their client left (since start).
        self.aborted = 0

    def watch(self, stream: object, ex: Exchange) -> None:
        """``stream``'s request waits on the upstream from now on (a stream that cannot tell is not watched)."""
        if _TCP_INFO is not None and hasattr(stream, "peer_closed"):
            self._waiting[stream] = ex

    def unwatch(self, stream: object) -> None:
        """``stream``'s request no longer waits on the upstream."""
        self._waiting.pop(stream, None)  # type: ignore[call-overload]

    def check(self) -> int:
        """Look at the requests registered at the previous look too; returns how many were ended now."""
        ended = 0
        waiting = self._waiting
        for stream in self._seen:
            ex = waiting.get(stream)
            if ex is None or not stream.peer_closed():
                continue
            if not ex.client_closed:
                ex.client_closed = True
                ended += 1
            # Ends the upstream receive in progress (the next look retries when there is none now). An
            # upstream stream that cannot be interrupted (a TLS tunnel's) ends when the relay next writes
            # to the client.
            interrupt = getattr(ex.upstream_stream, "interrupt_receive", None)
            if interrupt is not None:
                interrupt()
        self._seen = set(waiting)
        self.aborted += ended
        return ended

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Look every :attr:`interval` until cancelled (one task per worker)."""
        task_status.started()
        while True:
            await trio.sleep(self.interval)
            self.check()
