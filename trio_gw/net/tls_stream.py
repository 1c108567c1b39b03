"""TLS over a non-blocking socket that OpenSSL reads and writes itself, driven by Trio's readiness waits.

Theory of operation
-------------------
``trio.SSLStream`` runs OpenSSL over two memory BIOs and moves every record
between them and the socket in Python; it also holds the TLS 1.3 session
tickets back until the first application write, and drops the alert of a
failed handshake.  :class:`TlsStream` lets OpenSSL talk to the socket itself:
the socket is non-blocking, every ``SSL_read``/``SSL_write``/``SSL_do_handshake``
is tried at once, and only when OpenSSL says it *wants* to read or write does
the task wait for the kernel to report the socket readable or writable
(``trio.lowlevel.wait_readable``/``wait_writable``).  Measured on this stack, a
small record costs 2–3 times less than through ``SSLStream``, and OpenSSL writes
every alert itself, in order — after a failed handshake, and after a bad record
on an established connection (bad record MAC, an unexpected ChangeCipherSpec, a
bad KeyUpdate) — with the session tickets already out before them.

The rules a Trio stream keeps:

* **checkpoints**: every call is a cancellation point; a call that did not have
  to wait (data already buffered by OpenSSL or the kernel) still yields to the
  scheduler once (``cancel_shielded_checkpoint``), as ``trio.SocketStream``
  does, so a busy connection never starves the others;
* **want-write on read, want-read on write**: OpenSSL may need to write while
  reading (answering a KeyUpdate) and read while writing; both are waited for;
* **one reader and one writer at a time** (Trio's conflict rule), checked;
* **a send cancelled in the middle of a record** leaves OpenSSL holding that
  record, which ``SSL_write`` may only retry with the same bytes: the stream
  can no longer send (``BrokenResourceError``), as with ``trio.SSLStream``.  The
  gateway closes a connection whose send timed out anyway;
* **closing**: ``aclose`` sends close_notify, half-closes the TCP connection and
  reads until the peer's end of stream for at most :data:`LINGER_SECONDS`, so
  the kernel never answers bytes still in flight with an RST that would
  overtake the alert or close_notify (TLS 1.3 clients then fail with
  ``bad_record_mac`` instead of reading the alert).  ``trio.aclose_forcefully``
  skips the lingering but still sends close_notify.
* an end of stream without close_notify reads as ``b""`` (``https_compatible``
  as with ``SSLStream``: HTTP framing detects truncation itself).

Every accepted and upstream socket gets ``TCP_NODELAY``: a small record must not
wait for the peer's delayed ACK (with Nagle, TLS 1.3 handshakes collapsed to
22 per second in a probe).
"""

from __future__ import annotations

import abc
import operator
import socket
import ssl
from typing import Any

import trio

from trio_gw.net.client_abort import tcp_peer_closed

__all__ = ["LINGER_SECONDS", "TlsStream", "linger", "prepare_accepted", "set_nodelay"]

#: How long a closing connection waits for the peer's end of stream (nginx's lingering_timeout is 5 s).
LINGER_SECONDS = 2.0
#: Most bytes read and dropped while lingering.
LINGER_BYTES = 256 * 1024
_RECEIVE_SIZE = 16384


def set_nodelay(sock: socket.socket | trio.socket.SocketType) -> None:
    """``TCP_NODELAY`` on a TCP socket (harmless elsewhere: errors are ignored)."""
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:
        pass


class InterruptibleReceive:
    """A receive another task can end: how :class:`trio_gw.net.limits.IdleConnections` gives an idle
    connection its deadline without a cancel scope (mixed into both of the gateway's streams).

    The stream's receive loop checks ``_interrupted`` before it waits for the socket and clears it when
    the receive ends.
    """

    __slots__ = ("_receiving", "_interrupted")
    _receiving: bool
    _interrupted: bool
    _sock: socket.socket  # the stream's own socket (a slot of each stream)

    @abc.abstractmethod
    def fileno(self) -> int: ...

    def peer_closed(self) -> bool:
        """Whether the kernel has seen the peer end the connection (its FIN, or a reset), read or not
        (:func:`trio_gw.net.client_abort.tcp_peer_closed`: one ``getsockopt``)."""
        return tcp_peer_closed(self._sock)

    def interrupt_receive(self) -> None:
        """End the receive in progress with ``trio.ClosedResourceError`` if it waits, or would wait,
        for the socket (data already readable is still returned); the stream stays open and usable.

        Has no effect when no receive is in progress.
        """
        if self._receiving:
            self._interrupted = True  # for a receive already woken but not yet run: its next wait ends
            trio.lowlevel.notify_closing(self.fileno())  # for a receive waiting now


class TlsStream(InterruptibleReceive, trio.abc.Stream):
    """A TLS connection over a socket OpenSSL reads and writes itself (see the module docstring).

    Build one with :meth:`wrap_server` or :meth:`wrap_client`; call :meth:`do_handshake`
    before anything else (under a deadline: a handshake has none of its own).

    The stream drives the ``_ssl._SSLSocket`` that ``SSLContext._wrap_socket`` makes
    (``ssl.SSLSocket`` is a Python wrapper around that same object) and is its
    *owner*: OpenSSL's callbacks — the SNI callback above all — receive the stream.
    So the stream offers what they use of an ``ssl.SSLSocket``: ``context`` (read and
    set: the SNI callback switches the certificate's context) and ``_sslobj`` (the
    connection's ``SSL*`` for :mod:`trio_gw.net.openssl_shim`), and carries what the
    listener's SNI callback reads and records: :attr:`handshake_tag`, :attr:`sni`,
    :attr:`refusal`.
    """

    # One per connection: no instance dict.  (``__weakref__``: OpenSSL's callbacks find their owner by weak reference.)
    __slots__ = ("_sock", "_sslobj", "_closed", "_send_broken", "_sending",
                 "handshake_tag", "sni", "refusal", "__weakref__")  # and InterruptibleReceive's

    _sslobj: Any  # _ssl._SSLSocket: not in typeshed
    #: Set before the handshake for the SNI callback (the generation's server contexts), or ``None``.
    handshake_tag: Any
    #: The server name the client sent, once the SNI callback has seen it (``None``: none sent, or no callback).
    sni: str | None
    #: Why the SNI callback refused the handshake (a reason code), or ``None``.
    refusal: str | None

    def __init__(self, sock: socket.socket, context: ssl.SSLContext, *, server_side: bool,
                 server_hostname: str | None = None, tag: object = None) -> None:
        self._sock = sock  # OpenSSL's SSL object holds only a weak reference to it
        self.handshake_tag = tag
        self.sni = self.refusal = None
        self._closed = False
        self._send_broken = False
        self._receiving = False
        self._sending = False
        self._interrupted = False
        # ssl.SSLSocket's own construction would add a second socket object, two syscalls and,
        # per do_handshake, a settimeout syscall; the C object is what it wraps.
        self._sslobj = context._wrap_socket(  # type: ignore[attr-defined]
            sock, server_side, server_hostname, owner=self, session=None)

    # --- construction ------------------------------------------------------------------

    @classmethod
    def wrap_server(cls, transport: trio.SocketStream | socket.socket, context: ssl.SSLContext, *,
                    tag: object = None) -> TlsStream:
        """Take over an accepted socket for a server-side TLS connection.

        Args:
            transport: the accepted connection (its socket is taken over: do not use it again), or a
                stdlib socket from the listener, already non-blocking with ``TCP_NODELAY``.
            context: the listener context.
            tag: kept as :attr:`handshake_tag` (the generation's server contexts, read by the SNI
                callback).
        """
        raw = transport if isinstance(transport, socket.socket) else _detach(transport)
        try:
            return cls(raw, context, server_side=True, tag=tag)
        except BaseException:
            raw.close()
            raise

    @classmethod
    def wrap_client(cls, transport: trio.SocketStream, context: ssl.SSLContext, *, server_hostname: str | None) -> TlsStream:
        """Take over a connected socket for a client-side TLS connection (SNI ``server_hostname``).

        As ``SSLContext.wrap_socket`` does, the name is sent as IDNA A-labels, and a context
        that checks host names needs one.

        Raises:
            ValueError: ``context.check_hostname`` is set and ``server_hostname`` is empty, or the
                name cannot be encoded.
        """
        if context.check_hostname and not server_hostname:
            raise ValueError("check_hostname requires server_hostname")
        hostname = server_hostname.encode("idna").decode("ascii") if server_hostname else None
        raw = _detach(transport)
        try:
            return cls(raw, context, server_side=False, server_hostname=hostname)
        except BaseException:
            raw.close()
            raise

    # --- what the handshake established ------------------------------------------------

    @property
    def context(self) -> ssl.SSLContext:
        """The connection's context (the SNI callback sets the certificate's)."""
        return self._sslobj.context  # type: ignore[no-any-return]

    @context.setter
    def context(self, ctx: ssl.SSLContext) -> None:
        self._sslobj.context = ctx

    def version(self) -> str | None:
        return self._sslobj.version()  # type: ignore[no-any-return]

    def cipher(self) -> tuple[str, str, int] | None:
        """The negotiated suite (already known after a failed handshake that got past the ServerHello)."""
        return self._sslobj.cipher()  # type: ignore[no-any-return]

    def selected_alpn_protocol(self) -> str | None:
        return self._sslobj.selected_alpn_protocol()  # type: ignore[no-any-return]

    def getpeercert(self, binary_form: bool = True) -> Any:
        return self._sslobj.getpeercert(binary_form)

    def peer_chains(self) -> tuple[list[Any], list[Any]]:
        """The chain the peer sent and the chain verification built (``_ssl.Certificate`` lists, leaf first)."""
        sslobj = self._sslobj
        return sslobj.get_unverified_chain() or [], sslobj.get_verified_chain() or []

    def pending(self) -> int:
        """Bytes of application data OpenSSL holds already decrypted."""
        return self._sslobj.pending()  # type: ignore[no-any-return]

    @property
    def session_reused(self) -> bool:
        return bool(self._sslobj.session_reused)

    def fileno(self) -> int:
        return self._sock.fileno()

    # --- I/O -------------------------------------------------------------------------

    async def do_handshake(self) -> None:
        """Run the handshake; a failure has already sent its alert (OpenSSL wrote it).

        Raises:
            trio.BrokenResourceError: the handshake failed (``__cause__`` is the ``ssl.SSLError``)
                or the connection broke.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        sslobj, sock = self._sslobj, self._sock
        waited = False
        while True:
            try:
                sslobj.do_handshake()
                break
            except ssl.SSLWantReadError:
                wait = trio.lowlevel.wait_readable
            except ssl.SSLWantWriteError:
                wait = trio.lowlevel.wait_writable
            except (ssl.SSLError, OSError) as exc:
                raise trio.BrokenResourceError(exc) from exc
            await wait(sock)  # outside the except clause: see receive_some
            waited = True
        if not waited:  # a wait was a schedule point already (a handshake always waits for the client's Finished)
            await trio.lowlevel.cancel_shielded_checkpoint()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        """Up to ``max_bytes`` of application data (at most one record, 16 KiB); ``b""`` at the end."""
        if self._receiving:
            raise trio.BusyResourceError("another task is already receiving on this TLS stream")
        self._receiving = True
        try:
            await trio.lowlevel.checkpoint_if_cancelled()
            if self._closed:
                raise trio.ClosedResourceError("the TLS stream was closed")
            sslobj, sock = self._sslobj, self._sock
            size = _RECEIVE_SIZE if max_bytes is None else _max_bytes(max_bytes)
            waited = False
            data: bytes
            while True:
                try:
                    data = sslobj.read(size)
                    break
                except ssl.SSLWantReadError:
                    wait = trio.lowlevel.wait_readable
                except ssl.SSLWantWriteError:  # a KeyUpdate to answer, say
                    wait = trio.lowlevel.wait_writable
                except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                    data = b""  # close_notify, or an end without it (HTTP framing tells a truncation)
                    break
                except (ssl.SSLError, OSError) as exc:
                    raise trio.BrokenResourceError(exc) from exc
                # Wait outside the except clause: an idle connection waits here for as long as the
                # client keeps it open, and inside the clause the exception would stay alive with
                # its traceback and ssl.py's frames (about 1 KB per idle connection, tracemalloc).
                if self._interrupted:
                    raise trio.ClosedResourceError("the receive was interrupted")
                await wait(sock)
                waited = True
            if not waited:
                await trio.lowlevel.cancel_shielded_checkpoint()
            return data
        finally:
            self._receiving = self._interrupted = False

    async def send_all(self, data: bytes | bytearray | memoryview, *, schedule: bool = True) -> None:
        """Send everything (several records when large); backpressure comes from the socket.

        Always a cancel point.  A send that did not have to wait yields to the scheduler once, as
        Trio's streams do, unless ``schedule`` is false: for a caller whose next step on this task is
        a receive on a stream — itself a schedule point — the yield would be a second one for
        nothing (~5 % of a proxied request; :func:`trio_gw.net.streams.send_before_receive`).
        """
        if self._sending:
            raise trio.BusyResourceError("another task is already sending on this TLS stream")
        self._sending = True
        try:
            await trio.lowlevel.checkpoint_if_cancelled()
            if self._closed:
                raise trio.ClosedResourceError("the TLS stream was closed")
            if self._send_broken:
                raise trio.BrokenResourceError("an earlier send was interrupted in the middle of a TLS record")
            sslobj, sock = self._sslobj, self._sock
            view = memoryview(data)
            waited = pending = False
            try:
                while view:
                    try:
                        sent = sslobj.write(view)
                    except ssl.SSLWantWriteError:
                        wait = trio.lowlevel.wait_writable
                    except ssl.SSLWantReadError:
                        wait = trio.lowlevel.wait_readable
                    except (ssl.SSLError, OSError) as exc:
                        raise trio.BrokenResourceError(exc) from exc
                    else:
                        pending = False
                        view = view[sent:]
                        continue
                    pending = True  # OpenSSL holds the record: only the same bytes may be retried
                    await wait(sock)  # outside the except clause: see receive_some
                    waited = True
            except BaseException:
                if pending:
                    # Cancelled while OpenSSL holds part of a record: SSL_write must be retried
                    # with that record's bytes, which the caller no longer sends (OpenSSL would
                    # answer "bad length").  As with trio.SSLStream, the stream cannot send again.
                    self._send_broken = True
                raise
            if not waited and schedule:
                await trio.lowlevel.cancel_shielded_checkpoint()
        finally:
            self._sending = False

    async def wait_send_all_might_not_block(self) -> None:
        if self._sending:
            raise trio.BusyResourceError("another task is already sending on this TLS stream")
        self._sending = True  # a send_all or send_eof meanwhile is a conflict, as in Trio's streams
        try:
            if self._closed:
                await trio.lowlevel.checkpoint()
                raise trio.ClosedResourceError("the TLS stream was closed")
            await trio.lowlevel.wait_writable(self._sock)
        finally:
            self._sending = False

    async def aclose(self) -> None:
        """close_notify, then linger until the peer closes (bounded), then close the socket."""
        if self._closed:
            await trio.lowlevel.checkpoint()
            return
        self._closed = True
        sock = self._sock
        trio.lowlevel.notify_closing(sock)  # a task blocked on it gets ClosedResourceError
        try:
            try:
                self._sslobj.shutdown()  # our close_notify; the peer's is not awaited
            except (ssl.SSLError, OSError, ValueError):
                pass
            await linger(sock)
        finally:
            sock.close()


async def linger(sock: socket.socket) -> None:
    """Half-close ``sock`` and drop what the peer still sends, until its end of stream, briefly.

    The bytes are read from the socket itself (``socket.socket.recv``: for a TLS socket,
    under OpenSSL — TLS is over).  Often the peer's end of stream is there already (it
    closed first): then nothing is waited for and no deadline is set up.  Otherwise at most
    :data:`LINGER_SECONDS`, at most :data:`LINGER_BYTES`.  Always a checkpoint.
    """
    try:
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        await trio.lowlevel.checkpoint()
        return  # the peer is gone already
    dropped = _drop_ready(sock)
    if dropped < 0:
        await trio.lowlevel.checkpoint()
        return
    with trio.CancelScope(deadline=trio.current_time() + LINGER_SECONDS):
        while dropped < LINGER_BYTES:
            await trio.lowlevel.wait_readable(sock)
            more = _drop_ready(sock)
            if more < 0:
                return
            dropped += more


def _drop_ready(sock: socket.socket) -> int:
    """Read and drop what the kernel holds now, without waiting.

    Returns:
        How many bytes were dropped; ``-1`` once the peer's end of stream or a reset was
        reached, or :data:`LINGER_BYTES` were dropped (nothing left to linger for).
    """
    dropped = 0
    while dropped < LINGER_BYTES:
        try:
            chunk = socket.socket.recv(sock, _RECEIVE_SIZE)
        except BlockingIOError:
            return dropped
        except OSError:
            return -1
        if not chunk:
            return -1
        dropped += len(chunk)
    return -1


def prepare_accepted(sock: socket.socket) -> None:
    """Make an accepted (or connected) stdlib socket non-blocking, with ``TCP_NODELAY``.

    Raises:
        OSError: the connection is already unusable (reset by the peer, say); the socket is left open.
    """
    sock.setblocking(False)
    set_nodelay(sock)


def _detach(transport: trio.SocketStream) -> socket.socket:
    """The stream's accepted or connected socket as a non-blocking stdlib socket with ``TCP_NODELAY``.

    The trio wrapper gives up its file descriptor; family and protocol are passed on, not read back
    from the kernel.

    Raises:
        OSError: the connection is already unusable (reset by the peer, say).
    """
    sock = transport.socket
    family, proto = sock.family, sock.proto
    raw = socket.socket(family, socket.SOCK_STREAM, proto, fileno=sock.detach())
    try:
        prepare_accepted(raw)
    except OSError:
        raw.close()
        raise
    return raw


def _max_bytes(value: int) -> int:
    """``receive_some``'s ``max_bytes``: a positive integer (as every Trio stream checks)."""
    size = operator.index(value)
    if size < 1:
        raise ValueError("max_bytes must be >= 1")
    return size
