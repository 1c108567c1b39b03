"""Downstream HTTP/2 over TLS (ALPN ``h2``): each stream is one proxied request.

Theory of operation
-------------------
A proxy listener with the ``http2`` flag offers ALPN ``h2, http/1.1`` and hands
its connections to :meth:`Http2Server.serve_connection`: those that negotiated
``h2`` are served here, the others by the HTTP/1.1 driver
(:class:`trio_gw.net.http1.Http1Server`).

One sans-IO ``h2.connection.H2Connection`` per connection, driven by tasks of
one nursery:

* the *reader* feeds received bytes to h2 and dispatches its events: a request
  head starts a stream task; DATA is queued for that stream's body reader;
  RST_STREAM cancels the stream task, and with it its upstream exchange;
  WINDOW_UPDATE wakes the senders waiting for flow-control credit;
* the *writer* is the only task that calls ``send_all`` on the TLS stream.  A
  task that changed h2's state calls :meth:`_H2Connection.flush`, which wakes
  the writer and waits until what it queued is written (the backpressure).  A
  stream task cancelled by RST_STREAM thus never interrupts a write on the
  shared stream (a cancelled ``SSLStream.send_all`` breaks the connection);
* one *stream task* per request runs the HTTP/1.1 pipeline: the head becomes a
  request in HTTP/1.1 terms (:mod:`trio_gw.http.h2_request`: the same guards,
  statuses and reason codes), then :meth:`Proxy.decide` (the pure decision on
  the generation the stream pinned: routing, https enforcement, plugins with
  this connection's TLS facts, the upstream request head) and
  :meth:`Proxy.forward` (upstream pool, timeouts, error answers) with a body
  source and a response sink over this stream.

Flow control: received DATA is acknowledged (WINDOW_UPDATE) only once the body
reader took it for the upstream, so a slow upstream slows the client down and
a connection buffers at most :data:`CONNECTION_WINDOW`.  Response DATA is sent
within the client's windows; a sender without credit flushes and waits, at
most ``send_timeout`` between two window updates (nginx's name): a client that never opens its window (SETTINGS_INITIAL_WINDOW_SIZE
0) is stalled like one that stops sending its body, and the stream is reset,
so it cannot hold the stream and its upstream connection forever.

Closing: GOAWAY(NO_ERROR, last accepted stream) after the connection idled for
``keepalive_timeout`` (``client_header_timeout`` before its first request),
after ``keepalive_requests`` streams, and on graceful shutdown.  The GOAWAY
waits until the open streams are answered: h2's state machine (like every
client built on h2) refuses all frames once a GOAWAY went by
(python-hyper/h2#1181), so an early GOAWAY would cost the open streams.
Streams opened meanwhile are refused with REFUSED_STREAM, which tells the client
they were not processed and are safe to retry (RFC 9113 §8.7).  When the
gateway's drain deadline cancels the connection, the GOAWAY is still written,
with a short deadline.  A protocol error makes h2 queue a GOAWAY with its error
code: it is written and the connection closed, never an unhandled exception.  A
GOAWAY from the client ends the connection at once, for the same h2 reason.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from typing import TYPE_CHECKING

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
import trio
from h2.errors import ErrorCodes
from h2.settings import SettingCodes

from trio_gw.http.errors import RequestRejected
from trio_gw.http.facts import RequestFacts
from trio_gw.http.h2_request import parse_h2_request, pseudo_header
from trio_gw.http.headers import HOP_BY_HOP
from trio_gw.http.responses import error_body
from trio_gw.decision import Answer
from trio_gw.http.facts import ConnectionFacts
from trio_gw.net.connection import close_stream
from trio_gw.net.contexts import TLS_RECEIVE_SIZE
from trio_gw.net.exchange import Exchange, Header, Proxy
from trio_gw.net.relay_errors import ClientGone, UpstreamFailure
from trio_gw.net.http1 import Http1Server

if TYPE_CHECKING:
    from trio_gw.settings import Settings

log = logging.getLogger("trio_gw.h2")

#: Streams a client may have open at once (nginx's ``http2_max_concurrent_streams``).
MAX_CONCURRENT_STREAMS = 128
#: Receive window of each stream (SETTINGS_INITIAL_WINDOW_SIZE) and of the whole
#: connection: what one connection may have buffered before the upstream takes it.
INITIAL_WINDOW_SIZE = 256 * 1024
CONNECTION_WINDOW = 1024 * 1024
#: The connection window every HTTP/2 connection starts with (RFC 9113 §6.9.2).
_DEFAULT_WINDOW = 65535
#: How long the final GOAWAY may take to leave before the socket is closed.
GOAWAY_FLUSH_TIMEOUT = 1.0
_JSON_TYPE = (b"content-type", b"application/json; charset=utf-8")


def _expects_continue(headers: list[Header]) -> bool:
    return any(name == b"expect" and value.lower() == b"100-continue" for name, value in headers)


class Http2Server:
    """Serves the connections of proxy listeners with the ``http2`` flag."""

    def __init__(self, proxy: Proxy, http1: Http1Server) -> None:
        self.proxy = proxy
        self.http1 = http1

    async def serve_connection(self, stream: trio.abc.Stream, info: ConnectionFacts) -> None:
        """Serve ``stream`` with HTTP/2 when ALPN chose ``h2``, else with HTTP/1.1."""
        if info.alpn != "h2":
            await self.http1.serve_connection(stream, info)
            return
        try:
            await _H2Connection(self.proxy, stream, info).serve()
        except Exception:
            # A bug must cost one connection, never the node: log it loudly and close.
            log.exception("unexpected error on an HTTP/2 connection from %s", info.client_ip)
        finally:
            await close_stream(stream)


class _Stream:
    """One request stream: its task's cancel scope and its request body queue."""

    __slots__ = ("id", "scope", "chunks", "ended", "closed", "unacked", "waiter")

    def __init__(self, stream_id: int, *, ended: bool) -> None:
        self.id = stream_id
        self.scope = trio.CancelScope()
        #: Received DATA not yet taken by the body reader: (data, flow-controlled length).
        self.chunks: deque[tuple[bytes, int]] = deque()
        #: The client sent END_STREAM.
        self.ended = ended
        #: Our side is finished: we sent END_STREAM, or the stream was reset.
        self.closed = False
        #: Flow-controlled bytes taken by the body reader and not yet acknowledged.
        self.unacked = 0
        self.waiter: trio.Event | None = None

    def wake(self) -> None:
        if self.waiter is not None:
            self.waiter.set()


class _Body:
    """The request body of one stream, as :class:`trio_gw.net.exchange.BodySource`."""

    __slots__ = ("conn", "expected", "received", "st", "timeout", "max_body")

    def __init__(self, conn: _H2Connection, st: _Stream, timeout: float, expected: int | None, max_body: int) -> None:
        self.conn = conn
        self.st = st
        self.timeout = timeout
        #: The request's content-length, if any, and the body bytes received so far.
        self.expected = expected
        self.received = 0
        #: ``client_max_body_size`` (0: none); a content-length beyond it was refused with the head.
        self.max_body = max_body

    async def receive(self) -> bytes | None:
        st = self.st
        if st.unacked:  # the previous piece reached the upstream: give the client its credit back
            self.conn.acknowledge(st)
        if not st.chunks and not st.ended:
            deadline = trio.current_time() + self.timeout
            while not st.chunks and not st.ended:
                st.waiter = waiter = trio.Event()
                with trio.CancelScope(deadline=deadline):
                    await waiter.wait()
                st.waiter = None
                if not waiter.is_set():
                    raise ClientGone("client body timeout", status=408, reason="client_body_timeout")
        if not st.chunks:
            if self.expected is not None and self.received != self.expected:
                # Ended (by trailers) short of its content-length: malformed (RFC 9113 §8.1.1),
                # which h2 checks only when DATA ends the stream.
                self.conn.reset(st, ErrorCodes.PROTOCOL_ERROR)
                raise ClientGone("request body shorter than its content-length", status=400, reason="bad_request")
            return None
        parts = []
        while st.chunks:
            data, flow = st.chunks.popleft()
            parts.append(data)
            st.unacked += flow
            self.received += len(data)
        if self.max_body and self.received > self.max_body:  # none of this piece goes upstream
            raise ClientGone("request body beyond client_max_body_size", status=413, reason="body_too_large")
        return parts[0] if len(parts) == 1 else b"".join(parts)


class _Sink:
    """The answer on one stream, as :class:`trio_gw.net.exchange.ResponseSink`."""

    __slots__ = ("conn", "st", "head_block", "parts", "buffered", "ending", "started")

    def __init__(self, conn: _H2Connection, st: _Stream) -> None:
        self.conn = conn
        self.st = st
        self.head_block: list[Header] | None = None
        self.parts: list[bytes] = []
        self.buffered = 0
        self.ending = False
        #: The response head went out: too late for an error answer.
        self.started = False

    @property
    def send_timeout(self) -> float:
        return self.conn.settings.send_timeout

    def head(self, status: int, headers: list[Header], reason: bytes) -> None:
        # HTTP/1.1 names are lowercase already (h11); hop-by-hop fields are gone
        # (downstream_response_headers), so h2's own validation finds nothing.
        self.head_block = [(b":status", str(status).encode("ascii")), *headers]

    def data(self, data: bytes) -> None:
        self.parts.append(data)
        self.buffered += len(data)

    def end(self) -> None:
        self.ending = True

    async def flush(self) -> None:
        conn, st = self.conn, self.st
        if self.head_block is not None:
            block, self.head_block = self.head_block, None
            end = self.ending and not self.buffered
            conn.send_headers(st, block, end=end, upstream=True)
            self.started = True
        if self.buffered or (self.ending and not st.closed):
            data = self.parts[0] if len(self.parts) == 1 else b"".join(self.parts)
            self.parts.clear()
            self.buffered = 0
            await conn.send_data(st, data, end=self.ending)
        await conn.flush()


class _H2Connection:
    """One client connection speaking HTTP/2 (see the module docstring)."""

    def __init__(self, proxy: Proxy, transport: trio.abc.Stream, info: ConnectionFacts) -> None:
        self.proxy = proxy
        self.transport = transport
        self.info = info
        self.settings: Settings = proxy.generation.settings
        config = h2.config.H2Configuration(client_side=False, header_encoding=None)
        self.h2 = h2.connection.H2Connection(config)
        max_header_size = self.settings.max_header_size
        self.h2.local_settings = h2.settings.Settings(client=False, initial_values={
            SettingCodes.MAX_CONCURRENT_STREAMS: MAX_CONCURRENT_STREAMS,
            SettingCodes.MAX_HEADER_LIST_SIZE: max_header_size,
            SettingCodes.INITIAL_WINDOW_SIZE: INITIAL_WINDOW_SIZE,
        })
        # The hard limit on a decoded header list (HPACK bombs): a connection error.
        # Between the advertised size and this, the guard answers 431 on the stream.
        self.h2.decoder.max_header_list_size = 2 * max_header_size + 32 * self.settings.max_headers
        self.streams: dict[int, _Stream] = {}
        self.served = 0
        self.last_stream_id = 0
        self.closing = False
        self.terminated = False
        self.broken = False
        self._nursery: trio.Nursery | None = None
        self._read_scope: trio.CancelScope | None = None
        self._idle_since = trio.current_time()
        self._window_opened = trio.Event()
        # The writer: the flush tickets requested and written so far.
        self._requested = 0
        self._written = 0
        #: What the writer took from h2 and has not finished writing (lost if it is cancelled).
        self._unsent = b""
        self._writer_wakeup = trio.Event()
        self._progress = trio.Event()

    # --- the connection -----------------------------------------------------------

    async def serve(self) -> None:
        """Serve streams until the client leaves, an error, or GOAWAY after idling/draining."""
        self.h2.initiate_connection()
        self.h2.increment_flow_control_window(CONNECTION_WINDOW - _DEFAULT_WINDOW)
        # With no stream open the connection is idle: it may be closed (GOAWAY) to make room.
        self.proxy.idle.enter(self, self._begin_close)
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._writer)
                nursery.start_soon(self._watch_drain)
                self.kick()
                await self._read_loop()
                await self._goodbye()
                nursery.cancel_scope.cancel()
        finally:
            self.proxy.idle.leave(self)
            if not self.broken and self.h2.state_machine.state is not h2.connection.ConnectionState.CLOSED:
                await self._last_goaway()

    async def _last_goaway(self) -> None:
        """Cancelled (drain deadline, node stopping): still tell the client, briefly."""
        self.h2.close_connection(ErrorCodes.NO_ERROR, last_stream_id=self.last_stream_id)
        # A write cancelled before it began (SSLStream checks for cancellation first) left
        # the stream usable and the frames h2 already counted as sent unwritten: they go
        # first, or the client would miss them (even the SETTINGS that must open the
        # connection).  A write cancelled midway broke the stream: this one fails too.
        data, self._unsent = self._unsent + self.h2.data_to_send(), b""
        with trio.CancelScope(shield=True, deadline=trio.current_time() + GOAWAY_FLUSH_TIMEOUT):
            try:
                await self.transport.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError, trio.BusyResourceError):
                pass  # the writer was cut off mid-write, or the client is gone: nothing to tell it

    async def _read_loop(self) -> None:
        while not (self.closing and not self.streams):
            with trio.CancelScope(deadline=self._idle_deadline()) as scope:
                self._read_scope = scope
                try:
                    data = await self.transport.receive_some(TLS_RECEIVE_SIZE)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    return
                finally:
                    self._read_scope = None
            if scope.cancelled_caught:
                self.closing = True  # idle for too long, or draining with nothing open
                continue
            if not data:
                return  # the client closed its side
            try:
                events = self.h2.receive_data(data)
            except h2.exceptions.ProtocolError as exc:
                # h2 queued GOAWAY with the error code; _goodbye writes it.
                log.info("HTTP/2 protocol error from %s: %s", self.info.client_ip, exc)
                return
            for event in events:
                self._dispatch(event)
            if self.terminated:
                return
            await self.flush()

    def _idle_deadline(self) -> float:
        if self.streams:
            return math.inf
        if self.closing:
            return -math.inf
        s = self.settings
        timeout: float = s.client_header_timeout if self.served == 0 else s.keepalive_timeout
        return self._idle_since + timeout

    async def _watch_drain(self) -> None:
        await self.proxy.drain_started.wait()
        self._begin_close()

    def _begin_close(self) -> None:
        """Accept no more streams; GOAWAY follows once the open ones are answered."""
        self.closing = True
        if not self.streams and self._read_scope is not None:
            self._read_scope.cancel()

    async def _goodbye(self) -> None:
        """The final GOAWAY (h2's, after a protocol error), written with a short deadline."""
        if self.broken:
            return
        if self.h2.state_machine.state is not h2.connection.ConnectionState.CLOSED:
            self.h2.close_connection(ErrorCodes.NO_ERROR, last_stream_id=self.last_stream_id)
        with trio.move_on_after(GOAWAY_FLUSH_TIMEOUT):
            try:
                await self.flush()
            except ClientGone:
                pass  # the client is gone: nothing to tell it

    # --- events -------------------------------------------------------------------

    def _dispatch(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.RequestReceived):
            self._start_stream(event)
        elif isinstance(event, h2.events.DataReceived):
            st = self.streams.get(event.stream_id)
            if st is not None and not st.closed and event.data:
                st.chunks.append((event.data, event.flow_controlled_length))
                st.wake()
            elif event.flow_controlled_length:
                # nobody will read it (answered already, or padding only): credit back now
                self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        elif isinstance(event, h2.events.StreamEnded):
            st = self.streams.get(event.stream_id)
            if st is not None:
                st.ended = True
                st.wake()
        elif isinstance(event, h2.events.StreamReset):
            st = self.streams.get(event.stream_id)
            if st is not None:
                st.closed = True
                st.scope.cancel()  # cancels the upstream exchange too
        elif isinstance(event, (h2.events.WindowUpdated, h2.events.RemoteSettingsChanged)):
            self._window_opened.set()
            self._window_opened = trio.Event()
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.terminated = True
        # Nothing to do for the rest: h2 answers PING and acknowledges SETTINGS
        # itself; trailers are not forwarded (as on HTTP/1.1); priorities are advisory.

    def _start_stream(self, event: h2.events.RequestReceived) -> None:
        sid = event.stream_id
        if self.closing:
            self._reset(sid, ErrorCodes.REFUSED_STREAM)
            return
        assert self._nursery is not None
        st = _Stream(sid, ended=event.stream_ended is not None)
        self.streams[sid] = st
        self.proxy.idle.leave(self)
        self.served += 1
        self.last_stream_id = sid
        self.proxy.in_flight += 1
        if self.served >= self.settings.keepalive_requests:
            self._begin_close()
        self._nursery.start_soon(self._run_stream, st, event.headers)

    def _finish_stream(self, st: _Stream) -> None:
        del self.streams[st.id]
        self.proxy.in_flight -= 1
        unread = st.unacked + sum(flow for _, flow in st.chunks)
        st.chunks.clear()
        if unread:
            self.h2.acknowledge_received_data(unread, st.id)
        if not st.closed:
            self._reset(st.id, ErrorCodes.INTERNAL_ERROR)  # our answer is incomplete
        elif not st.ended:
            # Answered before the whole request body arrived: ask the client to stop
            # sending it, without error (RFC 9113 §8.1).
            self._reset(st.id, ErrorCodes.NO_ERROR)
        if not self.streams:
            self._idle_since = trio.current_time()
            if not self.closing:
                self.proxy.idle.enter(self, self._begin_close)
            if self._read_scope is not None:
                self._read_scope.deadline = self._idle_deadline()
        self.kick()

    def reset(self, st: _Stream, code: ErrorCodes) -> None:
        """Reset ``st`` now (a malformed request): nothing more is sent on it."""
        st.closed = True
        self._reset(st.id, code)
        self.kick()

    def _reset(self, stream_id: int, code: ErrorCodes) -> None:
        try:
            self.h2.reset_stream(stream_id, code)
        except h2.exceptions.ProtocolError:
            pass  # the stream or the connection is closed already: there is nothing to reset

    def acknowledge(self, st: _Stream) -> None:
        """Hand back the flow-control credit of what the body reader took (WINDOW_UPDATE)."""
        unacked, st.unacked = st.unacked, 0
        self.h2.acknowledge_received_data(unacked, st.id)
        self.kick()

    # --- one stream -------------------------------------------------------------

    async def _run_stream(self, st: _Stream, headers: list[Header]) -> None:
        try:
            with st.scope:
                await self._serve_stream(st, headers)
        except Exception:
            # A bug must cost one stream, never the connection: log it loudly and reset.
            log.exception("unexpected error on HTTP/2 stream %d from %s", st.id, self.info.client_ip)
        finally:
            self._finish_stream(st)

    async def _serve_stream(self, st: _Stream, headers: list[Header]) -> None:
        proxy, info = self.proxy, self.info
        gen = proxy.generation  # the request runs on the generation current at its head
        settings = gen.settings
        ex = Exchange(started=time.monotonic(), protocol="HTTP/2")
        ex.method = (pseudo_header(headers, b":method") or b"-").decode("ascii", "replace")
        ex.target = (pseudo_header(headers, b":path") or b"-").decode("ascii", "replace")
        try:
            try:
                head = parse_h2_request(headers, max_header_size=settings.max_header_size,
                                        max_headers=settings.max_headers, max_body_size=settings.client_max_body_size)
                facts = RequestFacts.from_head(
                    head.method, head.target, head.headers, protocol="https" if info.tls else "http",
                    sni=info.sni, header_names=gen.snapshot.router.header_names,
                )
                if head.content_length and st.ended and not st.chunks:
                    # END_STREAM with the head yet a content-length: malformed (RFC 9113
                    # §8.1.1); h2 checks the length only against DATA frames.
                    raise RequestRejected(400, "Bad request", reason="bad_content_length", close=False)
            except RequestRejected as exc:
                ex.reason = exc.reason
                await self._answer(st, ex, Answer(exc.status, exc.reason, exc.message))
                return
            has_body = bool(st.chunks or not st.ended) and head.content_length != 0
            decision = proxy.decide(facts, head.headers, info, gen, ex, method=head.method,
                                    chunked=has_body and head.content_length is None)
            if isinstance(decision, Answer) and decision.reason == "revocation_unknown":
                decision = await proxy.decide_settled(facts, head.headers, info, gen, ex, method=head.method,
                                                      chunked=has_body and head.content_length is None)
            if isinstance(decision, Answer):
                await self._answer(st, ex, decision)
                return
            if has_body and not st.chunks and _expects_continue(head.headers):
                # the client waits for this before sending the body (RFC 9110 §10.1.1)
                self.send_headers(st, [(b":status", b"100")], end=False)
                await self.flush()
            sink = _Sink(self, st)
            try:
                await proxy.forward(
                    decision, gen,
                    body=_Body(self, st, settings.client_body_timeout, head.content_length,
                               settings.client_max_body_size) if has_body else None,
                    sink=sink, ex=ex,
                )
            except UpstreamFailure as exc:
                ex.reason = exc.reason
                if not sink.started:
                    ex.status = exc.status
                    await self._answer(st, ex, Answer(exc.status, exc.reason, exc.message))
                # else: the stream is reset (INTERNAL_ERROR) when it finishes; the access log keeps the
                # status the client got
        except ClientGone as exc:  # the stream is reset when it finishes, unless answered here
            ex.status, ex.reason = ex.status or exc.status, ex.reason or exc.reason
            if exc.status in (408, 413) and not ex.upstream_answered:  # a stalled or too large body: answered
                try:
                    await self._answer(st, ex, Answer(exc.status, exc.reason, None))
                except ClientGone:
                    pass
        finally:
            if not ex.status and st.scope.cancel_called:  # the client reset the stream before any answer
                ex.status, ex.reason = 499, ex.reason or "client_closed"
            proxy.record(info, ex)

    async def _answer(self, st: _Stream, ex: Exchange, answer: Answer) -> None:
        """Send an answer the gateway makes itself (JSON error, redirect)."""
        # Connection-specific fields (the 426's Upgrade) do not exist in HTTP/2 (RFC 9113 §8.2.2).
        fields = [h for h in answer.headers if h[0] not in HOP_BY_HOP]
        if answer.body is None:
            body = error_body(answer.status, answer.message, answer.reason)
            fields.insert(0, _JSON_TYPE)
        else:
            body = answer.body
        fields.append((b"content-length", str(len(body)).encode("ascii")))
        ex.status = answer.status
        head_only = ex.method == "HEAD"
        send = b"" if head_only else body
        ex.bytes_out = len(send)
        self.send_headers(st, [(b":status", str(answer.status).encode("ascii")), *fields], end=not send)
        if send:
            await self.send_data(st, send, end=True)
        await self.flush()

    # --- sending ------------------------------------------------------------------

    def send_headers(self, st: _Stream, block: list[Header], *, end: bool, upstream: bool = False) -> None:
        """Queue a response head on ``st``.

        Raises:
            ClientGone: the stream or the connection is closed.
            UpstreamFailure: h2 refused an upstream's header field (``upstream``).
        """
        try:
            self.h2.send_headers(st.id, block, end_stream=end)
        except h2.exceptions.ProtocolError as exc:
            closed = isinstance(exc, h2.exceptions.StreamClosedError) or st.closed
            if upstream and not closed and self.h2.state_machine.state is not h2.connection.ConnectionState.CLOSED:
                raise UpstreamFailure(502, "upstream_protocol_error") from exc
            raise ClientGone("HTTP/2 stream closed") from exc
        if end:
            st.closed = True

    async def send_data(self, st: _Stream, data: bytes, *, end: bool) -> None:
        """Queue ``data`` on ``st`` within the client's flow-control windows.

        Raises:
            ClientGone: the stream or the connection is closed, or the client gave
                no credit for ``send_timeout``.
        """
        view = memoryview(data)
        h = self.h2
        while True:
            opened = self._window_opened
            try:
                size = min(h.local_flow_control_window(st.id), len(view), h.max_outbound_frame_size)
                if size <= 0 and view:
                    # No credit: let the client see what is queued, then wait for WINDOW_UPDATE.
                    await self.flush()
                    with trio.move_on_after(self.settings.send_timeout):
                        await opened.wait()
                    if not opened.is_set():
                        raise ClientGone("no flow-control credit from the client", reason="client_send_timeout")
                    continue
                last = size == len(view)
                h.send_data(st.id, view[:size], end_stream=end and last)
            except h2.exceptions.ProtocolError as exc:
                raise ClientGone("HTTP/2 stream closed") from exc
            view = view[size:]
            if last:
                break
        if end:
            st.closed = True

    def kick(self) -> int:
        """Ask the writer to write what h2 has queued; returns the flush ticket."""
        self._requested += 1
        self._writer_wakeup.set()
        return self._requested

    async def flush(self) -> None:
        """Wait until everything queued so far is written (backpressure).

        Raises:
            ClientGone: the connection broke.
        """
        ticket = self.kick()
        while self._written < ticket and not self.broken:
            await self._progress.wait()
        if self.broken:
            raise ClientGone("HTTP/2 connection lost")

    async def _writer(self) -> None:
        """The only task writing to the TLS stream."""
        assert self._nursery is not None
        while True:
            if self._written == self._requested:
                self._writer_wakeup = trio.Event()
                await self._writer_wakeup.wait()
                continue
            ticket = self._requested
            data = self.h2.data_to_send()
            if data:
                self._unsent = data
                try:
                    # A client that stops reading loses the connection after send_timeout
                    # (a cancelled TLS write breaks the stream: nothing more can be sent).
                    with trio.fail_after(self.settings.send_timeout):
                        await self.transport.send_all(data)
                except (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError):
                    self.broken = True
                    self._progress.set()
                    self._nursery.cancel_scope.cancel()
                    return
                self._unsent = b""
            self._written = ticket
            self._progress.set()
            self._progress = trio.Event()
