"""HTTP/2 to upstreams (Tyk ``proxy_enable_http2``): one request at a time on a pooled connection.

Theory of operation
-------------------
With ``proxy_enable_http2 on`` the client contexts of https services offer
ALPN ``h2, http/1.1``; an upstream that picks ``h2`` gets an
:class:`H2Upstream` on its :class:`~trio_gw.net.upstream.UpstreamConnection`,
one that picks ``http/1.1`` (or nothing) is spoken to in HTTP/1.1 as before.

A connection carries one stream at a time and goes back to the pool when its
stream has ended both ways, like an HTTP/1.1 connection and like nginx's
``grpc_pass`` and ``proxy_http_version``: the pool's size, idle timeout and
request limit apply unchanged, and the exchange keeps the HTTP/1.1 one's
shape: one cancel scope whose deadline follows what is awaited (the
upstream's ``write_timeout`` while sending, ``read_timeout`` per read, the
client's ``send_timeout`` per flush).  Only the relay reads from the socket;
while a request body is uploaded, both the relay (WINDOW_UPDATE and SETTINGS
acknowledgements) and the upload write, so writes go through one lock.

Flow control: the upload sends DATA only within the stream's and the
connection's send windows (h2's ``local_flow_control_window``), waiting for
the relay to see a WINDOW_UPDATE; received DATA is acknowledged once it was
handed to the client's sink, whose flush before every read is the
backpressure, so a slow client slows the upstream down.

Failures keep the HTTP/1.1 reason codes: a stream the upstream refused
(``REFUSED_STREAM``) or left out of its GOAWAY was not processed, so on a
reused connection it is retried on a new one (``_may_retry``); any other
reset or a close before the answer is ``upstream_closed`` (502), a frame or a
field HTTP/2 forbids ``upstream_protocol_error``; after the answer started,
the client's response is cut as when an HTTP/1.1 upstream closes mid-body.  A connection that saw a GOAWAY, an error
or a stream that did not end cleanly is never pooled again; nor is one on which
the upstream sent anything while it sat idle (a PING, a GOAWAY): the pool's
liveness check counts unread bytes as the end of a connection, for both
protocols, so such a connection costs a new handshake, never a failed request.
"""

from __future__ import annotations

import ssl
import time
from typing import TYPE_CHECKING

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import trio
from h2.errors import ErrorCodes
from h2.settings import SettingCodes

from trio_gw.http.h2_upstream import MalformedResponse, h2_request_fields, h2_response_head, reason_phrase
from trio_gw.http.headers import downstream_response_headers
from trio_gw.net.contexts import TLS_RECEIVE_SIZE
from trio_gw.net.deadlines import move_deadline
from trio_gw.net.relay_errors import ClientGone, UpstreamFailure

if TYPE_CHECKING:
    from trio_gw.decision import Forward
    from trio_gw.net.exchange import BodySource, Exchange, ResponseSink
    from trio_gw.net.tls_client import UpstreamPlan
    from trio_gw.net.upstream import UpstreamConnection, UpstreamPool

__all__ = ["H2Upstream", "forward_h2"]
#: Receive window per stream and for the connection: how much of an answer may be in flight.
STREAM_WINDOW = 256 * 1024
CONNECTION_WINDOW = 1024 * 1024
_DEFAULT_WINDOW = 65535


class H2Upstream:
    """The HTTP/2 client state of one upstream connection."""

    __slots__ = ("conn", "usable", "write_lock", "window_waiter")

    def __init__(self) -> None:
        config = h2.config.H2Configuration(client_side=True, header_encoding=None)
        self.conn = h2.connection.H2Connection(config)
        self.conn.initiate_connection()
        self.conn.update_settings({SettingCodes.ENABLE_PUSH: 0, SettingCodes.INITIAL_WINDOW_SIZE: STREAM_WINDOW})
        self.conn.increment_flow_control_window(CONNECTION_WINDOW - _DEFAULT_WINDOW)
        #: False once the connection may not carry another stream (GOAWAY, error, unfinished stream).
        self.usable = True
        self.write_lock = trio.Lock()
        #: Set by the relay when the upstream opens a send window; the upload waits on it.
        self.window_waiter: trio.Event | None = None

    async def send_pending(self, stream: trio.abc.Stream) -> None:
        """Write what h2 has queued (the preface, frames, acknowledgements)."""
        async with self.write_lock:
            data = self.conn.data_to_send()
            if data:
                await stream.send_all(data)

    def window_opened(self) -> None:
        if self.window_waiter is not None:
            self.window_waiter.set()
            self.window_waiter = None


async def forward_h2(
    upstream: UpstreamConnection, fwd: Forward, body: BodySource | None, sink: ResponseSink, plan: UpstreamPlan,
    ex: Exchange, pool: UpstreamPool,
) -> bool:
    """Send ``fwd`` as one HTTP/2 stream and relay the answer into ``sink``.

    The connection is handed back to ``pool`` (or closed) once the stream has
    ended both ways; ``ex.upstream_released`` then says it is no longer the
    caller's.

    Returns:
        Whether the request body was sent to its end.

    Raises:
        UpstreamFailure: the upstream failed, with the HTTP/1.1 reason codes:
            before anything was relayed (``ex.status`` is 0), or after the
            head, when the client's response is cut short.
        ClientGone: the client stalled or went away.
    """
    state = upstream.h2
    assert state is not None
    conn = state.conn
    stream_id = conn.get_next_available_stream_id()
    try:
        conn.send_headers(stream_id, h2_request_fields(fwd.method, fwd.target, fwd.headers), end_stream=body is None)
    except h2.exceptions.ProtocolError as exc:  # h2 refused the head here (its state or a field): nothing was sent
        state.usable = False
        raise UpstreamFailure(502, "upstream_protocol_error") from exc
    upstream.requests += 1
    uploaded = body is None
    failure: list[BaseException] = []
    with trio.CancelScope(deadline=trio.current_time() + plan.write_timeout) as scope:
        relay = _Relay(upstream, state, stream_id, sink, plan, ex, scope)
        try:
            await state.send_pending(upstream.stream)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            state.usable = False
            raise UpstreamFailure(502, "upstream_write_failed") from exc
        if body is None:
            try:
                await relay.run()
            except BaseException:
                state.usable = False  # mid-stream: the connection's state is not reusable
                raise
        else:
            async with trio.open_nursery() as nursery:

                async def upload() -> None:
                    nonlocal uploaded
                    try:
                        uploaded = await _upload(upstream, state, stream_id, body, plan, ex)
                    except Exception as exc:  # re-raised after the nursery: callers never see an ExceptionGroup
                        failure.append(exc)
                        nursery.cancel_scope.cancel()

                nursery.start_soon(upload)
                try:
                    await relay.run()
                except Exception as exc:
                    failure.insert(0, exc)
                nursery.cancel_scope.cancel()  # an answer before the whole body: stop uploading
    if failure:
        state.usable = False
        raise failure[0]
    if scope.cancelled_caught:
        state.usable = False
        if relay.waiting == "send":
            raise ClientGone("client send timeout", reason="client_send_timeout")
        raise UpstreamFailure(504, "upstream_write_timeout" if relay.waiting == "write" else "upstream_read_timeout")
    if not uploaded:
        state.usable = False  # the stream is still open our way: never reused
        try:
            conn.reset_stream(stream_id, ErrorCodes.NO_ERROR)  # RFC 9113 §8.1: we stop sending
        except h2.exceptions.ProtocolError:
            pass
    if state.usable and conn.open_outbound_streams == 0 and conn.open_inbound_streams == 0 and pool.give_back(upstream):
        ex.upstream_released = True
    return uploaded


async def _upload(
    upstream: UpstreamConnection, state: H2Upstream, stream_id: int, body: BodySource, plan: UpstreamPlan,
    ex: Exchange,
) -> bool:
    """Send the client's body as DATA within the upstream's windows; END_STREAM after the last chunk.

    Returns whether the whole body went out.  When the upstream closed the stream
    or the connection meanwhile (a complete early answer and RST_STREAM, RFC 9113
    §8.1, or a GOAWAY), h2 refuses the next frame and the upload just stops: the
    relay, which read that frame, tells what became of the request.
    """
    conn = state.conn
    with trio.CancelScope() as scope:
        try:
            while True:
                chunk = await body.receive()
                scope.deadline = trio.current_time() + plan.write_timeout
                if chunk is None:
                    conn.end_stream(stream_id)
                    await _write(upstream, state)
                    return True
                ex.bytes_in += len(chunk)
                view = memoryview(chunk)
                while view:
                    window = min(conn.local_flow_control_window(stream_id), conn.max_outbound_frame_size)
                    if window <= 0:
                        waiter = state.window_waiter = trio.Event()
                        await _write(upstream, state)
                        await waiter.wait()
                        continue
                    conn.send_data(stream_id, bytes(view[:window]))
                    view = view[window:]
                    await _write(upstream, state)
                scope.deadline = float("inf")
        except h2.exceptions.ProtocolError:
            return False
    raise UpstreamFailure(504, "upstream_write_timeout")  # only reached when the deadline expired


async def _write(upstream: UpstreamConnection, state: H2Upstream) -> None:
    try:
        await state.send_pending(upstream.stream)
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
        raise UpstreamFailure(502, "upstream_write_failed") from exc


class _Relay:
    """Reads the upstream's frames and relays this stream's answer (the only reader of the socket)."""

    __slots__ = ("upstream", "state", "stream_id", "sink", "plan", "ex", "scope", "waiting", "started", "ended")

    def __init__(self, upstream: UpstreamConnection, state: H2Upstream, stream_id: int, sink: ResponseSink,
                 plan: UpstreamPlan, ex: Exchange, scope: trio.CancelScope) -> None:
        self.upstream, self.state, self.stream_id = upstream, state, stream_id
        self.sink, self.plan, self.ex, self.scope = sink, plan, ex, scope
        self.waiting = "write"
        self.started = False
        #: The answer's END_STREAM was read: what follows for this stream (a reset) cannot undo it.
        self.ended = False

    async def run(self) -> None:
        """Relay until this stream's END_STREAM (or a failure, raised)."""
        state, conn, sink, scope = self.state, self.state.conn, self.sink, self.scope
        while True:
            if sink.buffered:
                self.waiting = "send"
                move_deadline(scope, sink.send_timeout)
                await sink.flush()
            self.waiting = "read"
            move_deadline(scope, self.plan.read_timeout)
            try:
                data = await self.upstream.stream.receive_some(TLS_RECEIVE_SIZE)
            except (trio.BrokenResourceError, ssl.SSLError, OSError) as exc:
                state.usable = False
                raise self._closed() from exc
            except trio.ClosedResourceError:
                state.usable = False
                if self.ex.client_closed:
                    raise ClientGone("the client closed its connection while its request waited on the upstream") from None
                raise
            if not data:
                state.usable = False
                raise self._closed()
            self.upstream.received += len(data)
            try:
                events = conn.receive_data(data)
            except h2.exceptions.ProtocolError as exc:  # e.g. a connection-specific field in the answer
                state.usable = False
                raise UpstreamFailure(502, "upstream_protocol_error") from exc
            ended = False
            try:
                for event in events:
                    ended = self._dispatch(event) or ended
            except UpstreamFailure:
                if sink.buffered:  # the head and data that came before a reset in the same read go out first
                    self.waiting = "send"
                    move_deadline(scope, sink.send_timeout)
                    try:
                        await sink.flush()
                    except ClientGone:
                        pass  # the client is gone as well: the upstream's failure is still the one to report
                raise
            self.waiting = "write"
            move_deadline(scope, self.plan.write_timeout)
            await _write(self.upstream, state)  # acknowledgements, window updates
            if ended:
                self.waiting = "send"
                move_deadline(scope, sink.send_timeout)
                await sink.flush()
                return

    def _closed(self) -> UpstreamFailure:
        return UpstreamFailure(502, "upstream_closed")

    def _dispatch(self, event: h2.events.Event) -> bool:
        """Handle one h2 event; True when this stream's answer ended."""
        state, sink = self.state, self.sink
        if isinstance(event, (h2.events.WindowUpdated, h2.events.RemoteSettingsChanged)):
            state.window_opened()
            return False
        if isinstance(event, h2.events.ConnectionTerminated):
            state.usable = False
            if event.last_stream_id is not None and event.last_stream_id < self.stream_id:
                self.upstream.received = 0  # never processed: a reused connection may retry it
                raise UpstreamFailure(502, "upstream_closed")
            return False  # our stream is still answered
        if getattr(event, "stream_id", self.stream_id) != self.stream_id:
            return False
        if isinstance(event, h2.events.ResponseReceived):
            try:
                status, fields = h2_response_head(event.headers)
            except MalformedResponse as exc:
                state.usable = False
                raise UpstreamFailure(502, "upstream_protocol_error") from exc
            self.ex.status = status
            self.ex.upstream_answered = time.monotonic()
            sink.head(status, downstream_response_headers(fields, no_content=status == 204), reason_phrase(status))
            self.started = True
        elif isinstance(event, h2.events.DataReceived):
            self.ex.bytes_out += len(event.data)
            if event.data:
                sink.data(event.data)
            state.conn.acknowledge_received_data(event.flow_controlled_length, self.stream_id)
        elif isinstance(event, h2.events.StreamEnded):
            if not self.started:
                state.usable = False
                raise UpstreamFailure(502, "upstream_protocol_error")
            sink.end()
            self.ended = True
            return True
        elif isinstance(event, h2.events.StreamReset):
            if self.ended:  # RFC 9113 §8.1: a complete answer, then "stop sending" (the upload stops)
                state.usable = False
                return False
            if not self.started:
                if event.error_code == ErrorCodes.REFUSED_STREAM:
                    self.upstream.received = 0  # RFC 9113 §8.7: not processed, safe to retry
                raise UpstreamFailure(502, "upstream_closed", detail="the upstream reset the stream "
                                      f"({_error_name(event.error_code)}) before answering")
            raise UpstreamFailure(502, "upstream_closed", detail="the upstream reset the stream "
                                  f"({_error_name(event.error_code)}) before its response was complete")
        return False  # 1xx (InformationalResponseReceived), trailers (not forwarded), settings acks, pings


def _error_name(code: object) -> str:
    """An RST_STREAM's error code for the error log: its name (``INTERNAL_ERROR``), or the number h2 did not know."""
    return code.name if isinstance(code, ErrorCodes) else f"error code {code}"
