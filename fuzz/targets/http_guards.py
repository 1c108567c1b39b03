"""Fuzz target ``http-guards``: h11 + ``trio_gw.http.guards`` on any bytes (pure, fast).

The input is parsed by an ``h11.Connection(h11.SERVER)`` configured as the
proxy configures it, every ``Request`` event goes through
:func:`trio_gw.http.guards.check_request_head`, pipelined requests are walked
by answering each with an empty response, exactly as the proxy does.  The same
input is fed in one chunk and byte by byte, and both feeds must agree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import h11

from fuzz.targets._support import InvariantViolation
from trio_gw.http.errors import RequestRejected
from trio_gw.http.guards import (
    DEFAULT_MAX_HEADER_SIZE,
    DEFAULT_MAX_HEADERS,
    check_request_head,
)

INVARIANT = """\
Any bytes give h11 events, ``h11.RemoteProtocolError`` or
``trio_gw.http.errors.RequestRejected`` — nothing else — and a rejection
carries a 4xx/5xx status and a non-empty snake_case reason.  Fed in one chunk
or byte by byte, the input gives the same requests, the same verdicts and the
same body bytes (inputs shorter than ``max_incomplete_event_size`` only: h11
accepts a complete over-long head in one read but not byte by byte, a
documented h11 behaviour the guard's own size check covers).
"""

#: h11's own limit for an incomplete event, as the proxy sets it (max_header_size).
MAX_INCOMPLETE = DEFAULT_MAX_HEADER_SIZE


@dataclass
class Trace:
    """What one feed produced: per request (method, target, verdict), the body bytes, how it ended."""

    requests: list[tuple[bytes, bytes, str]] = field(default_factory=list)
    body: bytearray = field(default_factory=bytearray)
    end: str = ""


def _verdict(request: h11.Request) -> str:
    try:
        check_request_head(request, max_header_size=DEFAULT_MAX_HEADER_SIZE, max_headers=DEFAULT_MAX_HEADERS)
    except RequestRejected as exc:
        if not (400 <= exc.status <= 599 and exc.reason and exc.reason.replace("_", "").isalnum()):
            raise InvariantViolation(f"malformed rejection: {exc.status} {exc.reason!r}") from exc
        return f"{exc.status} {exc.reason}"
    return "ok"


def _step(conn: h11.Connection, trace: Trace) -> bool:
    """Handle every event available; returns False when this feed is over."""
    while True:
        try:
            event: Any = conn.next_event()
        except h11.RemoteProtocolError as exc:
            trace.end = f"error {exc.error_status_hint}"
            return False
        if event is h11.NEED_DATA:
            return True
        if isinstance(event, h11.Request):
            verdict = _verdict(event)
            trace.requests.append((event.method, event.target, verdict))
            if verdict != "ok":
                trace.end = "rejected"
                return False
        elif isinstance(event, h11.Data):
            trace.body += event.data
        elif isinstance(event, h11.ConnectionClosed):
            trace.end = "closed"
            return False
        elif event is h11.PAUSED or isinstance(event, h11.EndOfMessage):
            if conn.their_state is not h11.DONE:
                trace.end = "paused"  # e.g. a protocol switch: the proxy stops here too
                return False
            conn.send(h11.Response(status_code=204, headers=[]))
            conn.send(h11.EndOfMessage())
            if conn.our_state is not h11.DONE:
                trace.end = "must-close"
                return False
            conn.start_next_cycle()
        elif not isinstance(event, h11.InformationalResponse):
            raise InvariantViolation(f"unexpected h11 event {event!r}")


def feed(data: bytes, *, step: int | None) -> Trace:
    """Run the input through h11 + guards, ``step`` bytes at a time (None: one chunk), then EOF."""
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_INCOMPLETE)
    trace = Trace()
    pieces = [data] if step is None else [data[i : i + step] for i in range(0, len(data), step)]
    for piece in [*pieces, b""]:
        conn.receive_data(piece)
        if not _step(conn, trace):
            return trace
    trace.end = trace.end or "need-data"
    return trace


def fuzz_one(data: bytes) -> None:
    """Feed ``data`` in one chunk and byte by byte; check the invariant."""
    whole = feed(data, step=None)
    trickled = feed(data, step=1)
    if len(data) >= MAX_INCOMPLETE:
        return
    if whole.requests != trickled.requests:
        raise InvariantViolation(f"requests differ: one chunk {whole.requests!r}, byte by byte {trickled.requests!r}")
    if whole.body != trickled.body:
        raise InvariantViolation("body bytes differ between one chunk and byte by byte")
    if whole.end != trickled.end:
        raise InvariantViolation(f"ending differs: one chunk {whole.end!r}, byte by byte {trickled.end!r}")


SEEDS: dict[str, bytes] = {
    "get": b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
    "post-chunked": b"POST /u HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nT: 1\r\n\r\n",
    "cl-te": b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "te-10": b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "two-hosts": b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    "obs-fold": b"GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n 2\r\n\r\n",
    "bare-lf": b"GET / HTTP/1.1\nHost: a\n\n",
    "ctl-in-value": b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x01b\r\n\r\n",
    "host-port": b"GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n",
    "pipelined": b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\nPOST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi",
}
