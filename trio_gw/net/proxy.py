"""The downstream HTTP/1.1 loop and the reverse proxy exchange shared with HTTP/2.

Theory of operation
-------------------
One task per client connection drives an ``h11.Connection(h11.SERVER)``:

    read head (client_header_timeout; keepalive_timeout while idle)
      → guards (smuggling, sizes)            http.guards
      → route on the current snapshot         ProxyServer.route (shared)
      → https enforcement                     http.routing.https_redirect
      → plugins                               plugins.base.decide_all
      → upstream connection from the pool     ProxyServer.forward (shared)
      → stream request body up, response down (send_all is the backpressure)
      → access log line
      → next request on the same connection, or close

Every decision is taken by a pure module; this module only moves bytes and maps
IO failures to responses: connection refused → 502, timeouts → 504 (upstream)
or 408 (client), a peer protocol error → its h11 status hint.  The snapshot is
read once per request, so a reload never changes a request half-way.

The HTTP/2 driver (:mod:`trio_gw.net.h2_proxy`) turns each stream into the same
request head and calls the same two steps: :meth:`ProxyServer.route` (sync: the
route, https enforcement and plugin decisions, returning :class:`Forward` or
:class:`Answer`) and :meth:`ProxyServer.forward` (the upstream exchange, which
reads the client's body from a :class:`BodySource` and writes the answer into a
:class:`ResponseSink`).  Only reading heads and writing answers is per protocol.
"""

from __future__ import annotations

import logging
import ssl
import time
from urllib.parse import parse_qsl, urlencode
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol

import h11
import trio

from trio_gw.http.errors import RequestRejected
from trio_gw.http.guards import check_request_head
from trio_gw.http.headers import TrustedNetworks, downstream_response_headers, upstream_request_headers
from trio_gw.http.responses import error_response
from trio_gw.http.facts import RequestFacts
from trio_gw.http.routing import RouteMatch, https_redirect, select_route
from trio_gw.net.contexts import TLS_RECEIVE_SIZE
from trio_gw.plugins.base import CrlSource, Deny, RequestContext, decide_all
from trio_gw.plugins.identity import IDENTITY_HEADERS
from trio_gw.net.tls_client import UpstreamTls
from trio_gw.net.upstream import PoolKey, UpstreamConnection, UpstreamPool, open_upstream
from trio_gw.tls.upstream_identity import UpstreamTlsError, classify_read_failure

if TYPE_CHECKING:
    from trio_gw.snapshot import Snapshot

log = logging.getLogger("trio_gw.proxy")


@dataclass
class ConnectionInfo:
    """Facts about one client connection, fixed after the handshake."""

    client_ip: str
    client_port: int
    server_port: int
    tls: bool = False
    tls_version: str | None = None
    cipher: str | None = None
    sni: str | None = None
    alpn: str | None = None
    peer_certificate_der: bytes | None = None
    #: The certificates the client sent after its leaf; empty on a resumed session (the leaf survives).
    peer_chain_der: tuple[bytes, ...] = ()
    #: Whether ``client_ip`` is in ``trusted_ips``, worked out once per connection (and again
    #: only if a reload brought new networks): ``_trusted_in`` is the networks it was checked against.
    _trusted: bool = False
    _trusted_in: object = None

    def is_trusted(self, networks: TrustedNetworks) -> bool:
        if self._trusted_in is not networks:
            self._trusted, self._trusted_in = networks.is_trusted(self.client_ip), networks
        return self._trusted


#: Headers never forwarded from a client: ``Expect`` (the gateway answers
#: 100-continue itself) and every identity header the gateway sets, so no client
#: can claim a consumer or a certificate by sending them.
STRIP_UPSTREAM = frozenset({b"expect"}) | IDENTITY_HEADERS


#: A response batch larger than this is sent before more is read (backpressure).
RELAY_FLUSH_BYTES = 65536

Header = tuple[bytes, bytes]


class UpstreamFailure(Exception):
    """The upstream could not be used; carries the status and reason for the client."""

    def __init__(self, status: int, reason: str, message: str | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.message = message


class ClientGone(Exception):
    """The client disappeared or stalled mid-exchange: nothing can be answered."""


@dataclass
class Exchange:
    """What the access log records about one request."""

    started: float
    method: str = "-"
    target: str = "-"
    status: int = 0
    reason: str | None = None
    route: str | None = None
    service: str | None = None
    upstream: str | None = None
    upstream_time: float | None = None
    bytes_in: int = 0
    bytes_out: int = 0
    protocol: str = "HTTP/1.1"


@dataclass(slots=True)
class Forward:
    """:meth:`ProxyServer.route`'s answer when the request goes upstream.

    Treat as immutable; not ``frozen`` because one is built per proxied request
    and a frozen dataclass's ``__init__`` costs about a microsecond more.
    """

    match: RouteMatch
    facts: RequestFacts
    #: Headers the plugins add to the upstream request.
    extra_headers: tuple[Header, ...] = ()
    #: Client headers never forwarded (:data:`STRIP_UPSTREAM` and the plugins' strip sets).
    strip: frozenset[bytes] = STRIP_UPSTREAM


@dataclass(frozen=True, slots=True)
class Answer:
    """:meth:`ProxyServer.route`'s answer when the gateway answers itself.

    ``body`` is ``None`` for a JSON error document (``message`` or the status's
    standard text, with ``reason``); otherwise it is the exact body, and
    ``headers`` carry everything but the length (the https redirect).
    """

    status: int
    reason: str | None
    message: str | None = None
    headers: tuple[Header, ...] = ()
    body: bytes | None = None


class BodySource(Protocol):
    """The client's request body, as the upstream exchange reads it."""

    async def receive(self) -> bytes | None:
        """The next piece of the body, or ``None`` at its end.

        Raises:
            ClientGone: the client stalled (``client_body_timeout``), broke the
                framing or went away.
        """
        ...


class ResponseSink(Protocol):
    """Where the upstream's answer goes: an HTTP/1.1 connection or one HTTP/2 stream.

    ``head``/``data``/``end`` only buffer; ``flush`` sends (and is where
    backpressure applies), so a small answer leaves in one write.
    """

    @property
    def buffered(self) -> int:
        """Bytes buffered and not yet flushed."""
        ...

    def head(self, status: int, headers: list[Header], reason: bytes) -> None: ...

    def data(self, data: bytes) -> None: ...

    def end(self) -> None: ...

    async def flush(self) -> None: ...


class _H11Body:
    """The request body of an HTTP/1.1 request, read through h11."""

    __slots__ = ("stream", "conn", "timeout")

    def __init__(self, stream: trio.abc.Stream, conn: h11.Connection, timeout: float) -> None:
        self.stream = stream
        self.conn = conn
        self.timeout = timeout

    async def receive(self) -> bytes | None:
        try:
            with trio.fail_after(self.timeout):
                event = await _next_client_event(self.stream, self.conn)
        except trio.TooSlowError as exc:
            raise ClientGone("client body timeout") from exc
        except h11.RemoteProtocolError as exc:
            raise ClientGone(f"client body: {exc}") from exc
        if isinstance(event, h11.Data):
            return event.data
        if isinstance(event, h11.EndOfMessage):
            return None
        raise ClientGone("client closed during the request body")


class _H11Sink:
    """The answer to an HTTP/1.1 request, serialised by h11 into one buffer.

    A write that cannot finish within ``send_timeout`` (a client that stopped
    reading) gives up: the client is gone, and the upstream connection with it.
    """

    __slots__ = ("stream", "conn", "out", "timeout")

    def __init__(self, stream: trio.abc.Stream, conn: h11.Connection, timeout: float) -> None:
        self.stream = stream
        self.conn = conn
        self.out = bytearray()
        self.timeout = timeout

    @property
    def buffered(self) -> int:
        return len(self.out)

    def head(self, status: int, headers: list[Header], reason: bytes) -> None:
        self.out += self.conn.send(h11.Response(status_code=status, headers=headers, reason=reason))

    def data(self, data: bytes) -> None:
        self.out += self.conn.send(h11.Data(data=data))

    def end(self) -> None:
        self.out += self.conn.send(h11.EndOfMessage())

    async def flush(self) -> None:
        if self.out:
            # A bare CancelScope, as for upstream writes (cheaper than trio.fail_after).
            with trio.CancelScope(deadline=trio.current_time() + self.timeout) as scope:
                await self.stream.send_all(self.out)
            if scope.cancelled_caught:
                raise ClientGone("client send timeout")
            self.out.clear()


class ProxyServer:
    """Serves client connections; shared by every listener of a worker."""

    def __init__(
        self,
        get_snapshot: Callable[[], Snapshot],
        pool: UpstreamPool,
        upstream_tls: UpstreamTls,
        log_access: Callable[[ConnectionInfo, Exchange], None],
    ) -> None:
        self.get_snapshot = get_snapshot
        self.pool = pool
        self.upstream_tls = upstream_tls
        self.crl_source: CrlSource | None = None
        self.log_access = log_access
        self.in_flight = 0
        self.draining = False
        #: Set when draining starts; HTTP/2 connections wait on it to send GOAWAY.
        self.drain_started = trio.Event()

    def start_draining(self) -> None:
        """Stop taking new requests: HTTP/1.1 connections close after the current
        one, HTTP/2 connections send GOAWAY and finish their open streams."""
        self.draining = True
        self.drain_started.set()

    async def serve_connection(self, stream: trio.abc.Stream, info: ConnectionInfo) -> None:
        """Run the request loop on one (possibly TLS) client stream until it closes."""
        settings = self.get_snapshot().settings
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=settings.max_header_size)
        served = 0
        try:
            while not self.draining:
                event = await self._read_head(stream, conn, self.get_snapshot(), first=served == 0)
                if event is None:
                    return
                snapshot = self.get_snapshot()  # the request runs on the snapshot current at its head
                served += 1
                self.in_flight += 1
                try:
                    keep = await self._handle(stream, conn, event, snapshot, info)
                finally:
                    self.in_flight -= 1
                if not keep or served >= snapshot.settings.keepalive_requests:
                    return
                if conn.our_state is h11.MUST_CLOSE or conn.their_state is not h11.DONE:
                    return
                conn.start_next_cycle()
        except (trio.BrokenResourceError, trio.ClosedResourceError, ClientGone, ssl.SSLError):
            return
        except Exception:
            # A bug must cost one connection, never the node: log it loudly and close.
            log.exception("unexpected error on a connection from %s", info.client_ip)
        finally:
            await close_stream(stream)

    async def _read_head(
        self, stream: trio.abc.Stream, conn: h11.Connection, snapshot: Snapshot, *, first: bool
    ) -> h11.Request | None:
        """The next request head, or None when the connection should just close."""
        settings = snapshot.settings
        idle_deadline = settings.client_header_timeout if first else settings.keepalive_timeout
        started = False
        with trio.CancelScope(deadline=trio.current_time() + idle_deadline) as idle:
            while True:
                try:
                    event = conn.next_event()
                except h11.RemoteProtocolError as exc:
                    await self._reject(stream, conn, exc.error_status_hint, None, "bad_request")
                    return None
                if event is h11.NEED_DATA:
                    data = await stream.receive_some(TLS_RECEIVE_SIZE)
                    conn.receive_data(data)  # type: ignore[arg-type]  # h11 takes bytearray too
                    if data and not first and not started:
                        # an idle keep-alive connection woke up: the head now has client_header_timeout
                        started = True
                        idle.deadline = trio.current_time() + settings.client_header_timeout
                    continue
                if isinstance(event, h11.Request):
                    return event
                return None  # ConnectionClosed
        if conn.their_state is h11.IDLE and not conn.trailing_data[0]:
            return None  # idle keep-alive connection: close quietly
        await self._reject(stream, conn, 408, None, "client_timeout")
        return None

    async def _reject(
        self, stream: trio.abc.Stream, conn: h11.Connection, status: int, message: str | None, reason: str,
        *, head: bool = False,
    ) -> None:
        if conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        response, body = error_response(status, message, reason=reason, headers=[(b"connection", b"close")])
        with trio.move_on_after(5):
            try:
                await stream.send_all(_whole_response(conn, response, body, head=head))
            except trio.BrokenResourceError:
                pass  # the client is gone: nothing to tell it

    async def _handle(
        self, stream: trio.abc.Stream, conn: h11.Connection, request: h11.Request, snapshot: Snapshot, info: ConnectionInfo
    ) -> bool:
        """Answer one request; returns whether the connection may serve another."""
        ex = Exchange(started=time.monotonic(), method=request.method.decode("ascii", "replace"),
                      target=request.target.decode("ascii", "replace"))
        if request.http_version != b"1.1":
            ex.protocol = "HTTP/" + request.http_version.decode("ascii", "replace")
        try:
            try:
                check_request_head(
                    request,
                    max_header_size=snapshot.settings.max_header_size,
                    max_headers=snapshot.settings.max_headers,
                )
                facts = RequestFacts.from_h11(
                    request, protocol="https" if info.tls else "http", sni=info.sni,
                    header_names=snapshot.router.header_names,
                )
            except RequestRejected as exc:
                ex.status, ex.reason = exc.status, exc.reason
                await self._reject(stream, conn, exc.status, exc.message, exc.reason, head=ex.method == "HEAD")
                return False
            decision = self.route(facts, request.headers, snapshot, info, ex)
            if isinstance(decision, Answer):
                if decision.body is not None:
                    return await self._enforce_https(stream, conn, decision, ex)
                return await self._respond_error(stream, conn, decision.status, decision.message, ex,
                                                 headers=decision.headers)
            if conn.they_are_waiting_for_100_continue:
                await stream.send_all(conn.send(h11.InformationalResponse(status_code=100, headers=[])))
            chunked = _has_chunked_body(request)
            has_body = chunked or _content_length(request) > 0
            body = _H11Body(stream, conn, snapshot.settings.client_body_timeout) if has_body else None
            try:
                uploaded = await self.forward(decision, request.method, request.headers, body=body, chunked=chunked,
                                              sink=_H11Sink(stream, conn, snapshot.settings.send_timeout), snapshot=snapshot, info=info, ex=ex)
            except UpstreamFailure as exc:
                ex.status, ex.reason = exc.status, exc.reason
                if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                    return await self._respond_error(stream, conn, exc.status, exc.message, ex)
                return False
            # The upstream answered before taking the whole body (e.g. 413): close.
            return uploaded and (conn.their_state is h11.DONE or await _discard_body(stream, conn))
        finally:
            self.log_access(info, ex)

    def route(
        self, facts: RequestFacts, headers: Sequence[Header], snapshot: Snapshot, info: ConnectionInfo, ex: Exchange,
    ) -> Forward | Answer:
        """Decide what to do with one request head (both protocols; no IO).

        Args:
            facts: the request facts (guards already passed).
            headers: the client's header fields, lowercase names (``host`` included).
            snapshot: the snapshot the request runs on.
            info: the connection's facts (TLS version, SNI, client certificate).
            ex: the access-log record; route, service and reason are filled in.

        Returns:
            :class:`Forward` to go upstream, or the :class:`Answer` the gateway
            gives itself (404 no route, https enforcement, a plugin's denial).
        """
        match = select_route(snapshot.router, facts)
        if match is None:
            ex.reason = "no_route"
            return Answer(404, "no_route")
        ex.route = match.route.name or match.route.id
        ex.service = match.service.name or match.service.id
        if match.https_required:
            redirect = https_redirect(match, facts, snapshot.https_port)
            ex.reason = "https_required"
            return Answer(redirect.status, "https_required", headers=redirect.headers, body=redirect.body)
        plugins = snapshot.route_plugins.get(match.route.id, ())
        if not plugins:
            return Forward(match, facts)
        decision = decide_all(plugins, RequestContext(
            facts=facts, headers=headers, client_ip=info.client_ip,
            trusted_client=info.is_trusted(snapshot.trusted), tls=info.tls,
            tls_version=info.tls_version, sni=info.sni, now=time.time(),
            peer_certificate_der=info.peer_certificate_der, peer_chain_der=info.peer_chain_der,
            crl_source=self.crl_source,
        ))
        if isinstance(decision, Deny):
            ex.reason = decision.reason
            return Answer(decision.status, decision.reason, decision.message, headers=decision.headers)
        strip = STRIP_UPSTREAM | decision.strip_headers if decision.strip_headers else STRIP_UPSTREAM
        if decision.strip_query and facts.query:
            facts = replace(facts, query=without_params(facts.query, decision.strip_query))
        return Forward(match, facts, decision.upstream_headers, strip)

    async def _respond_error(
        self, stream: trio.abc.Stream, conn: h11.Connection, status: int, message: str | None, ex: Exchange,
        *, headers: tuple[tuple[bytes, bytes], ...] = (),
    ) -> bool:
        keep = conn.their_state is h11.DONE or await _discard_body(stream, conn)
        # A refusal may name connection options of its own (the ssl plugin's 426 says
        # "Connection: Upgrade" beside "Upgrade", RFC 9110 §7.8); "close" joins them.
        options = [v for n, v in headers if n == b"connection"] + ([] if keep else [b"close"])
        headers = tuple(h for h in headers if h[0] != b"connection") + (
            ((b"connection", b", ".join(options)),) if options else ())
        response, body = error_response(status, message, reason=ex.reason, headers=list(headers))
        ex.status = status
        await stream.send_all(_whole_response(conn, response, body, head=ex.method == "HEAD"))
        ex.bytes_out = 0 if ex.method == "HEAD" else len(body)
        return keep

    async def _enforce_https(self, stream: trio.abc.Stream, conn: h11.Connection, answer: Answer, ex: Exchange) -> bool:
        assert answer.body is not None
        ex.status = answer.status
        keep = conn.their_state is h11.DONE or await _discard_body(stream, conn)
        headers = list(answer.headers) + ([] if keep else [(b"connection", b"close")])
        headers.append((b"content-length", str(len(answer.body)).encode()))
        response = h11.Response(status_code=answer.status, headers=headers)
        await stream.send_all(_whole_response(conn, response, answer.body, head=ex.method == "HEAD"))
        return keep

    async def forward(
        self, fwd: Forward, method: bytes, headers: Sequence[Header], *, body: BodySource | None, chunked: bool,
        sink: ResponseSink, snapshot: Snapshot, info: ConnectionInfo, ex: Exchange,
    ) -> bool:
        """Send one request upstream and relay the answer into ``sink`` (both protocols).

        Args:
            fwd: :meth:`route`'s decision.
            method: the request method.
            headers: the client's header fields, lowercase names.
            body: the request body, or ``None`` when there is none.
            chunked: the body's length is unknown: re-frame it chunked upstream.
            sink: where the answer goes.
            snapshot: the snapshot the request runs on.
            info: the connection's facts.
            ex: the access-log record.

        Returns:
            Whether the request body was read to its end (``False`` when the
            upstream answered before taking all of it).

        Raises:
            UpstreamFailure: the upstream failed; ``ex.status`` is 0 when
                nothing was relayed yet (the caller can still answer).
            ClientGone: the client stalled or went away, or the upstream
                closed mid-response.
        """
        match, facts = fwd.match, fwd.facts
        service = match.service
        target = match.upstream_path.encode() + (b"?" + facts.query.encode() if facts.query else b"")
        up_headers = upstream_request_headers(
            headers,
            match,
            facts,
            client_ip=info.client_ip,
            server_port=info.server_port,
            trusted=info.is_trusted(snapshot.trusted),
            strip=fwd.strip,
        )
        up_headers.extend(fwd.extra_headers)
        if chunked:  # re-frame: the hop-by-hop filter dropped the client's framing
            up_headers.append((b"transfer-encoding", b"chunked"))
        up_request = h11.Request(method=method, target=target, headers=up_headers)
        has_body = body is not None
        up_started = time.monotonic()
        for attempt in (1, 2):
            upstream = await self._connect(service, snapshot, ex, fresh=attempt == 2)
            try:
                await self._send_head(upstream, up_request, service, has_body=has_body)
                if body is not None:
                    uploaded = await self._full_duplex(upstream, body, sink, service, ex)
                else:
                    await self._relay_response(upstream, sink, service, ex)
                    uploaded = True
                break
            except UpstreamFailure as exc:
                await upstream.aclose()
                # A pooled connection the upstream closed while idle: retry once on a new
                # one, but only when nothing was consumed from the client or sent back.
                if not (upstream.reused and not has_body and ex.status == 0 and exc.status == 502):
                    raise
            except BaseException:
                await upstream.aclose()
                raise
            finally:
                ex.upstream_time = time.monotonic() - up_started
        if not self.pool.give_back(upstream):
            await upstream.aclose()
        return uploaded

    async def _connect(self, service: Any, snapshot: Snapshot, ex: Exchange, *, fresh: bool = False) -> UpstreamConnection:
        plan = self.upstream_tls.plan_for(service)
        context = plan.context if service.protocol == "https" else None
        key = PoolKey(service.protocol, service.host, service.port,
                      service.host if context is not None else None, id(context) if context else 0,
                      plan.proxy.identity if plan.proxy else None)
        ex.upstream = f"{service.host}:{service.port}"
        pooled = None if fresh else self.pool.take(key)
        if pooled is not None:
            return pooled
        try:
            return await open_upstream(key, context=context, connect_timeout=service.connect_timeout / 1000,
                                       profile=plan.profile, proxy=plan.proxy, proxy_context=plan.proxy_context)
        except trio.TooSlowError as exc:
            raise UpstreamFailure(504, "upstream_connect_timeout") from exc
        except UpstreamTlsError as exc:  # stable reason code; the detail stays in the error log
            raise UpstreamFailure(502, str(exc.reason)) from exc
        except (ssl.SSLError, trio.BrokenResourceError) as exc:
            raise UpstreamFailure(502, "upstream_tls_failed") from exc
        except OSError as exc:
            raise UpstreamFailure(502, "upstream_connect_failed") from exc

    async def _send_head(
        self, upstream: UpstreamConnection, up_request: h11.Request, service: Any, *, has_body: bool
    ) -> None:
        data = upstream.h11.send(up_request)
        if not has_body:
            data += upstream.h11.send(h11.EndOfMessage())
        # A bare CancelScope: trio.fail_after's generator wrapper costs ~5% of a request here.
        with trio.CancelScope(deadline=trio.current_time() + service.write_timeout / 1000) as scope:
            try:
                await upstream.stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                raise UpstreamFailure(502, "upstream_write_failed") from exc
        if scope.cancelled_caught:
            raise UpstreamFailure(504, "upstream_write_timeout")
        upstream.requests += 1

    async def _full_duplex(
        self, upstream: UpstreamConnection, body: BodySource, sink: ResponseSink, service: Any, ex: Exchange,
    ) -> bool:
        """Stream the body up while relaying the response down (an echoing upstream
        would otherwise deadlock against a client that sends everything first).

        Returns whether the whole body was uploaded."""
        # Errors are caught inside the nursery and re-raised after it, so callers
        # see UpstreamFailure/ClientGone themselves, never an ExceptionGroup.
        failure: list[Exception] = []
        uploaded = trio.Event()

        async def upload() -> None:
            try:
                await self._send_body(upstream, body, service, ex)
                uploaded.set()
            except Exception as exc:  # re-raised below, after the nursery
                failure.append(exc)
                nursery.cancel_scope.cancel()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(upload)
            try:
                await self._relay_response(upstream, sink, service, ex)
            except Exception as exc:  # re-raised below, after the nursery
                failure.insert(0, exc)
                nursery.cancel_scope.cancel()
            if not uploaded.is_set():
                # The upstream answered before taking the whole body (e.g. 413): stop
                # uploading; neither connection is reusable.
                nursery.cancel_scope.cancel()
                upstream.h11 = h11.Connection(h11.CLIENT)  # never pooled: state is mid-request
        if failure:
            raise failure[0]
        return uploaded.is_set()

    async def _send_body(self, upstream: UpstreamConnection, body: BodySource, service: Any, ex: Exchange) -> None:
        write_timeout = service.write_timeout / 1000
        while True:
            chunk = await body.receive()
            if chunk is None:
                data = upstream.h11.send(h11.EndOfMessage())
            else:
                ex.bytes_in += len(chunk)
                data = upstream.h11.send(h11.Data(data=chunk))
            try:
                with trio.fail_after(write_timeout):
                    await upstream.stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                raise UpstreamFailure(502, "upstream_write_failed") from exc
            except trio.TooSlowError as exc:
                raise UpstreamFailure(504, "upstream_write_timeout") from exc
            if chunk is None:
                return

    async def _relay_response(self, upstream: UpstreamConnection, sink: ResponseSink, service: Any, ex: Exchange) -> None:
        """Relay the upstream's response to the client.

        Output is batched: everything h11 can give without another read (often
        head, body and end together) goes out in one flush — one TLS record and
        one syscall instead of three.  The batch is flushed before every read
        and whenever it exceeds ``RELAY_FLUSH_BYTES``, so a large body still
        streams with backpressure.
        """
        read_timeout = service.read_timeout / 1000
        h = upstream.h11
        started = False
        while True:
            try:
                event = h.next_event()
            except h11.RemoteProtocolError as exc:  # e.g. the upstream closed mid-body
                raise UpstreamFailure(502, _read_failure_reason(exc)) from exc
            if event is h11.NEED_DATA:
                if sink.buffered:
                    await sink.flush()
                with trio.CancelScope(deadline=trio.current_time() + read_timeout) as scope:
                    try:
                        data = await upstream.stream.receive_some(TLS_RECEIVE_SIZE)
                    except (trio.BrokenResourceError, ssl.SSLError, OSError) as exc:
                        raise UpstreamFailure(502, _read_failure_reason(exc)) from exc
                if scope.cancelled_caught:
                    raise UpstreamFailure(504, "upstream_read_timeout")
                h.receive_data(data)  # type: ignore[arg-type]  # h11 takes bytearray too
                continue
            if isinstance(event, h11.InformationalResponse):
                continue  # 1xx from upstream: we already answered 100-continue ourselves
            if isinstance(event, h11.Response):
                ex.status = event.status_code
                sink.head(event.status_code, downstream_response_headers(event.headers), event.reason)
                started = True
            elif isinstance(event, h11.Data):
                ex.bytes_out += len(event.data)
                sink.data(event.data)
                if sink.buffered >= RELAY_FLUSH_BYTES:
                    await sink.flush()
            elif isinstance(event, h11.EndOfMessage):
                sink.end()
                await sink.flush()
                return
            else:  # ConnectionClosed before the end of the response
                if started:
                    raise ClientGone("upstream closed mid-response")
                raise UpstreamFailure(502, "upstream_closed")


def without_params(query: str, names: frozenset[str]) -> str:
    """``query`` without the parameters ``names`` (a hidden API key never reaches the upstream)."""
    return urlencode([(k, v) for k, v in parse_qsl(query, keep_blank_values=True) if k not in names])


def _whole_response(conn: h11.Connection, response: h11.Response, body: bytes, *, head: bool) -> bytes:
    """Serialise a complete response; a HEAD response carries the length but no body."""
    out = conn.send(response)
    if body and not head:
        out += conn.send(h11.Data(data=body))
    return out + conn.send(h11.EndOfMessage())


def _read_failure_reason(exc: BaseException) -> str:
    cause = exc if isinstance(exc, ssl.SSLError) else exc.__cause__
    if isinstance(cause, ssl.SSLError):
        # TLS 1.3: a refused client certificate surfaces here; TLS 1.2: a refused renegotiation
        tls_reason = classify_read_failure(cause.reason)
        if tls_reason is not None:
            return str(tls_reason)
    text = str(exc).upper()
    if "CERTIFICATE_REQUIRED" in text or "BAD_CERTIFICATE" in text or "UNKNOWN_CA" in text:
        return "upstream_rejected_client_cert"
    if isinstance(exc, h11.RemoteProtocolError):
        return "upstream_protocol_error"
    return "upstream_read_failed"


def _content_length(request: h11.Request) -> int:
    for name, value in request.headers:
        if name == b"content-length":
            return int(value)
    return 0


def _has_chunked_body(request: h11.Request) -> bool:
    return any(name == b"transfer-encoding" for name, _ in request.headers)


async def _next_client_event(stream: trio.abc.Stream, conn: h11.Connection) -> Any:
    while True:
        event = conn.next_event()
        if event is not h11.NEED_DATA:
            return event
        conn.receive_data(await stream.receive_some(TLS_RECEIVE_SIZE))  # type: ignore[arg-type]  # h11 takes bytearray too


async def _discard_body(stream: trio.abc.Stream, conn: h11.Connection, limit: int = 1 << 20) -> bool:
    """Read and drop the rest of a request body (up to ``limit``) so the connection can be reused."""
    if conn.they_are_waiting_for_100_continue:
        return False  # never asked for the body: h11 would need it; close instead
    if conn.their_state is h11.DONE:
        return True
    seen = 0
    with trio.CancelScope(deadline=trio.current_time() + 5):
        while seen <= limit:
            try:
                event = conn.next_event()  # usually the end of a bodyless request: no IO
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


async def close_stream(stream: trio.abc.Stream) -> None:
    """Close a client stream; a TLS one says close_notify first (RFC 8446 §6.1).

    trio's ``aclose()`` skips close_notify on ``https_compatible`` streams, and
    without it strict clients (``openssl s_client``) report a truncation.  We
    queue the alert with ``SSLObject.unwrap()`` (which does not wait for the
    peer's reply), flush it with a short deadline, then close the socket.
    Uses trio internals, as the handshake-alert flush does (notes §2).
    """
    if isinstance(stream, trio.SSLStream):
        transport = stream.transport_stream
        try:
            stream._ssl_object.unwrap()
        except (ssl.SSLError, ValueError):
            pass  # SSLWantReadError: our alert is queued, the peer's is not awaited
        alert = stream._outgoing.read()
        if alert:
            with trio.move_on_after(1):
                try:
                    await transport.send_all(alert)
                except (trio.BrokenResourceError, trio.ClosedResourceError, trio.BusyResourceError):
                    pass
        await trio.aclose_forcefully(transport)
        return
    await trio.aclose_forcefully(stream)

