"""Fuzz target ``upstream-h2``: what an HTTP/2 upstream answers, against the real upstream relay.

The gateway's side is the real :func:`trio_gw.net.upstream_h2.forward_h2` with
a real :class:`~trio_gw.net.upstream.UpstreamPool`, over an in-memory stream
pair, on a mock clock; the request is a GET, or (chosen from the whole input,
:func:`fuzz.targets._support.pick`) a POST whose 100,000-byte body needs the
upstream's flow-control credit.  The upstream's side is a program run by a
server-side ``h2.connection.H2Connection`` with outbound validation off, so it
also writes what HTTP/2 forbids; the rest of the input is appended raw.

The input format
----------------
An operation is an ASCII letter followed by fixed argument bytes; an argument
byte ``b`` is ``(b - 0x30) % n`` for a table of ``n`` choices (so ``0``-``9``
pick the first ten and any byte picks something); missing ones count as ``0``.

===  ======================  ===================================================
op   arguments               what the upstream does
===  ======================  ===================================================
H    status flags count      HEADERS on stream 1: ``:status`` from :data:`STATUSES`
     (name value) * count    (absent for ``-``), then ``count % 6`` fields from
                             :data:`FIELD_NAMES` x :data:`FIELD_VALUES`; flags
                             ``% 2``: END_STREAM
D    size flags              DATA of :data:`DATA_SIZES` bytes (within h2's own
                             view of the window; skipped where it refuses);
                             flags ``% 2``: END_STREAM
T                            trailers (``grpc-status: 0``) with END_STREAM
E                            an empty DATA frame with END_STREAM
R    code                    RST_STREAM on stream 1, error code ``% 14``
G    code last               GOAWAY, error code ``% 14``, last stream 0, 1 or 3
P                            PING
W    increment               WINDOW_UPDATE on the connection and on stream 1
S    setting                 SETTINGS with one of :data:`SETTINGS_CHOICES`
Z    pause                   what was written so far is sent; the upstream
                             waits :data:`PAUSES` virtual seconds
X                            the upstream closes the connection
.                            end of the program (dropped)
===  ======================  ===================================================

Any other byte ends the program; it and everything after it are sent raw after
the frames.  Before the program runs, the upstream reads until it has the
gateway's request head (as a real server would), and it reads and acknowledges
whatever the gateway sends from then on.

The invariant: ``forward_h2`` ends with the answer relayed to the sink (a head,
then data, then the end, each once and in that order), or raises
``UpstreamFailure`` whose ``ex.status`` is 0 exactly when nothing was relayed
(the contract of ``Proxy.forward``: then the client can still be given a 5xx,
else its connection is cut), or ``ClientGone`` after the head was relayed —
never another exception,
and never a hang: everything is bounded by the plan's timeouts (5 s, virtual).
A connection the relay hands back to the pool has no stream left open.
"""

from __future__ import annotations

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import trio
import trio.testing
from h2.settings import SettingCodes

from fuzz.targets._support import InvariantViolation, pick
from trio_gw.decision import Forward
from trio_gw.net.exchange import Exchange
from trio_gw.net.relay_errors import ClientGone, UpstreamFailure
from trio_gw.net.tls_client import UpstreamPlan
from trio_gw.net.upstream import PoolKey, UpstreamConnection, UpstreamPool
from trio_gw.net.upstream_h2 import H2Upstream, forward_h2

INVARIANT = ("any answer of an HTTP/2 upstream gives a relayed answer (head, data, end, in order, once), "
             "UpstreamFailure with ex.status 0 exactly when nothing was relayed, or ClientGone after the head; "
             "never another exception, never a hang; a pooled connection has no stream left open")

STATUSES = (b"200", b"204", b"304", b"404", b"502", b"100", b"103", b"abc", b"-", b"99")
FIELD_NAMES = (b"content-type", b"content-length", b"connection", b"x-a", b"Content-Type", b":status",
               b":path", b"te", b"transfer-encoding", b"set-cookie")
FIELD_VALUES = (b"0", b"5", b"text/plain", b"trailers", b"chunked", b"a b", b"", b"close", b"\x00", b"100000")
DATA_SIZES = (0, 1, 5, 100, 16384, 70000, 300_000)
PAUSES = (0.1, 1.0, 4.0, 10.0)
SETTINGS_CHOICES = (
    {SettingCodes.INITIAL_WINDOW_SIZE: 0}, {SettingCodes.INITIAL_WINDOW_SIZE: 1 << 20},
    {SettingCodes.MAX_FRAME_SIZE: 1 << 20}, {SettingCodes.MAX_CONCURRENT_STREAMS: 0},
    {SettingCodes.HEADER_TABLE_SIZE: 0}, {SettingCodes.ENABLE_PUSH: 0},
)
TIMEOUT = 5.0
BODY = b"b" * 100_000

SEEDS: dict[str, bytes] = {
    "ok": b"H010",
    "ok-with-length": b"H00111D21",
    "trailers": b"H000D20T",
    "refused": b"R7",
    "reset-mid-body": b"H000D3R2",
    "goaway-before": b"G00",
    "goaway-after": b"H000G01D11",
    "malformed-field": b"H00123E",
    "no-status": b"H8011E",
    "silent": b"Z3",
    "close": b"X",
    "window-zero": b"S0H0011E",
    "raw-garbage": b".\x00\x00\x04\x01\x00\x00\x00\x00\x00",
}


class _Sink:
    """A response sink that records what it was given and checks the order."""

    buffered = 0
    send_timeout = TIMEOUT

    def __init__(self) -> None:
        self.events: list[str] = []

    def head(self, status: int, headers: list[tuple[bytes, bytes]], reason: bytes) -> None:
        if self.events:
            raise InvariantViolation(f"a second head, after {self.events}")
        self.events.append("head")

    def data(self, data: bytes) -> None:
        if not self.events or self.events[-1] == "end":
            raise InvariantViolation(f"data outside a response: {self.events[-3:]}")
        self.events.append("data")

    def end(self) -> None:
        if not self.events or self.events[-1] == "end":
            raise InvariantViolation(f"an end outside a response: {self.events[-3:]}")
        self.events.append("end")

    async def flush(self) -> None:
        await trio.lowlevel.checkpoint()


class _Body:
    def __init__(self) -> None:
        self.chunks = [BODY[:40_000], BODY[40_000:], None]

    async def receive(self) -> bytes | None:
        await trio.lowlevel.checkpoint()
        return self.chunks.pop(0) if self.chunks else None


def _arg(program: bytes, i: int, n: int) -> int:
    return ((program[i] if i < len(program) else 0x30) - 0x30) % n


class _Locked:
    """The upstream's end of the pair, its writes serialised (the program and the drain both write)."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.lock = trio.Lock()

    async def send_all(self, data: bytes) -> None:
        async with self.lock:
            await self.stream.send_all(data)

    async def receive_some(self, size: int) -> bytes | bytearray:
        return await self.stream.receive_some(size)

    async def aclose(self) -> None:
        await self.stream.aclose()


async def _upstream(raw: trio.abc.Stream, data: bytes) -> None:
    stream = _Locked(raw)
    config = h2.config.H2Configuration(client_side=False, header_encoding=None, validate_outbound_headers=False,
                                       normalize_outbound_headers=False, validate_inbound_headers=False)
    conn = h2.connection.H2Connection(config)
    conn.initiate_connection()
    try:
        await stream.send_all(conn.data_to_send())
        while 1 not in conn.streams:  # the gateway's head arrives first, as for a real server
            received = await stream.receive_some(65536)
            if not received:
                return
            conn.receive_data(bytes(received))
        await stream.send_all(conn.data_to_send())
    except (h2.exceptions.ProtocolError, trio.BrokenResourceError, trio.ClosedResourceError):
        return
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_drain, stream, conn)
        await _play(stream, conn, data)


async def _drain(stream: _Locked, conn: h2.connection.H2Connection) -> None:
    """Read and acknowledge what the gateway sends (its body, window updates) until it closes."""
    try:
        while received := await stream.receive_some(65536):
            for event in conn.receive_data(bytes(received)):
                if isinstance(event, h2.events.DataReceived) and event.flow_controlled_length:
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            await stream.send_all(conn.data_to_send())
    except (h2.exceptions.ProtocolError, trio.BrokenResourceError, trio.ClosedResourceError):
        pass


async def _play(stream: _Locked, conn: h2.connection.H2Connection, data: bytes) -> None:
    i = 0
    raw = b""
    try:
        while i < len(data):
            op, i = data[i:i + 1], i + 1
            if op == b"H":
                status, flags, count = _arg(data, i, len(STATUSES)), _arg(data, i + 1, 2), _arg(data, i + 2, 6)
                i += 3
                fields = [] if STATUSES[status] == b"-" else [(b":status", STATUSES[status])]
                for _ in range(count):
                    fields.append((FIELD_NAMES[_arg(data, i, len(FIELD_NAMES))],
                                   FIELD_VALUES[_arg(data, i + 1, len(FIELD_VALUES))]))
                    i += 2
                _try(conn.send_headers, 1, fields, end_stream=bool(flags))
            elif op == b"D":
                size, flags = DATA_SIZES[_arg(data, i, len(DATA_SIZES))], _arg(data, i + 1, 2)
                i += 2
                payload = b"d" * min(size, max(0, conn.local_flow_control_window(1)) if 1 in conn.streams else 0)
                for start in range(0, max(len(payload), 1), conn.max_outbound_frame_size):
                    last = start + conn.max_outbound_frame_size >= len(payload)
                    _try(conn.send_data, 1, payload[start:start + conn.max_outbound_frame_size],
                         end_stream=bool(flags) and last)
            elif op == b"T":
                _try(conn.send_headers, 1, [(b"grpc-status", b"0")], end_stream=True)
            elif op == b"E":
                _try(conn.end_stream, 1)
            elif op == b"R":
                _try(conn.reset_stream, 1, _arg(data, i, 14))
                i += 1
            elif op == b"G":
                _try(conn.close_connection, _arg(data, i, 14), last_stream_id=(0, 1, 3)[_arg(data, i + 1, 3)])
                i += 2
            elif op == b"P":
                _try(conn.ping, b"12345678")
            elif op == b"W":
                _try(conn.increment_flow_control_window, 65535)
                _try(conn.increment_flow_control_window, 65535, stream_id=1)
                i += 1
            elif op == b"S":
                _try(conn.update_settings, SETTINGS_CHOICES[_arg(data, i, len(SETTINGS_CHOICES))])
                i += 1
            elif op == b"Z":
                await stream.send_all(conn.data_to_send())
                await trio.sleep(PAUSES[_arg(data, i, len(PAUSES))])
                i += 1
            elif op == b"X":
                await stream.send_all(conn.data_to_send())
                await stream.aclose()
                return
            else:
                raw = data[i:] if op == b"." else data[i - 1:]
                break
        await stream.send_all(conn.data_to_send() + raw)
        await trio.sleep_forever()  # the upstream keeps the connection open; the relay's deadlines end it
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        return


def _try(method: object, *args: object, **kwargs: object) -> None:
    """Run one h2 operation; what h2's own state refuses (a closed stream, no window) is skipped.

    IndexError: h2 cannot build a HEADERS frame from an empty field list (the upstream's side of
    this harness, not the gateway's).
    """
    try:
        method(*args, **kwargs)  # type: ignore[operator]
    except (h2.exceptions.ProtocolError, ValueError, KeyError, IndexError):
        pass


async def _one(data: bytes) -> None:
    gateway_end, upstream_end = trio.testing.memory_stream_pair()
    key = PoolKey("https", "up.test", 443, "up.test", 1)
    upstream = UpstreamConnection(key=key, stream=gateway_end, peer="up.test:443")
    upstream.h2 = H2Upstream()
    post = pick(data, 2) == 1
    fwd = Forward("s", "r", "s", b"POST" if post else b"GET", b"/x",
                  [(b"host", b"up.test"), *([(b"content-length", b"100000")] if post else [])])
    plan = UpstreamPlan(key=key, peer="up.test:443", connect_timeout=TIMEOUT, read_timeout=TIMEOUT,
                        write_timeout=TIMEOUT)
    ex = Exchange(started=0.0)
    sink = _Sink()
    pool = UpstreamPool(size=4, idle_timeout=60.0, max_requests=100)
    outcome: BaseException | None = None
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_upstream, upstream_end, data)
        with trio.move_on_after(10 * TIMEOUT) as bound:
            try:
                await forward_h2(upstream, fwd, _Body() if post else None, sink, plan, ex, pool)
            except (UpstreamFailure, ClientGone) as exc:
                outcome = exc
        nursery.cancel_scope.cancel()
    if bound.cancelled_caught:
        raise InvariantViolation(f"the relay hung past every deadline (events {sink.events[-3:]})")
    if outcome is None:
        if sink.events[:1] != ["head"] or sink.events[-1] != "end":
            raise InvariantViolation(f"returned without a whole answer: {sink.events[:3]}...{sink.events[-2:]}")
        if ex.upstream_released and (upstream.h2.conn.open_outbound_streams or upstream.h2.conn.open_inbound_streams):
            raise InvariantViolation("a connection with a stream still open went back to the pool")
    elif isinstance(outcome, UpstreamFailure) and (ex.status == 0) != (not sink.events):
        raise InvariantViolation(f"UpstreamFailure {outcome.reason} with ex.status {ex.status} after {sink.events[:3]}: "
                                 "the caller could not tell whether it may still answer")
    elif isinstance(outcome, ClientGone) and not sink.events:
        raise InvariantViolation(f"ClientGone ({outcome}) before any answer: the client could still get a 502")


def fuzz_one(data: bytes) -> None:
    """Run one input (see the module docstring)."""
    try:
        trio.run(_one, data, clock=trio.testing.MockClock(autojump_threshold=0))
    except BaseExceptionGroup as group:  # a violation the sink saw is raised inside the relay's nursery
        violation = _first_violation(group)
        if violation is not None:
            raise violation from group
        raise


def _first_violation(group: BaseExceptionGroup) -> InvariantViolation | None:
    for exc in group.exceptions:
        if isinstance(exc, InvariantViolation):
            return exc
        if isinstance(exc, BaseExceptionGroup) and (found := _first_violation(exc)) is not None:
            return found
    return None
