"""The upstream exchange both protocol drivers share, and what they share about the data plane.

Theory of operation
-------------------
The HTTP/1.1 driver (:mod:`trio_gw.net.http1`) and the HTTP/2 driver
(:mod:`trio_gw.net.http2`) read request heads their own way, then call the
same two steps of :class:`Proxy`:

* :meth:`Proxy.decide` — the pure :func:`trio_gw.decision.decide_request` on
  the generation the request pinned (route, https enforcement, plugins, the
  upstream request head), noting the outcome in the access-log record;
* :meth:`Proxy.forward` — the upstream exchange: a connection from the pool (or
  a new one, with the plan's TLS context, checks and forward proxy), the head
  sent, the body streamed up while the response streams down into a
  :class:`ResponseSink` (both directions with backpressure), the connection
  given back when the exchange ended cleanly.

Only reading heads and writing answers is per protocol.  IO failures become
:class:`UpstreamFailure` with a stable reason (the classification is the pure
:func:`trio_gw.tls.upstream_identity.upstream_read_failure`), or
:class:`ClientGone` when nothing can be answered any more.
"""

from __future__ import annotations

import logging
import math
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import h11
import trio

from trio_gw.decision import Answer, ChallengeAnswers, Forward, decide_request
from trio_gw.http.facts import ConnectionFacts, RequestFacts
from trio_gw.http.headers import downstream_response_headers
from trio_gw.http.wire import splice, split_framing
from trio_gw.model.entities import Consumer
from trio_gw.net.client_abort import ClientAborts
from trio_gw.net.contexts import TLS_RECEIVE_SIZE
from trio_gw.net.deadlines import move_deadline
from trio_gw.net.generation import Generation, GenerationHolder
from trio_gw.net.limits import IdleConnections
from trio_gw.net.relay_errors import ClientGone, UpstreamFailure
from trio_gw.net.streams import send_before_receive
from trio_gw.net.tunnel import relay_tunnel
from trio_gw.net.tls_client import UpstreamPlan
from trio_gw.net.upstream import UpstreamConnection, UpstreamPool, open_upstream
from trio_gw.plugins.base import CrlSource
from trio_gw.tls.client_revocation import OcspAnswers
from trio_gw.tls.rejection_log import RejectionLogLimiter
from trio_gw.tls.upstream_identity import UpstreamTlsError, upstream_read_failure

log = logging.getLogger("trio_gw.proxy")

#: Seconds between two error-log lines about one upstream failing for one reason.
UPSTREAM_FAILURE_LOG_INTERVAL = 10.0
#: What a failure without an exception under it was (a deadline, or the upstream's end of stream).
_FAILURE_DETAILS = {
    "upstream_read_timeout": "nothing received from the upstream for read_timeout ({read:g} s)",
    "upstream_write_timeout": "the upstream took nothing for write_timeout ({write:g} s)",
    "upstream_closed": "the upstream closed the connection before its response was complete",
}

#: ``h11.Request``/``h11.Response`` take ``_parsed=True`` to skip the name and value regexes for a
#: head whose fields were validated already (h11's own parser passes it); Content-Length and
#: Transfer-Encoding are still normalised, so h11's framing stays right.  h11 is pinned below 0.17
#: and tests/net/test_h11_parsed.py pins this behaviour.
_ALREADY_VALIDATED = True
#: h11 events are immutable: one end-of-message serves every exchange.
END_OF_MESSAGE = h11.EndOfMessage()

#: A response batch larger than this is sent before more is read (backpressure).
RELAY_FLUSH_BYTES = 65536

Header = tuple[bytes, bytes]


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
    #: The relay handed the upstream connection back (to the pool, or to be closed): not the request's any more.
    upstream_released: bool = False
    #: Who the plugins authenticated (access log, ``consumer`` label of the metrics).
    consumer: Consumer | None = None
    #: When the upstream exchange began (before connecting) and its answer's head arrived (``time.monotonic()``).
    upstream_started: float | None = None
    upstream_answered: float | None = None
    #: The upstream connection's stream while the exchange uses it (the client-abort watcher interrupts its receive).
    upstream_stream: Any = None
    #: The client closed its connection while its request waited on the upstream (:mod:`trio_gw.net.client_abort`).
    client_closed: bool = False


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

    @property
    def send_timeout(self) -> float:
        """How long one flush may wait for the client (``send_timeout``); the caller holds the deadline."""
        ...

    def head(self, status: int, headers: list[Header], reason: bytes) -> None: ...

    def data(self, data: bytes) -> None: ...

    def end(self) -> None: ...

    async def flush(self) -> None: ...


@runtime_checkable
class UpgradeSink(ResponseSink, Protocol):
    """A sink whose connection can switch protocols (HTTP/1.1's, for a WebSocket handshake)."""

    def switch(self, headers: list[Header], reason: bytes) -> None:
        """Buffer the upstream's 101; the connection then carries the upgraded protocol."""
        ...

    def tunnel_ends(self) -> tuple[trio.abc.Stream, bytes]:
        """The client's stream and what it sent after its request, once switched."""
        ...


AccessRecorder = Callable[[ConnectionFacts, Exchange], None]


class RevocationFetches(Protocol):
    """The node's revocation fetcher, as a request refused ``revocation_unknown`` waits for it."""

    async def settle_revocation(self) -> None:
        """Return once a fetch round that includes the misses noted so far has ended (bounded)."""
        ...


class Proxy:
    """What every proxy listener of a worker shares: the generation, the pool, the access log, draining.

    Args:
        holder: the node's current generation.
        pool: idle upstream connections.
        record: called once per request with its access-log record.
        crl_source: CRLs fetched for the plugins' revocation checks.
        ocsp_source: OCSP answers fetched for the revocation checks (plugins, ``ssl_ocsp``).
        challenges: the ACME http-01 answers published now.
        revocation: what a request refused ``revocation_unknown`` waits for before it is decided again.
    """

    def __init__(
        self, holder: GenerationHolder, pool: UpstreamPool, record: AccessRecorder,
        crl_source: CrlSource | None = None, *, ocsp_source: OcspAnswers | None = None,
        challenges: ChallengeAnswers | None = None, revocation: RevocationFetches | None = None,
    ) -> None:
        self.holder = holder
        self.pool = pool
        self.record = record
        self.crl_source = crl_source
        self.ocsp_source = ocsp_source
        self.challenges = challenges
        self.revocation = revocation
        self.in_flight = 0
        self.draining = False
        #: Set when draining starts; HTTP/2 connections wait on it to send GOAWAY.
        self.drain_started = trio.Event()
        #: Client connections waiting for their next request (closed first to make room, and at a drain).
        self.idle = IdleConnections()
        #: HTTP/1.1 requests waiting on their upstream, ended when their client leaves (nginx's 499).
        self.aborts = ClientAborts()
        #: Which upstream failures are logged (a down upstream under load is one line per interval).
        self.upstream_failures = RejectionLogLimiter(UPSTREAM_FAILURE_LOG_INTERVAL, max_keys=1000)

    @property
    def generation(self) -> Generation:
        """The generation a request arriving now pins."""
        return self.holder.current

    def start_draining(self) -> None:
        """Stop taking new requests: idle connections close now, HTTP/1.1 answers say
        ``Connection: close``, HTTP/2 connections send GOAWAY and finish their open streams."""
        self.draining = True
        self.drain_started.set()
        self.idle.close_all()

    def decide(
        self, facts: RequestFacts, headers: Sequence[Header], conn: ConnectionFacts, gen: Generation, ex: Exchange,
        *, method: bytes, chunked: bool, upgrade: bool = False,
    ) -> Forward | Answer:
        """The pure decision for one request head on ``gen``; the access-log record notes it."""
        decision = decide_request(facts, headers, conn, gen.snapshot, method=method, chunked=chunked,
                                  now=time.time(), upgrade=upgrade, crl_source=self.crl_source,
                                  ocsp_source=self.ocsp_source, challenges=self.challenges)
        if isinstance(decision, Answer):
            ex.reason = decision.reason
            ex.route, ex.service = decision.route_label, decision.service_label
        else:
            ex.route, ex.service = decision.route_label, decision.service_label
        ex.consumer = decision.consumer
        return decision

    async def decide_settled(
        self, facts: RequestFacts, headers: Sequence[Header], conn: ConnectionFacts, gen: Generation, ex: Exchange,
        *, method: bytes, chunked: bool, upgrade: bool = False,
    ) -> Forward | Answer:
        """:meth:`decide` again, once the revocation fetch its ``revocation_unknown`` refusal asked for has run.

        The decision stays pure and never does IO; only a request whose
        certificate's status was not at hand waits, for one background round
        (bounded by the plugins' ``http_timeout``), as Kong's synchronous
        fetch would have made it wait.
        """
        if self.revocation is not None:
            await self.revocation.settle_revocation()
        return self.decide(facts, headers, conn, gen, ex, method=method, chunked=chunked, upgrade=upgrade)

    async def forward(
        self, fwd: Forward, gen: Generation, *, body: BodySource | None, sink: ResponseSink, ex: Exchange,
    ) -> bool:
        """Send one request upstream and relay the answer into ``sink`` (both protocols).

        Args:
            fwd: the decision, with the complete upstream request head.
            gen: the generation the request pinned (its plan and pool key are used).
            body: the request body, or ``None`` when there is none.
            sink: where the answer goes.
            ex: the access-log record.

        Returns:
            Whether the request body was read to its end (``False`` when the
            upstream answered before taking all of it).

        Raises:
            UpstreamFailure: the upstream failed (it is in the error log);
                ``ex.status`` is 0 when nothing was relayed yet (the caller
                can still answer), else the status the client got before its
                response was cut short.
            ClientGone: the client stalled or went away.
        """
        plan = gen.upstreams[fwd.service_id]
        if fwd.upgrade and plan.websocket is not None:  # h2 cannot carry the handshake: HTTP/1.1 by ALPN
            plan = plan.websocket
        up_head = _UpstreamHead(fwd)
        tracked = _TrackedBody(body) if body is not None else None
        ex.upstream = plan.peer
        up_started = ex.upstream_started = time.monotonic()
        for attempt in (1, 2):
            upstream = await self._connect(plan, ex, fresh=attempt == 2)
            upstream.received = 0
            ex.upstream_stream = upstream.stream
            try:
                if upstream.h2 is not None:  # the upstream chose HTTP/2 (proxy_enable_http2)
                    from trio_gw.net.upstream_h2 import forward_h2  # loaded with the first h2 upstream

                    uploaded = await forward_h2(upstream, fwd, tracked, sink, plan, ex, self.pool)
                    if not ex.upstream_released:
                        await upstream.aclose()
                        ex.upstream_released = True
                elif tracked is not None:
                    await _send_head(upstream, up_head.for_connection(upstream.h11), plan)
                    uploaded = await _full_duplex(upstream, tracked, sink, plan, ex)
                else:
                    head = up_head.for_connection(upstream.h11) + upstream.h11.send(END_OF_MESSAGE)
                    # an upgrade's connection is never handed back: after a 101 it is the tunnel's
                    await _relay_response(upstream, sink, plan, ex, head=head,
                                          pool=None if fwd.upgrade else self.pool)
                    uploaded = True
                break
            except UpstreamFailure as exc:
                if not ex.upstream_released:
                    await upstream.aclose()
                if attempt == 2 or not _may_retry(upstream, tracked, exc, ex):
                    self._log_upstream_failure("request", plan.peer, exc.reason, _failure_detail(exc, plan, ex))
                    raise
                log.info("upstream %s closed a reused connection (%s): retrying on a new one", plan.peer, exc.reason)
            except BaseException:
                if not ex.upstream_released:  # else another request may be using it already
                    await upstream.aclose()
                raise
            finally:
                ex.upstream_time = time.monotonic() - up_started
        if fwd.upgrade and upstream.h11.their_state is h11.SWITCHED_PROTOCOL:  # the upstream took the handshake
            await _tunnel(upstream, sink, plan, ex)
        elif not ex.upstream_released and not self.pool.give_back(upstream):
            await upstream.aclose()
        return uploaded

    async def _connect(self, plan: UpstreamPlan, ex: Exchange, *, fresh: bool) -> UpstreamConnection:
        pooled = None if fresh else self.pool.take(plan.key)
        if pooled is not None:
            return pooled
        cause: BaseException
        try:
            # A client that leaves while its upstream is being reached (an address that drops SYNs, a slow
            # handshake: up to connect_timeout) ends the request too: the abort watcher cancels this.
            with trio.CancelScope() as connecting:
                ex.upstream_stream = _Connecting(connecting)
                return await open_upstream(plan.key, context=plan.context, connect_timeout=plan.connect_timeout,
                                           profile=plan.profile, proxy=plan.proxy, proxy_context=plan.proxy_context)
            raise ClientGone("the client closed its connection while the gateway connected to its upstream")
        except trio.TooSlowError as exc:
            failure, cause = UpstreamFailure(504, "upstream_connect_timeout"), exc
            detail = f"no connection within {plan.connect_timeout:g} s"
        except UpstreamTlsError as exc:  # stable reason code for the client; the detail for the error log
            failure, cause, detail = UpstreamFailure(502, str(exc.reason)), exc, str(exc)
        except (ssl.SSLError, trio.BrokenResourceError) as exc:
            failure, cause, detail = UpstreamFailure(502, "upstream_tls_failed"), exc, str(exc.__cause__ or exc)
        except OSError as exc:
            failure, cause, detail = UpstreamFailure(502, "upstream_connect_failed"), exc, _connect_error(exc)
        self._log_upstream_failure("connection", plan.peer, failure.reason, detail)
        raise failure from cause

    def _log_upstream_failure(self, what: str, peer: str, reason: str, detail: str) -> None:
        """The error log line of a failed upstream connection or request: the first of an
        ``(upstream, reason)``, then at most one per :data:`UPSTREAM_FAILURE_LOG_INTERVAL` with how many
        were held back."""
        limiter, now = self.upstream_failures, time.monotonic()
        if len(limiter) >= limiter.max_keys:
            # Forget the quiet (upstream, reason) pairs before a new one would share the overflow key
            # (and its one line per interval) with every other upstream; say what was held back.
            for held in limiter.flush(now):
                log.warning("upstream failures continued: reason=%s upstream=%s (%d more in the last %gs)",
                            held.reason, held.network, held.suppressed, UPSTREAM_FAILURE_LOG_INTERVAL)
        line = limiter.admit(reason, peer, now)
        if line is None:
            return
        more = f" ({line.suppressed} more in the last {UPSTREAM_FAILURE_LOG_INTERVAL:g}s)" if line.suppressed else ""
        # WARNING, not nginx's "error": here ERROR means a fault of the gateway itself (the fuzz targets
        # fail on one), and a failing upstream is something to act on, which is what WARNING says.
        log.warning("upstream %s failed: reason=%s upstream=%s error=%s%s", what, reason, peer, detail, more)


class _Connecting:
    """What a request waits on while its upstream connection is opened (``Exchange.upstream_stream``):
    the abort watcher's ``interrupt_receive`` cancels the opening."""

    __slots__ = ("scope",)

    def __init__(self, scope: trio.CancelScope) -> None:
        self.scope = scope

    def interrupt_receive(self) -> None:
        self.scope.cancel()


def _failure_detail(exc: UpstreamFailure, plan: UpstreamPlan, ex: Exchange) -> str:
    """What the error log says of a failed upstream request: which deadline passed or that the upstream
    hung up (h11's wording of that names its own states), else the error under the failure; and, when
    the response's head had gone to the client already, what of it the client got before it was cut."""
    template = _FAILURE_DETAILS.get(exc.reason)
    if exc.detail is not None:
        text = exc.detail
    elif template is not None:
        text = template.format(read=plan.read_timeout, write=plan.write_timeout)
    elif (cause := exc.__cause__) is None:
        text = exc.reason
    else:
        text = str(cause) or type(cause).__name__
        if cause.__cause__ is not None and str(cause.__cause__):
            text = f"{text} ({cause.__cause__})"
    if ex.status:
        text += (f"; the client's response was cut short after its head (status {ex.status}) and "
                 f"{ex.bytes_out} body byte{'' if ex.bytes_out == 1 else 's'}")
    return text


def _connect_error(exc: OSError) -> str:
    """What a failed connect says: Trio's ``open_tcp_stream`` puts each address's error in an
    exception group under its own ("all attempts to connect to ... failed")."""
    group = exc.__cause__
    if isinstance(group, BaseExceptionGroup):
        return "; ".join(str(e) for e in group.exceptions)
    return str(exc)


class _UpstreamHead:
    """The upstream request head of one :class:`Forward`, serialised once (``http.wire``).

    Only the request line, ``Host`` and the framing fields go through h11, so its
    state machine and framing rules see the request; the other fields were
    validated when h11 parsed the client's request, or built by the gateway, and
    are written once here, whichever connection (a retry's too) carries them.
    """

    __slots__ = ("event", "lines")

    def __init__(self, fwd: Forward) -> None:
        host, *rest = fwd.headers  # the decision puts Host first
        framing, self.lines = split_framing(rest)
        self.event = h11.Request(method=fwd.method, target=fwd.target, headers=[host, *framing],
                                 _parsed=_ALREADY_VALIDATED)

    def for_connection(self, conn: h11.Connection) -> bytes:
        """The whole head, h11's state on ``conn`` told it was sent."""
        return splice(conn.send(self.event), self.lines)


def _may_retry(upstream: UpstreamConnection, body: _TrackedBody | None, exc: UpstreamFailure, ex: Exchange) -> bool:
    """Whether a failed exchange may be sent again on a new connection (nginx's ``proxy_next_upstream``).

    Only a *reused* connection that failed before a byte of the answer arrived
    (the upstream closed it while it sat in the pool), and only when nothing of
    the client's body was consumed: such a request, of any method, never
    reached the upstream's application, and can be sent again whole.
    """
    return (upstream.reused and upstream.received == 0 and ex.status == 0 and exc.status == 502
            and (body is None or not body.started))


class _TrackedBody:
    """A :class:`BodySource` that remembers whether any of the client's body was taken."""

    __slots__ = ("source", "started")

    def __init__(self, source: BodySource) -> None:
        self.source = source
        self.started = False

    async def receive(self) -> bytes | None:
        chunk = await self.source.receive()
        if chunk:
            self.started = True
        return chunk


def _write_failure(exc: BaseException) -> str:
    """``upstream_reset`` for a reset or broken pipe, else ``upstream_write_failed``."""
    cause = exc.__cause__ if exc.__cause__ is not None else exc
    return "upstream_reset" if isinstance(cause, (ConnectionResetError, BrokenPipeError)) else "upstream_write_failed"


async def _send_head(upstream: UpstreamConnection, data: bytes, plan: UpstreamPlan) -> None:
    """Send the head of a request with a body (the body follows in :func:`_full_duplex`)."""
    # A bare CancelScope: trio.fail_after's generator wrapper costs ~5% of a request here.
    with trio.CancelScope(deadline=trio.current_time() + plan.write_timeout) as scope:
        try:
            await upstream.stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            raise UpstreamFailure(502, _write_failure(exc)) from exc
    if scope.cancelled_caught:
        raise UpstreamFailure(504, "upstream_write_timeout")
    upstream.requests += 1


async def _full_duplex(
    upstream: UpstreamConnection, body: _TrackedBody, sink: ResponseSink, plan: UpstreamPlan, ex: Exchange,
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
            await _send_body(upstream, body, plan, ex)
            uploaded.set()
        except Exception as exc:  # re-raised below, after the nursery
            failure.append(exc)
            nursery.cancel_scope.cancel()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(upload)
        try:
            await _relay_response(upstream, sink, plan, ex)
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


async def _send_body(upstream: UpstreamConnection, body: BodySource, plan: UpstreamPlan, ex: Exchange) -> None:
    """Stream the client's body up; the upload's deadline is ``write_timeout`` per write
    (the body source keeps the client's own ``client_body_timeout``)."""
    h, stream = upstream.h11, upstream.stream
    with trio.CancelScope() as scope:
        while True:
            chunk = await body.receive()
            if chunk is None:
                data = h.send(END_OF_MESSAGE)
            else:
                ex.bytes_in += len(chunk)
                data = h.send(h11.Data(data=chunk))
            scope.deadline = trio.current_time() + plan.write_timeout
            try:
                await stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                raise UpstreamFailure(502, _write_failure(exc)) from exc
            scope.deadline = math.inf
            if chunk is None:
                return
    raise UpstreamFailure(504, "upstream_write_timeout")  # only reached when the deadline expired


async def _relay_response(
    upstream: UpstreamConnection, sink: ResponseSink, plan: UpstreamPlan, ex: Exchange, *, head: bytes = b"",
    pool: UpstreamPool | None = None,
) -> None:
    """Send ``head`` (a body-less request), then relay the upstream's response to the client.

    With ``pool`` (a body-less request: nothing else writes to the upstream),
    the upstream connection is handed back as soon as its answer ended — to the
    pool, or closed in the background when it cannot be reused — before the
    last flush to the client: a slow client holds no upstream connection, and
    the next request finds it idle.  ``ex.upstream_released`` then tells the
    caller the connection is no longer its own.

    Output is batched: everything h11 can give without another read (often
    head, body and end together) goes out in one flush — one TLS record and
    one syscall instead of three.  The batch is flushed before every read
    and whenever it exceeds ``RELAY_FLUSH_BYTES``, so a large body still
    streams with backpressure.

    One cancel scope covers the whole exchange; its deadline moves with what
    is awaited — the upstream's ``write_timeout`` while sending, its
    ``read_timeout`` per read, the client's ``send_timeout`` per flush — and
    ``waiting`` says which one expired.
    """
    h = upstream.h11
    waiting = "write"
    with trio.CancelScope(deadline=trio.current_time() + plan.write_timeout) as scope:
        if head:
            try:
                await send_before_receive(upstream.stream, head)  # the answer is read next
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                raise UpstreamFailure(502, _write_failure(exc)) from exc
            upstream.requests += 1
        while True:
            try:
                event = h.next_event()
            except h11.RemoteProtocolError as exc:  # e.g. the upstream closed mid-body, or before answering
                raise UpstreamFailure(502, _read_failure(exc, upstream)) from exc
            if event is h11.NEED_DATA:
                if sink.buffered:
                    waiting = "send"
                    move_deadline(scope, sink.send_timeout)
                    await sink.flush()
                waiting = "read"
                move_deadline(scope, plan.read_timeout)
                try:
                    data = await upstream.stream.receive_some(TLS_RECEIVE_SIZE)
                except (trio.BrokenResourceError, ssl.SSLError, OSError) as exc:
                    raise UpstreamFailure(502, _read_failure(exc, upstream)) from exc
                except trio.ClosedResourceError:
                    if ex.client_closed:
                        raise ClientGone("the client closed its connection while its request waited on the upstream") from None
                    raise
                upstream.received += len(data)
                h.receive_data(data)  # type: ignore[arg-type]  # h11 takes bytearray too
                continue
            if isinstance(event, h11.InformationalResponse):
                if event.status_code == 101:  # h11 takes one only for a request that proposed the switch
                    ex.status = 101
                    ex.upstream_answered = time.monotonic()
                    _upgradable(sink).switch(downstream_response_headers(event.headers, upgrade=True), event.reason)
                    waiting = "send"
                    move_deadline(scope, sink.send_timeout)
                    await sink.flush()
                    return
                continue  # other 1xx from upstream: we already answered 100-continue ourselves
            if isinstance(event, h11.Response):
                status = ex.status = event.status_code
                ex.upstream_answered = time.monotonic()
                sink.head(status, downstream_response_headers(event.headers, no_content=status == 204), event.reason)
            elif isinstance(event, h11.Data):
                ex.bytes_out += len(event.data)
                sink.data(event.data)
                if sink.buffered >= RELAY_FLUSH_BYTES:
                    waiting = "send"
                    move_deadline(scope, sink.send_timeout)
                    await sink.flush()
            elif isinstance(event, h11.EndOfMessage):
                sink.end()
                if pool is not None:
                    if not pool.give_back(upstream):
                        pool.discard(upstream)
                    ex.upstream_released = True
                waiting = "send"
                move_deadline(scope, sink.send_timeout)
                await sink.flush()
                return
            else:  # ConnectionClosed before the end of the response (the head may have gone already)
                raise UpstreamFailure(502, "upstream_closed")
    # only reached when the deadline expired
    if waiting == "send":
        raise ClientGone("client send timeout", reason="client_send_timeout")
    raise UpstreamFailure(504, "upstream_write_timeout" if waiting == "write" else "upstream_read_timeout")


def _upgradable(sink: ResponseSink) -> UpgradeSink:
    """``sink`` as the HTTP/1.1 sink that can switch; only that driver asks for an upgrade."""
    if not isinstance(sink, UpgradeSink):
        raise TypeError(f"{type(sink).__name__} cannot switch protocols")
    return sink


async def _tunnel(upstream: UpstreamConnection, sink: ResponseSink, plan: UpstreamPlan, ex: Exchange) -> None:
    """Relay the upgraded connection (:mod:`trio_gw.net.tunnel`) until either side ends, then close the
    upstream's (the HTTP/1.1 driver closes the client's)."""
    client, client_early = _upgradable(sink).tunnel_ends()
    try:
        up, down, reason = await relay_tunnel(
            client, client_early, upstream.stream, bytes(upstream.h11.trailing_data[0]),
            read_timeout=plan.read_timeout, write_timeout=plan.write_timeout, send_timeout=sink.send_timeout)
        ex.bytes_in += up
        ex.bytes_out += down
        ex.reason = reason
    finally:
        ex.upstream_released = True
        await upstream.aclose()


def _read_failure(exc: BaseException, upstream: UpstreamConnection) -> str:
    """The facts of a failed upstream read, for the pure classification."""
    cause = exc if isinstance(exc, ssl.SSLError) else exc.__cause__
    ssl_reason = cause.reason if isinstance(cause, ssl.SSLError) else None
    reset = isinstance(exc, ConnectionResetError) or isinstance(cause, ConnectionResetError)
    return upstream_read_failure(ssl_reason, str(exc), protocol_error=isinstance(exc, h11.RemoteProtocolError),
                                 reset=reset, closed=upstream.h11.trailing_data[1])
