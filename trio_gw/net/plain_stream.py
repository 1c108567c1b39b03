"""Plain TCP over a non-blocking socket, the counterpart of :class:`~trio_gw.net.tls_stream.TlsStream`.

Theory of operation
-------------------
``trio.SocketStream`` wraps every ``send``/``recv`` in a conflict detector, an
error-translating context manager and ``trio.socket``'s generic non-blocking
helper; measured here, ``send_all`` of a small buffer costs about 10 µs where
the syscall and Trio's two checkpoints cost about 6.  A proxied request crosses
a plain connection twice (the request up, the answer down) on the upstream
side, so :class:`PlainStream` does what ``TlsStream`` does over TLS: try the
syscall at once, and wait for readiness (``trio.lowlevel.wait_readable`` /
``wait_writable``) only when the kernel says it would block.

It keeps the rules of a Trio stream, as ``TlsStream`` does: every call is a
checkpoint (a call that did not wait still yields once, shielded, so a busy
connection never starves the others); one reader and one writer at a time;
OS errors become ``trio.BrokenResourceError``; ``aclose`` closes at once
(``lingering=True`` half-closes first and drops what the peer still sends,
briefly, so the kernel never answers late bytes with an RST that would
overtake the last response — for client connections).  Every socket gets
``TCP_NODELAY``.
"""

from __future__ import annotations

import errno
import operator
import socket

import trio

from trio_gw.net.tls_stream import InterruptibleReceive, linger, set_nodelay

__all__ = ["PlainStream"]

_RECEIVE_SIZE = 65536


class PlainStream(InterruptibleReceive, trio.abc.HalfCloseableStream):
    """A TCP connection over a socket the stream owns (see the module docstring).

    Args:
        sock: a connected stdlib socket (made non-blocking here, with ``TCP_NODELAY``).
        lingering: ``aclose`` half-closes and drains briefly before closing (client connections).
        prepared: ``sock`` is non-blocking with ``TCP_NODELAY`` already (the listener's accepted sockets):
            two syscalls fewer.
    """

    # One per connection: no instance dict.
    __slots__ = ("_sock", "_lingering", "_closed", "_sent_eof", "_sending")  # and InterruptibleReceive's

    def __init__(self, sock: socket.socket, *, lingering: bool = False, prepared: bool = False) -> None:
        if not prepared:
            sock.setblocking(False)
            set_nodelay(sock)
        self._sock = sock
        self._lingering = lingering
        self._closed = False
        self._sent_eof = False
        self._receiving = False
        self._sending = False
        self._interrupted = False

    @classmethod
    def take(cls, transport: trio.SocketStream, *, lingering: bool = False) -> PlainStream:
        """Take over the socket of a ``trio.SocketStream`` (do not use ``transport`` again)."""
        fd = transport.socket.detach()
        return cls(socket.socket(fileno=fd), lingering=lingering)

    @property
    def socket(self) -> socket.socket:
        return self._sock

    def fileno(self) -> int:
        return self._sock.fileno()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        """Up to ``max_bytes`` bytes as soon as any are there; ``b""`` at the peer's end of stream."""
        if self._receiving:
            raise trio.BusyResourceError("another task is already receiving on this stream")
        self._receiving = True
        try:
            await trio.lowlevel.checkpoint_if_cancelled()
            if self._closed:
                raise trio.ClosedResourceError("the stream was closed")
            sock = self._sock
            size = _RECEIVE_SIZE if max_bytes is None else _max_bytes(max_bytes)
            waited = False
            while True:
                try:
                    data = sock.recv(size)
                    break
                except BlockingIOError:
                    pass
                except OSError as exc:
                    if self._closed:
                        raise trio.ClosedResourceError("the stream was closed") from exc
                    raise trio.BrokenResourceError(exc) from exc
                # Outside the except clause: an idle connection waits here, and the exception
                # would stay alive with its traceback for as long as it does.
                if self._interrupted:
                    raise trio.ClosedResourceError("the receive was interrupted")
                await trio.lowlevel.wait_readable(sock)
                waited = True
            if not waited:
                await trio.lowlevel.cancel_shielded_checkpoint()
            return data
        finally:
            self._receiving = self._interrupted = False

    async def send_all(self, data: bytes | bytearray | memoryview, *, schedule: bool = True) -> None:
        """Send everything; backpressure comes from the socket.

        Always a cancel point; ``schedule`` as in :meth:`trio_gw.net.tls_stream.TlsStream.send_all`.
        """
        if self._sending:
            raise trio.BusyResourceError("another task is already sending on this stream")
        self._sending = True
        try:
            await trio.lowlevel.checkpoint_if_cancelled()
            if self._closed:
                raise trio.ClosedResourceError("the stream was closed")
            if self._sent_eof:
                raise trio.ClosedResourceError("cannot send after send_eof")
            sock = self._sock
            waited = False
            with memoryview(data) as view:
                while view:
                    try:
                        sent = sock.send(view)
                    except BlockingIOError:
                        pass
                    except OSError as exc:
                        if self._closed:
                            raise trio.ClosedResourceError("the stream was closed") from exc
                        raise trio.BrokenResourceError(exc) from exc
                    else:
                        view = view[sent:]
                        continue
                    await trio.lowlevel.wait_writable(sock)  # outside the except clause
                    waited = True
            if not waited and schedule:
                await trio.lowlevel.cancel_shielded_checkpoint()
        finally:
            self._sending = False

    async def wait_send_all_might_not_block(self) -> None:
        if self._sending:
            raise trio.BusyResourceError("another task is already sending on this stream")
        self._sending = True  # a send_all or send_eof meanwhile is a conflict, as in Trio's streams
        try:
            if self._closed:
                await trio.lowlevel.checkpoint()
                raise trio.ClosedResourceError("the stream was closed")
            await trio.lowlevel.wait_writable(self._sock)
        finally:
            self._sending = False

    async def send_eof(self) -> None:
        """Half-close: the peer reads the end of stream; receiving goes on."""
        if self._sending:
            raise trio.BusyResourceError("another task is already sending on this stream")
        self._sending = True
        try:
            await trio.lowlevel.checkpoint()
            if self._closed:
                raise trio.ClosedResourceError("the stream was closed")
            if self._sent_eof:
                return
            self._sent_eof = True
            try:
                self._sock.shutdown(socket.SHUT_WR)
            except OSError as exc:
                if exc.errno != errno.ENOTCONN:
                    raise trio.BrokenResourceError(exc) from exc
        finally:
            self._sending = False

    async def aclose(self) -> None:
        if self._closed:
            await trio.lowlevel.checkpoint()
            return
        self._closed = True
        sock = self._sock
        trio.lowlevel.notify_closing(sock)  # a task blocked on it gets ClosedResourceError
        try:
            if self._lingering:
                await linger(sock)
            else:
                await trio.lowlevel.checkpoint()
        finally:
            sock.close()


def _max_bytes(value: int) -> int:
    """``receive_some``'s ``max_bytes``: a positive integer (as every Trio stream checks)."""
    size = operator.index(value)
    if size < 1:
        raise ValueError("max_bytes must be >= 1")
    return size
