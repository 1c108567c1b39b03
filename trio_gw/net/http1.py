"""The downstream HTTP/1.1 connection driver.

Theory of operation
-------------------
One task per client connection drives an ``h11.Connection(h11.SERVER)``:

    read head (client_header_timeout; keepalive_timeout while idle)
      → pin the generation current now       Proxy.generation
      → guards (smuggling, sizes)            http.guards
      → the whole decision                   decision.decide_request (pure)
      → answer it, or forward upstream       Proxy.forward (shared with HTTP/2)
      → access log line
      → next request on the same connection, or close

Every decision is taken by a pure module; this module only moves bytes and maps
IO failures to responses: connection refused → 502, timeouts → 504 (upstream)
or 408 (client), a peer protocol error → its h11 status hint.  A request runs
entirely on the generation it pinned, so a reload never changes it half-way.
"""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Sequence
from typing import Any

import h11
import trio

from trio_gw.decision import Answer
from trio_gw.http.errors import RequestRejected
from trio_gw.http.facts import ConnectionFacts, RequestFacts, body_framing
from trio_gw.http.guards import ChunkSizeGuard, check_request_head, origin_form
from trio_gw.http.headers import websocket_requested
from trio_gw.http.responses import error_response
from trio_gw.http.wire import splice, split_framing
from trio_gw.net.connection import close_stream
from trio_gw.net.contexts import TLS_RECEIVE_SIZE
from trio_gw.net.exchange import END_OF_MESSAGE, Exchange, Header, Proxy
from trio_gw.net.relay_errors import ClientGone, UpstreamFailure
from trio_gw.net.generation import Generation
from trio_gw.net.limits import DRAIN_IDLE_GRACE
from trio_gw.net.streams import send_before_receive

log = logging.getLogger("trio_gw.proxy")


class _H11Body:
    """The request body of an HTTP/1.1 request, read through h11.

    A chunked body's raw bytes also go through a :class:`ChunkSizeGuard`, which
    refuses a chunk size h11 would accept but no request could complete.
    """

    __slots__ = ("stream", "conn", "timeout", "guard")

    def __init__(
        self, stream: trio.abc.Stream, conn: h11.Connection, timeout: float, *, chunked: bool, max_body: int,
    ) -> None:
        self.stream = stream
        self.conn = conn
        self.timeout = timeout
        self.guard = ChunkSizeGuard(max_body) if chunked else None
        if self.guard is not None:
            self.guard.feed(conn.trailing_data[0])  # body bytes that came with the head

    async def receive(self) -> bytes | None:
        try:
            with trio.CancelScope(deadline=trio.current_time() + self.timeout) as scope:
                event = await _next_client_event(self.stream, self.conn, self.guard)
        except h11.RemoteProtocolError as exc:
            raise ClientGone(f"client body: {exc}", status=400, reason="bad_request") from exc
        if scope.cancelled_caught:
            raise ClientGone("client body timeout", status=408, reason="client_body_timeout")
        if isinstance(event, h11.Data):
            return event.data
        if isinstance(event, h11.EndOfMessage):
            return None
        raise ClientGone("client closed during the request body")


class _H11Sink:
    """The answer to an HTTP/1.1 request, serialised by h11 into one buffer.

    A write that cannot finish within ``send_timeout`` (a client that stopped
    reading) gives up — the relay's deadline says so — and the client is gone,
    and the upstream connection with it.
    During a drain the answer says ``Connection: close``, so the client sends no
    further request into a connection that is about to close.
    """

    __slots__ = ("stream", "conn", "out", "timeout", "proxy")

    def __init__(self, stream: trio.abc.Stream, conn: h11.Connection, timeout: float, proxy: Proxy) -> None:
        self.stream = stream
        self.conn = conn
        self.out = bytearray()
        self.timeout = timeout
        self.proxy = proxy

    @property
    def buffered(self) -> int:
        return len(self.out)

    @property
    def send_timeout(self) -> float:
        return self.timeout

    def head(self, status: int, headers: list[Header], reason: bytes) -> None:
        if self.proxy.draining:
            headers.append((b"connection", b"close"))
        # The upstream's fields, parsed (and validated) by h11: only the status line and the
        # framing go through h11 (its state, its framing rules); the rest is written once (http.wire).
        framing, lines = split_framing(headers)
        event = h11.Response(status_code=status, headers=framing, reason=reason, _parsed=True)
        self.out += splice(self.conn.send(event), lines)

    def data(self, data: bytes) -> None:
        self.out += self.conn.send(h11.Data(data=data))

    def end(self) -> None:
        self.out += self.conn.send(END_OF_MESSAGE)

    def switch(self, headers: list[Header], reason: bytes) -> None:
        """Buffer the upstream's 101: after it, the connection carries the upgraded protocol."""
        if self.conn.their_state is h11.SEND_BODY:
            self.conn.next_event()  # the body-less request's end, already in h11's buffer: no IO
        self.proxy.aborts.unwatch(self.stream)  # the tunnel reads the client itself
        self.out += self.conn.send(h11.InformationalResponse(status_code=101, headers=headers, reason=reason))

    def tunnel_ends(self) -> tuple[trio.abc.Stream, bytes]:
        """The client's stream and what it sent after its request, once switched."""
        return self.stream, bytes(self.conn.trailing_data[0])

    async def flush(self) -> None:
        """Send what is buffered; the caller's cancel scope holds the ``send_timeout`` deadline.

        The relay reads next (the upstream, or the client's next request): see :mod:`trio_gw.net.streams`.
        """
        if self.out:
            await send_before_receive(self.stream, self.out)
            self.out.clear()


class Http1Server:
    """Serves HTTP/1.1 client connections; shared by every proxy listener of a worker."""

    def __init__(self, proxy: Proxy) -> None:
        self.proxy = proxy

    async def serve_connection(self, stream: trio.abc.Stream, conn_facts: ConnectionFacts) -> None:
        """Run the request loop on one (possibly TLS) client stream until it closes."""
        proxy = self.proxy
        settings = proxy.generation.settings
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=settings.max_header_size)
        served = 0
        head_deadline = trio.current_time() + settings.client_header_timeout  # from the connection's start
        try:
            while True:  # during a drain: one more request if it is already on its way, answered with close
                if not conn.trailing_data[0]:
                    # Idle until the next request's first bytes (this frame waits, not _read_head's: an
                    # idle connection holds as little as it can). Closed to make room or by a drain,
                    # quietly at its deadline.
                    if proxy.draining:
                        idle_timeout = DRAIN_IDLE_GRACE
                    else:
                        idle_timeout = settings.keepalive_timeout if served else settings.client_header_timeout
                    data = await proxy.idle.receive(stream, TLS_RECEIVE_SIZE, idle_timeout)
                    if not data:
                        return  # its time was up, it was closed, or the client closed first
                    conn.receive_data(data)  # type: ignore[arg-type]  # h11 takes bytearray too
                if served:  # a keep-alive request's head has client_header_timeout from its first byte
                    head_deadline = trio.current_time() + settings.client_header_timeout
                request = await self._read_head(stream, conn, head_deadline)
                if request is None:
                    return
                gen = proxy.generation  # the request runs on the generation current at its head
                settings = gen.settings
                served += 1
                proxy.in_flight += 1
                try:
                    keep = await self._handle(stream, conn, request, gen, conn_facts)
                finally:
                    proxy.in_flight -= 1
                if not keep or served >= settings.keepalive_requests:
                    return
                if conn.our_state is h11.MUST_CLOSE or conn.their_state is not h11.DONE:
                    return
                conn.start_next_cycle()
                settings = proxy.generation.settings  # the idle wait's timeouts: the newest configuration's
                request = data = None  # an idle connection keeps neither the last head nor its bytes
        except (trio.BrokenResourceError, trio.ClosedResourceError, ClientGone, ssl.SSLError):
            return
        except Exception:
            # A bug must cost one connection, never the node: log it loudly and close.
            log.exception("unexpected error on a connection from %s", conn_facts.client_ip)
        finally:
            await close_stream(stream)

    async def _read_head(self, stream: trio.abc.Stream, conn: h11.Connection, deadline: float) -> h11.Request | None:
        """The request head whose first bytes h11 holds, by ``deadline``; None when the connection should close."""
        try:
            event = conn.next_event()
            if event is h11.NEED_DATA:  # the head did not come in one read: the rest under its deadline
                with trio.CancelScope(deadline=deadline) as scope:
                    while event is h11.NEED_DATA:
                        data = await stream.receive_some(TLS_RECEIVE_SIZE)
                        conn.receive_data(data)  # type: ignore[arg-type]
                        event = conn.next_event()
                if scope.cancelled_caught:
                    await _reject(stream, conn, 408, None, "client_timeout")
                    return None
        except h11.RemoteProtocolError as exc:
            await _reject(stream, conn, exc.error_status_hint, None, "bad_request")
            return None
        return event if isinstance(event, h11.Request) else None  # else ConnectionClosed

    async def _handle(
        self, stream: trio.abc.Stream, conn: h11.Connection, request: h11.Request, gen: Generation,
        conn_facts: ConnectionFacts,
    ) -> bool:
        """Answer one request; returns whether the connection may serve another."""
        proxy = self.proxy
        settings = gen.settings
        ex = Exchange(started=time.monotonic(), method=request.method.decode("ascii", "replace"),
                      target=request.target.decode("ascii", "replace"))
        if request.http_version != b"1.1":
            ex.protocol = "HTTP/" + request.http_version.decode("ascii", "replace")
        try:
            try:
                check_request_head(request, max_header_size=settings.max_header_size, max_headers=settings.max_headers,
                                   max_body_size=settings.client_max_body_size)
                target: bytes = request.target
                headers: Sequence[Header] = request.headers
                if target[0] != 47:  # not "/": absolute-form, the one other form the guard passes
                    target, headers = origin_form(target, headers)
                facts = RequestFacts.from_head(request.method, target, headers, protocol=conn_facts.protocol,
                                               sni=conn_facts.sni, header_names=gen.snapshot.router.header_names)
            except RequestRejected as exc:
                ex.status, ex.reason = exc.status, exc.reason
                await _reject(stream, conn, exc.status, exc.message, exc.reason, head=ex.method == "HEAD")
                return False
            chunked, length, upgrade = body_framing(request.headers)
            if upgrade:  # rare: only a WebSocket handshake over HTTP/1.1 is relayed as a switch
                upgrade = request.http_version == b"1.1" and websocket_requested(headers)
            decision = proxy.decide(facts, headers, conn_facts, gen, ex, method=request.method,
                                    chunked=chunked, upgrade=upgrade)
            if isinstance(decision, Answer) and decision.reason == "revocation_unknown":
                decision = await proxy.decide_settled(facts, headers, conn_facts, gen, ex,
                                                      method=request.method, chunked=chunked, upgrade=upgrade)
            if isinstance(decision, Answer):
                return await _answer(stream, conn, decision, ex, close=proxy.draining)
            if conn.they_are_waiting_for_100_continue:
                await stream.send_all(conn.send(h11.InformationalResponse(status_code=100, headers=[])))
            has_body = chunked or length > 0
            if not settings.proxy_ignore_client_abort:
                proxy.aborts.watch(stream, ex)  # until the finally below
            try:
                body = _H11Body(stream, conn, settings.client_body_timeout, chunked=chunked,
                                max_body=settings.client_max_body_size) if has_body else None
                uploaded = await proxy.forward(decision, gen, body=body, sink=_H11Sink(stream, conn, settings.send_timeout, proxy),
                                               ex=ex)
            except RequestRejected as exc:  # the body's framing, found while streaming it
                ex.status, ex.reason = exc.status, exc.reason
                await _reject(stream, conn, exc.status, exc.message, exc.reason)
                return False
            except UpstreamFailure as exc:
                ex.reason = exc.reason
                if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                    ex.status = exc.status
                    return await _answer(stream, conn, Answer(exc.status, exc.reason, exc.message), ex,
                                         close=proxy.draining)
                return False  # the response was cut short: the access log keeps the status the client got
            except ClientGone as exc:
                ex.status, ex.reason = ex.status or exc.status, ex.reason or exc.reason
                if exc.status in (400, 408):  # a stalled or broken body: answered, as nginx does, if still possible
                    await _reject(stream, conn, exc.status, None, exc.reason)
                raise
            if decision.upgrade and conn.our_state is h11.SWITCHED_PROTOCOL:  # a WebSocket tunnel ran to its end
                return False
            # The upstream answered before taking the whole body (e.g. 413): close.
            return uploaded and (conn.their_state is h11.DONE or await _discard_body(stream, conn))
        finally:
            proxy.aborts.unwatch(stream)
            proxy.record(conn_facts, ex)


async def _answer(stream: trio.abc.Stream, conn: h11.Connection, answer: Answer, ex: Exchange, *, close: bool) -> bool:
    """Send an answer the gateway gives itself; returns whether the connection may serve another."""
    keep = (conn.their_state is h11.DONE or await _discard_body(stream, conn)) and not close
    head_only = ex.method == "HEAD"
    ex.status = answer.status
    if answer.body is not None:  # the https redirect: exact body and headers
        headers = list(answer.headers) + ([] if keep else [(b"connection", b"close")])
        headers.append((b"content-length", str(len(answer.body)).encode()))
        response = h11.Response(status_code=answer.status, headers=headers)
        body = answer.body
    else:
        # A refusal may name connection options of its own (the ssl plugin's 426 says
        # "Connection: Upgrade" beside "Upgrade", RFC 9110 §7.8); "close" joins them.
        options = [v for n, v in answer.headers if n == b"connection"] + ([] if keep else [b"close"])
        fields = [h for h in answer.headers if h[0] != b"connection"]
        fields += [(b"connection", b", ".join(options))] if options else []
        response, body = error_response(answer.status, answer.message, reason=ex.reason, headers=fields)
        ex.bytes_out = 0 if head_only else len(body)
    await stream.send_all(_whole_response(conn, response, body, head=head_only))
    return keep


async def _reject(
    stream: trio.abc.Stream, conn: h11.Connection, status: int, message: str | None, reason: str,
    *, head: bool = False,
) -> None:
    """Answer a request that cannot be served and close (bad framing, oversize, timeout)."""
    if conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
        return
    response, body = error_response(status, message, reason=reason, headers=[(b"connection", b"close")])
    with trio.move_on_after(5):
        try:
            await stream.send_all(_whole_response(conn, response, body, head=head))
        except trio.BrokenResourceError:
            pass  # the client is gone: nothing to tell it


def _whole_response(conn: h11.Connection, response: h11.Response, body: bytes, *, head: bool) -> bytes:
    """Serialise a complete response; a HEAD response carries the length but no body."""
    out = conn.send(response)
    if body and not head:
        out += conn.send(h11.Data(data=body))
    return out + conn.send(END_OF_MESSAGE)


async def _next_client_event(stream: trio.abc.Stream, conn: h11.Connection, guard: ChunkSizeGuard | None = None) -> Any:
    while True:
        event = conn.next_event()
        if event is not h11.NEED_DATA:
            return event
        data = await stream.receive_some(TLS_RECEIVE_SIZE)
        if guard is not None:
            guard.feed(data)
        conn.receive_data(data)  # type: ignore[arg-type]  # h11 takes bytearray too


async def _discard_body(stream: trio.abc.Stream, conn: h11.Connection, limit: int = 1 << 20) -> bool:
    """Read and drop the rest of a request body (up to ``limit``) so the connection can be reused."""
    if conn.they_are_waiting_for_100_continue:
        return False  # never asked for the body: h11 would need it; close instead
    if conn.their_state is h11.DONE:
        return True
    try:
        event = conn.next_event()  # a body-less request's end is already there: no IO, no deadline
    except h11.RemoteProtocolError:
        return False
    if isinstance(event, h11.EndOfMessage):
        return True
    if isinstance(event, h11.Data):
        seen = len(event.data)
    elif event is not h11.NEED_DATA:
        return False
    else:
        seen = 0
    with trio.CancelScope(deadline=trio.current_time() + 5):
        while seen <= limit:
            try:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    event = await _next_client_event(stream, conn)
            except h11.RemoteProtocolError:
                return False
            if isinstance(event, h11.Data):
                seen += len(event.data)
            elif isinstance(event, h11.EndOfMessage):
                return True
            else:
                return False
    return False
