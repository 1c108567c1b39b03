"""Fuzz target ``proxy-request-head``: any client bytes against the real proxy loop.

The input is what a client sends on one connection.  It is fed to the real
:meth:`trio_gw.net.http1.Http1Server.serve_connection` over an in-memory stream
pair, twice:

1. in one chunk, then the client closes its side (EOF), plain-HTTP connection;
2. one byte per ``receive_some`` (the proxy sees every possible split of the
   head), the client then *stalls* without closing, TLS connection facts
   (``tls=True``, SNI ``api.test``) so the https-only routes are taken.

The generation is built by the real generation builder from a declarative file
with several routes (prefix, regex, host, header, https-only with 426 and 301),
and their service is an in-memory fake upstream reached through a real
:class:`~trio_gw.net.upstream.UpstreamPool` (connections are pooled and reused
as in production).  How the fake upstream behaves is derived from a CRC of the
input (see :data:`UPSTREAM_MODES`), so the same input always makes the same run.

Everything runs under ``trio.testing.MockClock(autojump_threshold=0)``: every
timeout of the proxy (client head/body/keep-alive, upstream read/write) fires
at once in virtual time, so a run that waits *forever* is detected in
microseconds, and a run that merely waits for a timeout costs nothing.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import h11
import trio
import trio.testing
from h11._state import MIGHT_SWITCH_PROTOCOL  # where a request that proposed a switch waits (not exported)

from fuzz.targets._support import InvariantViolation, pick
from trio_gw.model.declarative import load_declarative_text
from trio_gw.http.facts import ConnectionFacts
from trio_gw.net.exchange import Exchange, Proxy
from trio_gw.net.generation import Generation, GenerationBuilder, GenerationHolder
from trio_gw.net.http1 import Http1Server
from trio_gw.net.upstream import PoolKey, UpstreamConnection, UpstreamPool
from trio_gw.runtime.settings import load_settings

INVARIANT = """\
Any bytes a client sends to the proxy give responses or a close, never an
exception escaping ``Http1Server.serve_connection`` and never a hang:

* ``serve_connection`` returns (no exception) within HANG_LIMIT seconds of
  virtual time, whether the client closes its side or stalls, and logs no
  error (its last-resort handler logs an unexpected exception and closes: for
  the fuzzer that is the same finding as an exception escaping);
* what the client receives is empty, or starts with ``HTTP/1.1 `` and parses
  (h11 client, with the methods of the requests sent) as complete responses,
  possibly followed by interim (1xx) responses and a close; only when the fake
  upstream itself cut its response short may the last final response be
  truncated; after a 101 (the "switch" upstream took a WebSocket handshake)
  come only bytes the client sent after that handshake, in order (a prefix:
  the tunnel echoes them until one side ends it);
* what the proxy sends upstream parses as HTTP/1.1 requests (h11 server), a
  body cut short by the client's EOF excepted;
* after the connection ends and the pool is closed, no upstream connection is
  left open.
"""

#: Virtual seconds a single connection may take.  Each request can legitimately
#: wait for a few timeouts of at most 10 s (below); a 64 KiB input holds at most
#: a few thousand requests, most of them answered without waiting.
HANG_LIMIT = 3600.0
#: Virtual seconds the fake upstreams get to notice their connection closed.
LEAK_LIMIT = 60.0

#: How the fake upstream answers (chosen by :func:`pick` from the input).
UPSTREAM_MODES: tuple[str, ...] = (
    "answer",  # reads the whole request, answers 200 with content-length, keep-alive
    "answer",  # (twice: the common case gets most runs)
    "chunked",  # answers 200 chunked, with hop-by-hop headers, then closes
    "close",  # closes the connection at once
    "garbage",  # answers with an unparsable status line
    "silent",  # reads, never answers (read timeout → 504)
    "truncate",  # answers content-length 100, sends 10 bytes, closes
    "switch",  # answers a request proposing an Upgrade 101, then echoes every byte; else as "answer"
)

SETTINGS_OVERRIDES: dict[str, Any] = {
    "prefix": "/nonexistent/trio-gw-fuzz",
    "proxy_listen": "127.0.0.1:0",
    "admin_listen": "off",
    "status_listen": "off",
    "database": "off",
    "proxy_access_log": "off",
    "client_header_timeout": "10s",
    "client_body_timeout": "10s",
    "keepalive_timeout": "10s",
    "max_header_size": 8192,
    "max_headers": 40,
    "trusted_ips": ["10.0.0.0/8"],
}

DECLARATIVE = """\
_format_version: "3.0"
services:
- name: fake
  url: http://127.0.0.1:{port}/base
  connect_timeout: 2000
  read_timeout: 2000
  write_timeout: 2000
  routes:
  - name: anything
    paths: ["/anything", "/echo"]
  - name: secure
    paths: ["/secure"]
    protocols: ["https"]
  - name: redirect
    paths: ["/redirect"]
    protocols: ["https"]
    https_redirect_status_code: 301
  - name: hosted
    hosts: ["api.test", "*.wild.test"]
    paths: ["/"]
    strip_path: false
    preserve_host: true
  - name: regex
    paths: ['~/items/\\d+$']
    methods: ["GET", "HEAD", "POST"]
  - name: header
    paths: ["/v"]
    headers:
      x-version: ["2"]
"""


def _closed_port() -> int:
    """A loopback port nothing listens on (the pool never needs it; see module doc)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@lru_cache(maxsize=1)
def generation() -> Generation:
    """The generation every run uses (compiled once per process by the real builder)."""
    settings = load_settings(None, environ={}, overrides=SETTINGS_OVERRIDES)
    now = int(time.time())
    entities = load_declarative_text(DECLARATIVE.format(port=_closed_port()), now=now)
    return GenerationBuilder(settings).build(entities)


class ErrorRecords(logging.Handler):
    """Collects ERROR-level records of the ``trio_gw`` loggers during a run."""

    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


ERRORS = ErrorRecords()
logging.getLogger("trio_gw").addHandler(ERRORS)


# --- the fake upstream -----------------------------------------------------------------


class HarnessError(RuntimeError):
    """The harness itself misbehaved (not a finding about trio_gw)."""


@dataclass
class UpstreamLog:
    """What the fake upstreams saw; violations are collected, not raised inside tasks."""

    opened: int = 0
    requests: int = 0
    violations: list[str] = field(default_factory=list)


class FakeUpstreamPool(UpstreamPool):
    """The real pool, except that a *new* connection is an in-memory fake upstream."""

    def __init__(self, nursery: trio.Nursery, mode: str, log: UpstreamLog) -> None:
        super().__init__(size=4, idle_timeout=30.0, max_requests=100)
        self.nursery = nursery
        self.mode = mode
        self.log = log

    def take(self, key: PoolKey) -> UpstreamConnection | None:
        pooled = super().take(key)
        if pooled is not None:
            return pooled
        ours, theirs = trio.testing.memory_stream_pair()
        self.log.opened += 1
        self.nursery.start_soon(_fake_upstream, theirs, self.mode, self.log)
        return UpstreamConnection(key=key, stream=ours, peer=f"{key.host}:{key.port}")


async def _upstream_event(stream: trio.abc.Stream, conn: h11.Connection, state: dict[str, bool]) -> Any:
    while True:
        event = conn.next_event()
        if event is not h11.NEED_DATA:
            return event
        data = await stream.receive_some(65536)
        if not data:
            state["eof"] = True
        conn.receive_data(bytes(data))


async def _fake_upstream(stream: trio.abc.Stream, mode: str, log: UpstreamLog) -> None:
    """Serve one upstream connection the way ``mode`` says; record protocol violations."""
    state = {"eof": False}
    conn = h11.Connection(h11.SERVER)
    try:
        if mode == "close":
            return
        while True:
            event = await _upstream_event(stream, conn, state)
            if not isinstance(event, h11.Request):
                return
            log.requests += 1
            event_method = event.method
            while not isinstance(event, h11.EndOfMessage):
                event = await _upstream_event(stream, conn, state)
                if isinstance(event, h11.ConnectionClosed):
                    return
            if mode == "switch" and conn.their_state is MIGHT_SWITCH_PROTOCOL:
                await _echo_after_101(stream, conn)
                return
            if not await _answer(stream, conn, mode, head=event_method == b"HEAD"):
                return
            if conn.our_state is h11.MUST_CLOSE:
                return
            conn.start_next_cycle()
    except h11.RemoteProtocolError as exc:
        if not state["eof"]:  # a body cut short by EOF is legitimate, anything else is not
            log.violations.append(f"the proxy sent an invalid request upstream: {exc!r}")
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    except Exception as exc:
        raise HarnessError(f"the fake upstream ({mode}) failed: {exc!r}") from exc
    finally:
        await trio.aclose_forcefully(stream)


async def _echo_after_101(stream: trio.abc.Stream, conn: h11.Connection) -> None:
    """Take the proposed switch, then send back every byte received until the proxy closes."""
    switch = h11.InformationalResponse(status_code=101, headers=[(b"connection", b"upgrade"),
                                                                 (b"upgrade", b"websocket")])
    data: bytes | bytearray = conn.send(switch) + bytes(conn.trailing_data[0])
    while True:
        await stream.send_all(data)
        data = await stream.receive_some(65536)
        if not data:
            return


async def _answer(
    stream: trio.abc.Stream, conn: h11.Connection, mode: str, *, head: bool
) -> bool:
    """Send the mode's answer (no body to HEAD); returns whether the connection may serve another."""
    if mode == "garbage":
        await stream.send_all(b"HTTP/1.1 2OO Okay\r\nContent-Length: x\r\n\r\n")
        return False
    if mode == "silent":
        while await stream.receive_some(65536):
            pass
        return False
    if mode == "truncate":
        out = conn.send(h11.Response(status_code=200, headers=[(b"content-length", b"100")]))
        if not head:
            out += conn.send(h11.Data(data=b"0123456789"))
        await stream.send_all(out)
        return False
    if mode == "chunked":
        headers = [(b"connection", b"close, x-hop"), (b"x-hop", b"1"), (b"keep-alive", b"timeout=5")]
        out = conn.send(h11.Response(status_code=200, headers=headers))
        for piece in (b"abc", b"", b"defgh"):
            if piece and not head:
                out += conn.send(h11.Data(data=piece))
        out += conn.send(h11.EndOfMessage(headers=[] if head else [(b"x-trailer", b"t")]))
        await stream.send_all(out)
        return False
    body = b'{"ok": true}'
    response = h11.Response(status_code=200, headers=[(b"content-length", str(len(body)).encode()),
                                                      (b"content-type", b"application/json")])
    out = conn.send(response)
    if not head:
        out += conn.send(h11.Data(data=body))
    await stream.send_all(out + conn.send(h11.EndOfMessage()))
    return True


# --- the client side -------------------------------------------------------------------


class OneByteAtATime(trio.abc.Stream):
    """Wraps a stream so that every ``receive_some`` returns at most one byte."""

    def __init__(self, inner: trio.abc.Stream) -> None:
        self.inner = inner

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        return await self.inner.receive_some(1)

    async def aclose(self) -> None:
        await self.inner.aclose()


@dataclass
class Outcome:
    """One connection's result."""

    output: bytes
    hung: bool
    leaked: bool
    upstream: UpstreamLog
    exchanges: list[Exchange]


async def _connection(data: bytes, *, trickle: bool, eof: bool, mode: str, info: ConnectionFacts) -> Outcome:
    gen = generation()
    exchanges: list[Exchange] = []
    upstream = UpstreamLog()
    output = bytearray()
    client, server = trio.testing.memory_stream_pair()
    served: trio.abc.Stream = OneByteAtATime(server) if trickle else server
    finished = trio.Event()
    leaked = False
    with trio.move_on_after(HANG_LIMIT) as hang:
        async with trio.open_nursery() as nursery:
            pool = FakeUpstreamPool(nursery, mode, upstream)
            proxy = Http1Server(Proxy(GenerationHolder(gen), pool, lambda _info, ex: exchanges.append(ex)))

            async def serve() -> None:
                try:
                    await proxy.serve_connection(served, info)
                finally:
                    finished.set()

            nursery.start_soon(serve)
            await client.send_all(data)
            if eof:
                await client.send_stream.aclose()
            while chunk := await client.receive_some(65536):
                output += chunk
            await finished.wait()
            await pool.aclose()
            with trio.move_on_after(LEAK_LIMIT) as leak:
                # every fake upstream ends when its connection is closed
                while len(nursery.child_tasks) > 0:
                    await trio.sleep(1)
            leaked = leak.cancelled_caught
            nursery.cancel_scope.cancel()
    return Outcome(bytes(output), hang.cancelled_caught, leaked, upstream, exchanges)


def request_methods(data: bytes, max_header_size: int) -> list[bytes]:
    """The methods of the requests h11 finds in ``data`` (to parse HEAD responses right)."""
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=max_header_size)
    conn.receive_data(data)
    conn.receive_data(b"")
    methods: list[bytes] = []
    try:
        while True:
            event = conn.next_event()
            if isinstance(event, h11.Request):
                methods.append(event.method)
            elif event is h11.PAUSED or isinstance(event, h11.EndOfMessage):
                if conn.their_state is not h11.DONE:
                    break
                conn.send(h11.Response(status_code=204, headers=[]))
                conn.send(h11.EndOfMessage())
                if conn.our_state is not h11.DONE:
                    break
                conn.start_next_cycle()
            elif event is h11.NEED_DATA or isinstance(event, h11.ConnectionClosed):
                break
    except h11.ProtocolError:
        pass
    return methods


def upgrade_tail(data: bytes, max_header_size: int) -> bytes | None:
    """What the client sent after a request that proposed a protocol switch (where h11 pauses),
    or ``None`` when no request did: after a 101, those bytes are the tunnel's."""
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=max_header_size)
    conn.receive_data(data)
    conn.receive_data(b"")
    try:
        while True:
            event = conn.next_event()
            if event is h11.PAUSED or isinstance(event, h11.EndOfMessage):
                if conn.their_state is MIGHT_SWITCH_PROTOCOL:
                    return bytes(conn.trailing_data[0])
                if conn.their_state is not h11.DONE:
                    return None
                conn.send(h11.Response(status_code=204, headers=[]))
                conn.send(h11.EndOfMessage())
                if conn.our_state is not h11.DONE:
                    return None
                conn.start_next_cycle()
            elif event is h11.NEED_DATA or isinstance(event, h11.ConnectionClosed):
                return None
    except h11.ProtocolError:
        return None


def check_responses(
    output: bytes, methods: Sequence[bytes], *, may_truncate: bool, switch_tail: bytes | None = None,
) -> list[int]:
    """Parse what the client received; returns the final statuses (and 101 for a switch).

    ``switch_tail`` (:func:`upgrade_tail`): the last request in ``methods`` proposed a
    protocol switch; after a 101 the rest of the output must be a prefix of these
    bytes (the fake upstream echoes them), and nothing else.

    Raises:
        InvariantViolation: the output is not a sequence of complete HTTP/1.1 responses.
    """
    if not output:
        return []
    if not output.startswith(b"HTTP/1.1 "):
        raise InvariantViolation(f"output does not start with 'HTTP/1.1 ': {output[:80]!r}")
    client = h11.Connection(h11.CLIENT)
    client.receive_data(output)
    client.receive_data(b"")
    statuses: list[int] = []
    while client.trailing_data[0]:
        method = methods[len(statuses)] if len(statuses) < len(methods) else b"GET"
        headers = [(b"host", b"fuzz")]
        if switch_tail is not None and len(statuses) == len(methods) - 1:
            headers += [(b"connection", b"upgrade"), (b"upgrade", b"websocket")]
        client.send(h11.Request(method=method, target="/", headers=headers))
        client.send(h11.EndOfMessage())
        final = False
        try:
            while True:
                event = client.next_event()
                if event is h11.PAUSED:  # the 101 came: the rest is the tunnel's
                    rest = bytes(client.trailing_data[0])
                    if switch_tail is None or not switch_tail.startswith(rest):
                        raise InvariantViolation(f"after the 101, bytes the client never sent: {rest[:80]!r}")
                    return statuses + [101]
                if isinstance(event, h11.Response):
                    statuses.append(event.status_code)
                    final = True
                elif isinstance(event, h11.EndOfMessage):
                    break
                elif isinstance(event, h11.ConnectionClosed):
                    raise InvariantViolation(f"response {len(statuses)} is truncated")
        except h11.RemoteProtocolError as exc:
            # A close after only interim responses (100 Continue) is a close: the client's
            # body never arrived.  A cut-short final response is allowed only when the
            # fake upstream itself cut it short.
            if not client.trailing_data[0] and (may_truncate or not final):
                return statuses
            raise InvariantViolation(f"response {len(statuses)} does not parse: {exc}") from exc
        if client.our_state is h11.MUST_CLOSE or client.their_state is h11.MUST_CLOSE:
            if client.trailing_data[0]:
                raise InvariantViolation(f"bytes after a connection-closing response: {client.trailing_data[0][:80]!r}")
            break
        client.start_next_cycle()
    return statuses


def run_connection(data: bytes, *, trickle: bool, eof: bool, mode: str, tls: bool) -> Outcome:
    """Run one connection to completion in a fresh Trio run with an autojumping mock clock."""
    info = ConnectionFacts(client_ip="127.0.0.1", client_port=40000, server_port=8443 if tls else 8000, tls=tls,
                          tls_version="TLSv1.3" if tls else None, sni="api.test" if tls else None)
    ERRORS.records.clear()
    try:
        outcome = trio.run(
            lambda: _connection(data, trickle=trickle, eof=eof, mode=mode, info=info),
            clock=trio.testing.MockClock(autojump_threshold=0),
        )
    except BaseExceptionGroup as group:
        leaves = _leaves(group)
        for leaf in leaves:
            if isinstance(leaf, HarnessError):
                raise leaf
        if len(leaves) == 1:
            raise InvariantViolation(f"exception escaped serve_connection: {leaves[0]!r}") from leaves[0]
        raise InvariantViolation(f"exceptions escaped serve_connection: {leaves!r}") from group
    if ERRORS.records:
        record = ERRORS.records[0]
        cause = record.exc_info[1] if record.exc_info else None
        raise InvariantViolation(f"an error was logged ({record.name}): {record.getMessage()} {cause!r}") from cause
    return outcome


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    out: list[BaseException] = []
    for exc in group.exceptions:
        out.extend(_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return out


def check_outcome(data: bytes, outcome: Outcome, *, mode: str, feed: str) -> None:
    """Apply the invariant to one connection's outcome.

    Raises:
        InvariantViolation: naming the feed, the upstream mode and what went wrong.
    """
    where = f"[feed={feed}, upstream={mode}]"
    if outcome.hung:
        raise InvariantViolation(f"{where} the connection did not end within {HANG_LIMIT} s (virtual)")
    if outcome.leaked:
        raise InvariantViolation(f"{where} an upstream connection stayed open after the connection ended")
    if outcome.upstream.violations:
        raise InvariantViolation(f"{where} {outcome.upstream.violations[0]}")
    methods = request_methods(data, SETTINGS_OVERRIDES["max_header_size"])
    tail = upgrade_tail(data, SETTINGS_OVERRIDES["max_header_size"])
    try:
        check_responses(outcome.output, methods, may_truncate=mode == "truncate", switch_tail=tail)
    except InvariantViolation as exc:
        raise InvariantViolation(f"{where} {exc}") from exc


def fuzz_one(data: bytes) -> None:
    """Feed ``data`` as one chunk (then EOF) and byte by byte (then a stall); check both runs."""
    mode = UPSTREAM_MODES[pick(data, len(UPSTREAM_MODES))]
    outcome = run_connection(data, trickle=False, eof=True, mode=mode, tls=False)
    check_outcome(data, outcome, mode=mode, feed="one-chunk")
    mode = UPSTREAM_MODES[pick(data, len(UPSTREAM_MODES), salt=1)]
    outcome = run_connection(data, trickle=True, eof=False, mode=mode, tls=True)
    check_outcome(data, outcome, mode=mode, feed="byte-at-a-time")


#: Hand-written seeds (also in ``fuzz/corpus/proxy-request-head/``).
SEEDS: dict[str, bytes] = {
    "get": b"GET /anything/x?a=1 HTTP/1.1\r\nHost: example.test\r\n\r\n",
    "head": b"HEAD /anything HTTP/1.1\r\nHost: a\r\n\r\n",
    "head-404": b"HEAD /nowhere HTTP/1.1\r\nHost: a\r\n\r\n",
    "post-cl": b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
    "post-chunked": b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    "expect-100": b"POST /echo HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc",
    "pipelined": b"GET /anything HTTP/1.1\r\nHost: a\r\n\r\nGET /nowhere HTTP/1.1\r\nHost: a\r\n\r\n"
                 b"GET /items/42 HTTP/1.1\r\nHost: a\r\n\r\n",
    "cl-te": b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "http10": b"GET /anything HTTP/1.0\r\n\r\n",
    "https-only": b"GET /secure HTTP/1.1\r\nHost: a\r\n\r\n",
    "redirect": b"GET /redirect/x?q HTTP/1.1\r\nHost: a\r\n\r\n",
    "hosted": b"GET /h HTTP/1.1\r\nHost: x.wild.test:8000\r\nX-Forwarded-For: 1.2.3.4\r\n\r\n",
    "header-route": b"GET /v HTTP/1.1\r\nHost: a\r\nX-Version: 2\r\nConnection: close\r\n\r\n",
    "absolute-form": b"GET http://a/anything HTTP/1.1\r\nHost: a\r\n\r\n",
    "connect": b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n",
    "upgrade": b"GET /anything HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
    "partial-head": b"GET /anything HTTP/1.1\r\nHost: a\r\n",
    "partial-body": b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc",
    "garbage": b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03",
}
