"""Fuzz target ``proxy-h2``: what an HTTP/2 client sends, against the real HTTP/2 proxy loop.

The input is what an h2 client sends on one connection after the connection
preface (the client magic and its SETTINGS, built by ``h2``).  It drives the
real :meth:`trio_gw.net.h2_proxy.Http2Server.serve_connection` over an
in-memory stream pair, with ``ConnectionFacts`` saying TLS 1.3, ALPN ``h2``, SNI
``api.test``; the generation, the fake upstream behind a real
:class:`~trio_gw.net.upstream.UpstreamPool` and the mock clock are those of
``proxy-request-head`` (:mod:`fuzz.targets.proxy_request_head`), plus a
``key-auth`` plugin route (``/keyed``, key ``secret-key`` in ``apikey``).

The input format
----------------
Random bytes rarely make a valid HEADERS frame (HPACK), so the input starts
with a small *program* whose operations are turned into well-formed frames by a
client-side ``h2.connection.H2Connection`` (outbound validation and
normalisation off, so it also writes malformed header lists); the rest of the
input is appended raw.  An operation is an ASCII letter followed by fixed
argument bytes; an argument byte ``b`` is the number ``(b - 0x30) % n`` for a
table of ``n`` choices, so the digits ``0``-``9`` pick the first ten and any
byte picks something.  Missing argument bytes count as ``0``.

===  ===========================  ============================================
op   arguments                    frame(s)
===  ===========================  ============================================
H    stream flags method path     HEADERS: ``:method`` ``:scheme`` ``:authority``
     authority count              ``:path`` from :data:`METHODS`, :data:`PATHS`,
     (name value) * count         :data:`AUTHORITIES` (each can be absent), then
                                  ``count % 8`` fields from :data:`HEADER_NAMES`
                                  x :data:`HEADER_VALUES` (pseudo-header names
                                  among them).  Flags (``% 64``): 1 END_STREAM,
                                  2 the block split into HEADERS+CONTINUATION,
                                  4 priority fields, 8/16 ``:scheme`` https,
                                  http, absent, ``HTTPS``; 32 padded.
D    stream flags size            DATA of :data:`DATA_SIZES` bytes (frames of at
                                  most 16384); flags 1 END_STREAM, 2 padded
R    stream code                  RST_STREAM, error code ``% 14``
W    stream increment             WINDOW_UPDATE (:data:`WINDOW_INCREMENTS`)
S    setting                      SETTINGS with one of :data:`SETTINGS_CHOICES`
K                                 SETTINGS ACK (acknowledges the gateway's)
P    ack                          PING (``ack % 2``: an unsolicited PING ACK)
G    code stream                  GOAWAY
Y    stream dependency            PRIORITY (weight 16, exclusive when equal)
C    stream                       a lone CONTINUATION
U    stream                       a frame of unknown type 0xfa
Z    pause                        end of a segment: the client waits
                                  :data:`PAUSES` virtual seconds before the next
Q    cancel                       end of a segment, then the gateway starts a
                                  graceful shutdown as ``Gateway._drain`` does:
                                  ``start_draining``, and when no stream is in
                                  flight or after ``graceful_shutdown_timeout``
                                  (at once if ``cancel % 2``) the connection's
                                  task is cancelled
.                                 end of the program (dropped)
===  ===========================  ============================================

A stream argument (``% 10``) is: 0 the stream last opened by an ``H`` (1 at
first), 1 the next new stream, 2-6 streams 1, 3, 5, 7, 9, 7 stream 0, 8 stream 2
(an even, server-side id), 9 stream 2**31-1.  Any other byte ends the program;
it and everything after it are appended raw (so raw frames, which start with a
length byte, usually ``0x00``, need no separator).  When the client's state
machine refuses an operation (a closed or idle stream, no window, a GOAWAY
sent, an invalid value), the same frame is written by hand instead (HPACK
blocks still come from the connection's encoder, so the gateway's decoder stays
in step): the gateway sees every frame the program asks for.  At most
:data:`MAX_DATA` bytes of DATA and :data:`MAX_PAUSE` seconds of pauses per input.

Each input runs twice: every segment in one chunk and the client closing its
side (EOF) after the last; and every segment in small pieces (1-8 bytes per
``receive_some``, from a CRC of the input, for the first :data:`PIECES_LIMIT`
bytes; large DATA then comes as it is), the client then *stalling* until the
gateway closes (idle GOAWAY).  How the fake upstream behaves is derived from a
CRC of the input too, as in ``proxy-request-head``, and so is the seed of
Trio's scheduler (which shuffles ready tasks): an input always runs the same
way, and different inputs try different task interleavings.  The settings are
``proxy-request-head``'s with ``keepalive_requests`` lowered to
:data:`KEEPALIVE_REQUESTS`, so a program reaches the GOAWAY after the last
accepted stream and the REFUSED_STREAM of those opened meanwhile.
"""

from __future__ import annotations

import random
import re
import struct
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
import trio
import trio.testing
from h2.settings import SettingCodes

from fuzz.targets import proxy_request_head as h1
from fuzz.targets._support import InvariantViolation, pick
from trio_gw.model.declarative import load_declarative_text
from trio_gw.net.http2 import Http2Server
from trio_gw.http.facts import ConnectionFacts
from trio_gw.net.exchange import Exchange, Proxy
from trio_gw.net.generation import Generation, GenerationBuilder, GenerationHolder
from trio_gw.net.http1 import Http1Server
from trio_gw.runtime.settings import load_settings

INVARIANT = """\
Any frames an HTTP/2 client sends give responses, resets or a GOAWAY, never an
exception escaping ``Http2Server.serve_connection`` and never a hang:

* ``serve_connection`` returns (no exception) within HANG_LIMIT seconds of
  virtual time, whether the client closes its side or stalls, and no
  ``trio_gw`` logger logs an error (the last-resort handlers of the connection
  and of each stream log unexpected exceptions);
* what the client receives starts with the gateway's SETTINGS and parses as
  HTTP/2 with a client-side ``h2`` connection (no ProtocolError, no frame cut
  short), and every HEADERS block it gets is a response head with a valid
  ``:status`` (an interim 1xx other than 101, or a final 2xx-5xx once); a
  GOAWAY's last stream id is at least every stream answered before it;
* what the gateway sends upstream parses as HTTP/1.1 requests (h11 server), a
  body cut short excepted;
* after the connection ends and the pool is closed, no upstream connection is
  left open and no stream is counted in flight.
"""

HANG_LIMIT = h1.HANG_LIMIT
#: Streams per connection before the gateway says GOAWAY (Kong's default is 10000).
KEEPALIVE_REQUESTS = 6
SETTINGS_OVERRIDES: dict[str, Any] = {**h1.SETTINGS_OVERRIDES, "keepalive_requests": KEEPALIVE_REQUESTS,
                                      "graceful_shutdown_timeout": "10s"}
LEAK_LIMIT = h1.LEAK_LIMIT
#: Largest DATA payload one input may make the client send (bytes).
MAX_DATA = 1_200_000
#: Most virtual seconds of client pauses (``Z``) one input may ask for.
MAX_PAUSE = 600.0
UPSTREAM_MODES = h1.UPSTREAM_MODES

CLIENT_KEY = "secret-key"
#: ``proxy-request-head``'s routes plus a ``key-auth`` route (a ``str.format`` template: ``{port}``).
DECLARATIVE = h1.DECLARATIVE + """\
  - name: keyed
    paths: ["/keyed"]
    plugins:
    - name: key-auth
      config: {{}}
consumers:
- username: alice
  keyauth_credentials:
  - key: """ + CLIENT_KEY + "\n"


@lru_cache(maxsize=1)
def generation() -> Generation:
    """The generation every run uses (compiled once per process by the real builder)."""
    settings = load_settings(None, environ={}, overrides=SETTINGS_OVERRIDES)
    now = int(time.time())
    entities = load_declarative_text(DECLARATIVE.format(port=h1._closed_port()), now=now)
    return GenerationBuilder(settings).build(entities)


# --- the program -----------------------------------------------------------------------

Header = tuple[bytes, bytes]

METHODS: tuple[bytes | None, ...] = (
    b"GET", b"POST", b"HEAD", b"PUT", b"DELETE", b"OPTIONS", b"CONNECT", b"PATCH", b"", None, b"get", b"G T",
)
PATHS: tuple[bytes | None, ...] = (
    b"/anything", b"/echo", b"/anything/x?a=1", b"/items/42", b"/secure", b"/redirect/p?q", b"/v", b"/keyed",
    b"/nowhere", b"/h", b"*", b"", b"anything", b"/%00/..%2f", None, b"/items/x", b"/a b", b"/\xff",
)
AUTHORITIES: tuple[bytes | None, ...] = (
    b"api.test", b"a", b"x.wild.test:8000", b"[::1]:80", b"bad host", b"a:99999", b"", None,
    b"api.test:8443", b"user@api.test",
)
SCHEMES: tuple[bytes | None, ...] = (b"https", b"http", None, b"HTTPS")
HEADER_NAMES: tuple[bytes, ...] = (
    b"content-length", b"expect", b"x-version", b"cookie", b"host", b"te", b"content-type", b"apikey",
    b"x-forwarded-for", b"connection", b"transfer-encoding", b"upgrade", b"keep-alive", b"X-Upper",
    b":path", b":protocol", b":status", b"", b"x y", b"x-pad", b"x/y",
)
HEADER_VALUES: tuple[bytes, ...] = (
    b"0", b"5", b"10", b"100-continue", b"2", b"a=1", b"api.test", b"trailers", CLIENT_KEY.encode(), b"chunked",
    b"", b"-1", b"1, 2", b"websocket", b" a", b"a\x01b", b"\xff", b"x" * 3000, b"x" * 20000, b"10.0.0.1",
)
DATA_SIZES: tuple[int, ...] = (5, 0, 1, 10, 100, 1000, 16384, 65535, 65536, 262145)
WINDOW_INCREMENTS: tuple[int, ...] = (100, 1, 65535, 2**31 - 1, 0, 1 << 20)
SETTINGS_CHOICES: tuple[tuple[int, int], ...] = (
    (SettingCodes.INITIAL_WINDOW_SIZE, 0), (SettingCodes.INITIAL_WINDOW_SIZE, 2**31 - 1),
    (SettingCodes.INITIAL_WINDOW_SIZE, 2**31), (SettingCodes.MAX_FRAME_SIZE, 2**24 - 1),
    (SettingCodes.MAX_FRAME_SIZE, 100), (SettingCodes.HEADER_TABLE_SIZE, 0),
    (SettingCodes.HEADER_TABLE_SIZE, 65536), (SettingCodes.MAX_CONCURRENT_STREAMS, 0),
    (SettingCodes.ENABLE_PUSH, 0), (SettingCodes.ENABLE_PUSH, 2), (SettingCodes.MAX_HEADER_LIST_SIZE, 10),
    (SettingCodes.ENABLE_CONNECT_PROTOCOL, 1), (0x99, 7), (SettingCodes.INITIAL_WINDOW_SIZE, 1),
)
PAUSES: tuple[float, ...] = (0.5, 1.0, 5.0, 11.0, 40.0)
OPCODES = frozenset(b"HDRWSKPGYCUZQ.")

_FRAME_DATA, _FRAME_HEADERS, _FRAME_PRIORITY, _FRAME_RST, _FRAME_SETTINGS = 0, 1, 2, 3, 4
_FRAME_PING, _FRAME_GOAWAY, _FRAME_WINDOW_UPDATE, _FRAME_CONTINUATION = 6, 7, 8, 9
_END_STREAM, _ACK, _END_HEADERS, _PADDED, _PRIORITY = 0x1, 0x1, 0x4, 0x8, 0x20
_MAX_FRAME = 16384


def frame(kind: int, flags: int, stream_id: int, payload: bytes) -> bytes:
    """One HTTP/2 frame, written by hand (any type, flags and stream)."""
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream_id) + payload


def split_frames(data: bytes) -> list[tuple[int, int, int, bytes]]:
    """``(type, flags, stream, payload)`` of each whole frame in ``data`` (a trailing piece is dropped)."""
    out = []
    pos = 0
    while pos + 9 <= len(data):
        length = int.from_bytes(data[pos : pos + 3], "big")
        end = pos + 9 + length
        if end > len(data):
            break
        kind, flags = data[pos + 3], data[pos + 4]
        stream_id = int.from_bytes(data[pos + 5 : pos + 9], "big") & 0x7FFFFFFF
        out.append((kind, flags, stream_id, data[pos + 9 : end]))
        pos = end
    return out


class _Reader:
    """The program's bytes, read as opcodes and argument numbers."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def arg(self, choices: int) -> int:
        if self.pos >= len(self.data):
            return 0
        byte = self.data[self.pos]
        self.pos += 1
        return (byte - 0x30) % choices

    def choose(self, table: Sequence[Any]) -> Any:
        return table[self.arg(len(table))]


@dataclass
class Segment:
    """Bytes the client sends at once, then how long it waits (virtual seconds).

    ``drain``: after sending them, the gateway starts a graceful shutdown
    (``"graceful"``: the connection is cancelled after its streams or the
    deadline; ``"cancel"``: at once).
    """

    data: bytes
    pause: float = 0.0
    drain: str | None = None


class ClientProgram:
    """Turns the input into segments of client bytes (see the module docstring)."""

    def __init__(self) -> None:
        config = h2.config.H2Configuration(
            client_side=True, header_encoding=None, validate_outbound_headers=False,
            normalize_outbound_headers=False, split_outbound_cookies=False,
        )
        self.conn = h2.connection.H2Connection(config)
        self.conn.initiate_connection()
        self.preface = self.conn.data_to_send()
        self.last = 1
        self.data_budget = MAX_DATA
        self.pause_budget = MAX_PAUSE
        self.segments: list[Segment] = []
        self.out = bytearray(self.preface)

    def stream(self, r: _Reader) -> int:
        k = r.arg(10)
        if k == 0:
            return self.last
        if k == 1:
            return self._next_id()
        return (1, 3, 5, 7, 9, 0, 2, 2**31 - 1)[k - 2]

    def _next_id(self) -> int:
        try:
            return int(self.conn.get_next_available_stream_id())
        except h2.exceptions.NoAvailableStreamIDError:
            return 2**31 - 1

    def _sent(self) -> bytes:
        return bytes(self.conn.data_to_send())

    def run(self, data: bytes) -> list[Segment]:
        r = _Reader(data)
        while r.pos < len(data):
            op = data[r.pos]
            if op not in OPCODES:
                break
            r.pos += 1
            if op == ord("."):
                break
            self.op(op, r)
        self.out += data[r.pos :]
        self.segments.append(Segment(bytes(self.out)))
        return self.segments

    def op(self, op: int, r: _Reader) -> None:
        """Append the frames of one operation (its opcode already read) or end a segment."""
        c = self.conn
        if op == ord("H"):
            self.headers(r)
        elif op == ord("D"):
            sid, flags, size = self.stream(r), r.arg(4), r.choose(DATA_SIZES)
            size = min(size, self.data_budget)
            self.data_budget -= size
            self.data(sid, b"d" * size, end=bool(flags & 1), padded=bool(flags & 2))
        elif op == ord("R"):
            sid, code = self.stream(r), r.arg(14)
            self._try(lambda: c.reset_stream(sid, code), frame(_FRAME_RST, 0, sid, struct.pack(">I", code)))
        elif op == ord("W"):
            sid, inc = self.stream(r), r.choose(WINDOW_INCREMENTS)
            self._try(lambda: c.increment_flow_control_window(inc, stream_id=sid or None),
                      frame(_FRAME_WINDOW_UPDATE, 0, sid, struct.pack(">I", inc & 0x7FFFFFFF)))
        elif op == ord("S"):
            code, value = r.choose(SETTINGS_CHOICES)
            raw = frame(_FRAME_SETTINGS, 0, 0, struct.pack(">HI", code, value & 0xFFFFFFFF))
            self._try(lambda: c.update_settings({code: value}), raw)
        elif op == ord("K"):
            self.out += frame(_FRAME_SETTINGS, _ACK, 0, b"")
        elif op == ord("P"):
            if r.arg(2):
                self.out += frame(_FRAME_PING, _ACK, 0, b"fuzzpong")
            else:
                self._try(lambda: c.ping(b"fuzzping"), frame(_FRAME_PING, 0, 0, b"fuzzping"))
        elif op == ord("G"):
            code, sid = r.arg(14), self.stream(r)
            self._try(lambda: c.close_connection(code, last_stream_id=sid),
                      frame(_FRAME_GOAWAY, 0, 0, struct.pack(">II", sid, code)))
        elif op == ord("Y"):
            sid, dep = self.stream(r), self.stream(r)
            raw = frame(_FRAME_PRIORITY, 0, sid, struct.pack(">IB", dep | (1 << 31 if sid == dep else 0), 15))
            self._try(lambda: c.prioritize(sid, weight=16, depends_on=dep, exclusive=sid == dep), raw)
        elif op == ord("C"):
            self.out += frame(_FRAME_CONTINUATION, _END_HEADERS, self.stream(r), b"\x82")
        elif op == ord("U"):
            self.out += frame(0xFA, 0xFF, self.stream(r), b"junk")
        elif op == ord("Z"):
            pause = min(r.choose(PAUSES), self.pause_budget)
            self.pause_budget -= pause
            self.segments.append(Segment(bytes(self.out), pause))
            self.out = bytearray()
        elif op == ord("Q"):
            self.segments.append(Segment(bytes(self.out), drain="cancel" if r.arg(2) else "graceful"))
            self.out = bytearray()

    def _try(self, build: Any, raw: bytes) -> None:
        """Let the client's h2 write the frame; when its state machine refuses, write ``raw``."""
        try:
            build()
        except Exception:  # noqa: BLE001 - ProtocolError, ValueError, KeyError (unknown stream), ...
            self._sent()  # nothing was queued, but be sure
            self.out += raw
            return
        self.out += self._sent()

    def headers(self, r: _Reader) -> None:
        sid, flags = self.stream(r), r.arg(64)
        method, path, authority = r.choose(METHODS), r.choose(PATHS), r.choose(AUTHORITIES)
        scheme = SCHEMES[(flags >> 3) & 3]
        block: list[Header] = []
        for name, value in ((b":method", method), (b":scheme", scheme), (b":authority", authority), (b":path", path)):
            if value is not None:
                block.append((name, value))
        for _ in range(r.arg(8)):
            block.append((r.choose(HEADER_NAMES), r.choose(HEADER_VALUES)))
        end, split, prio, padded = bool(flags & 1), bool(flags & 2), bool(flags & 4), bool(flags & 32)
        try:
            self.conn.send_headers(sid, block, end_stream=end)
        except Exception:  # noqa: BLE001 - refused by the state machine, before encoding
            self._sent()
            encoded = self.conn.encoder.encode(block)
        else:
            sent = self._sent()
            if not (split or padded or prio):
                self.out += sent
                self._opened(sid)
                return
            encoded = b"".join(self._fragment(kind, fl, p) for kind, fl, _, p in split_frames(sent))
            self._opened(sid)
        self.out += self._header_frames(sid, bytes(encoded), end=end, split=split, prio=prio, padded=padded)

    def _opened(self, sid: int) -> None:
        if sid % 2 == 1:
            self.last = sid

    @staticmethod
    def _fragment(kind: int, flags: int, payload: bytes) -> bytes:
        if kind != _FRAME_HEADERS:
            return payload  # CONTINUATION
        if flags & _PADDED:
            payload = payload[1 : len(payload) - payload[0]]
        if flags & _PRIORITY:
            payload = payload[5:]
        return payload

    @staticmethod
    def _header_frames(sid: int, block: bytes, *, end: bool, split: bool, prio: bool, padded: bool) -> bytes:
        """HEADERS (+ CONTINUATION) carrying ``block``, written by hand."""
        pieces = [block[i : i + _MAX_FRAME - 16] for i in range(0, len(block), _MAX_FRAME - 16)] or [b""]
        if split and len(pieces) == 1 and len(block) > 1:
            pieces = [block[: len(block) // 2], block[len(block) // 2 :]]
        elif split and len(pieces) == 1:
            pieces = [block, b""]
        flags = (_END_STREAM if end else 0) | (_PRIORITY if prio else 0) | (_PADDED if padded else 0)
        payload = pieces[0]
        if prio:
            payload = struct.pack(">IB", 0, 31) + payload
        if padded:
            payload = b"\x05" + payload + b"\x00" * 5
        if len(pieces) == 1:
            flags |= _END_HEADERS
        out = frame(_FRAME_HEADERS, flags, sid, payload)
        for i, piece in enumerate(pieces[1:], start=2):
            out += frame(_FRAME_CONTINUATION, _END_HEADERS if i == len(pieces) else 0, sid, piece)
        return out

    def data(self, sid: int, body: bytes, *, end: bool, padded: bool) -> None:
        pieces = [body[i : i + _MAX_FRAME - 16] for i in range(0, len(body), _MAX_FRAME - 16)] or [b""]
        for i, piece in enumerate(pieces):
            last = end and i == len(pieces) - 1
            pad = 4 if padded else None
            payload = (b"\x04" + piece + b"\x00" * 4) if padded else piece
            raw = frame(_FRAME_DATA, (_END_STREAM if last else 0) | (_PADDED if padded else 0), sid, payload)
            self._try(lambda p=piece, e=last, n=pad: self.conn.send_data(sid, p, end_stream=e, pad_length=n), raw)


def client_segments(data: bytes) -> list[Segment]:
    """The input as the client sends it: the preface, the program's frames, the raw rest."""
    return ClientProgram().run(data)


# --- one connection --------------------------------------------------------------------


#: Bytes of a connection delivered in small pieces; the rest (large DATA) as it comes.
PIECES_LIMIT = 16384


class SmallPieces(trio.abc.Stream):
    """Wraps a stream so that ``receive_some`` returns at most ``size`` bytes (the first PIECES_LIMIT)."""

    def __init__(self, inner: trio.abc.Stream, size: int) -> None:
        self.inner = inner
        self.size = size
        self.received = 0

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        data = await self.inner.receive_some(self.size if self.received < PIECES_LIMIT else max_bytes)
        self.received += len(data)
        return data

    async def aclose(self) -> None:
        await self.inner.aclose()


@dataclass
class Outcome:
    """One connection's result."""

    output: bytes
    hung: bool
    leaked: bool
    in_flight: int
    upstream: h1.UpstreamLog
    exchanges: list[Exchange]


INFO = ConnectionFacts(client_ip="127.0.0.1", client_port=40000, server_port=8443, tls=True,
                      tls_version="TLSv1.3", cipher="TLS_AES_128_GCM_SHA256", sni="api.test", alpn="h2")


async def _connection(segments: Sequence[Segment], *, piece: int, eof: bool, mode: str) -> Outcome:
    gen = generation()
    exchanges: list[Exchange] = []
    upstream = h1.UpstreamLog()
    output = bytearray()
    client, server = trio.testing.memory_stream_pair()
    served: trio.abc.Stream = SmallPieces(server, piece) if piece else server
    finished = trio.Event()
    read_all = trio.Event()
    connection = trio.CancelScope()
    leaked = False
    in_flight = 0
    with trio.move_on_after(HANG_LIMIT) as hang:
        async with trio.open_nursery() as nursery:
            pool = h1.FakeUpstreamPool(nursery, mode, upstream)
            proxy = Proxy(GenerationHolder(gen), pool, lambda _info, ex: exchanges.append(ex))
            gateway = Http2Server(proxy, Http1Server(proxy))

            async def serve() -> None:
                try:
                    with connection:
                        await gateway.serve_connection(served, INFO)
                finally:
                    finished.set()

            async def read() -> None:
                try:
                    while chunk := await client.receive_some(65536):
                        output.extend(chunk)
                finally:
                    read_all.set()

            async def drain(cancel_at_once: bool) -> None:
                # what Gateway._drain does on SIGTERM
                proxy.start_draining()
                if not cancel_at_once:
                    with trio.move_on_after(gen.settings.graceful_shutdown_timeout):
                        while proxy.in_flight:
                            await trio.sleep(0.05)
                connection.cancel()

            nursery.start_soon(serve)
            nursery.start_soon(read)
            try:
                for segment in segments:
                    await client.send_all(segment.data)
                    if segment.drain is not None and not proxy.draining:
                        nursery.start_soon(drain, segment.drain == "cancel")
                    if segment.pause:
                        await trio.sleep(segment.pause)
                if eof:
                    await client.send_stream.aclose()
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass  # the gateway closed the connection first
            await finished.wait()
            await read_all.wait()
            await pool.aclose()
            in_flight = proxy.in_flight
            with trio.move_on_after(LEAK_LIMIT) as leak:
                while len(nursery.child_tasks) > 0:
                    await trio.sleep(1)
            leaked = leak.cancelled_caught
            nursery.cancel_scope.cancel()
    return Outcome(bytes(output), hang.cancelled_caught, leaked, in_flight, upstream, exchanges)


def _seed_scheduler(seed: int) -> None:
    """Seed the Random that Trio's scheduler shuffles ready tasks with (a private name)."""
    scheduler_random = getattr(trio._core._run, "_r", None)
    if isinstance(scheduler_random, random.Random):
        scheduler_random.seed(seed)


def run_connection(data: bytes, *, piece: int, eof: bool, mode: str) -> Outcome:
    """Run one connection to completion in a fresh Trio run with an autojumping mock clock.

    Args:
        piece: bytes per ``receive_some`` of the gateway (0: as sent).
        eof: the client closes its side after its last segment (else it stalls).
    """
    segments = client_segments(data)
    h1.ERRORS.records.clear()
    _seed_scheduler(zlib.crc32(data) ^ piece ^ (eof << 8))
    try:
        outcome = trio.run(
            lambda: _connection(segments, piece=piece, eof=eof, mode=mode),
            clock=trio.testing.MockClock(autojump_threshold=0),
        )
    except BaseExceptionGroup as group:
        leaves = h1._leaves(group)
        for leaf in leaves:
            if isinstance(leaf, h1.HarnessError):
                raise leaf
        if len(leaves) == 1:
            raise InvariantViolation(f"exception escaped serve_connection: {leaves[0]!r}") from leaves[0]
        raise InvariantViolation(f"exceptions escaped serve_connection: {leaves!r}") from group
    if h1.ERRORS.records:
        record = h1.ERRORS.records[0]
        cause = record.exc_info[1] if record.exc_info else None
        raise InvariantViolation(f"an error was logged ({record.name}): {record.getMessage()} {cause!r}") from cause
    return outcome


# --- the checks ------------------------------------------------------------------------

_STATUS = re.compile(rb"[1-5][0-9][0-9]")


@dataclass
class Received:
    """What the client made of the gateway's bytes."""

    statuses: dict[int, list[int]]
    resets: dict[int, int]
    goaway: int | None
    events: list[h2.events.Event]


def _checker(stream_ids: Sequence[int]) -> h2.connection.H2Connection:
    """A client connection that accepts whatever a real client may have allowed.

    The client's windows, frame size and table size depend on frames the fuzzer
    chose (raw ones included), so they are set to the protocol's maxima; the
    streams the gateway answers on are opened first (the frames that opened them
    may have been raw).
    """
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    conn.local_settings = h2.settings.Settings(client=True, initial_values={
        SettingCodes.INITIAL_WINDOW_SIZE: 2**31 - 1,
        SettingCodes.MAX_FRAME_SIZE: 2**24 - 1,
        SettingCodes.HEADER_TABLE_SIZE: 2**31 - 1,
        SettingCodes.MAX_HEADER_LIST_SIZE: 2**31 - 1,
    })
    conn.max_inbound_frame_size = 2**24 - 1
    conn.incoming_buffer.max_frame_size = 2**24 - 1
    conn.decoder.max_allowed_table_size = 2**31 - 1
    conn.decoder.max_header_list_size = 2**31 - 1
    conn.initiate_connection()
    conn.increment_flow_control_window(2**31 - 1 - 65535)
    for sid in stream_ids:
        conn.send_headers(sid, [(b":method", b"POST"), (b":scheme", b"https"), (b":authority", b"a"),
                                (b":path", b"/")], end_stream=False)
    conn.data_to_send()
    return conn


def check_output(output: bytes) -> Received:
    """Parse what the client received with an h2 client.

    Raises:
        InvariantViolation: it is not HTTP/2 starting with SETTINGS, a frame is cut
            short, or a HEADERS block is not a valid response head.
    """
    frames = split_frames(output)
    if not frames or frames[0][0] != _FRAME_SETTINGS or frames[0][1] & _ACK:
        raise InvariantViolation(f"output does not start with the gateway's SETTINGS: {output[:40]!r}")
    stream_ids = sorted({sid for _, _, sid, _ in frames if sid % 2 == 1})
    conn = _checker(stream_ids)
    try:
        events = conn.receive_data(output)
    except Exception as exc:  # whatever h2 cannot parse is the finding
        raise InvariantViolation(f"the client cannot parse the gateway's frames: {exc!r}") from exc
    whole = sum(9 + len(payload) for *_, payload in frames)
    if whole != len(output):
        raise InvariantViolation(f"the output ends inside a frame: {output[whole : whole + 40]!r}")
    received = Received(statuses={}, resets={}, goaway=None, events=events)
    for event in events:
        if isinstance(event, (h2.events.ResponseReceived, h2.events.InformationalResponseReceived)):
            status = dict(event.headers).get(b":status", b"")
            if not _STATUS.fullmatch(status):
                raise InvariantViolation(f"stream {event.stream_id}: invalid :status {status!r}")
            code = int(status)
            if isinstance(event, h2.events.InformationalResponseReceived) and (code >= 200 or code == 101):
                raise InvariantViolation(f"stream {event.stream_id}: interim response {code}")
            if isinstance(event, h2.events.ResponseReceived) and code < 200:
                raise InvariantViolation(f"stream {event.stream_id}: final response {code}")
            received.statuses.setdefault(event.stream_id, []).append(code)
        elif isinstance(event, h2.events.TrailersReceived):
            raise InvariantViolation(f"stream {event.stream_id}: a HEADERS block without :status")
        elif isinstance(event, h2.events.StreamReset):
            received.resets[event.stream_id] = int(event.error_code)
        elif isinstance(event, h2.events.ConnectionTerminated):
            received.goaway = int(event.error_code or 0)  # h2 sets it from every GOAWAY; typed Optional
            last = event.last_stream_id
            if last is not None and any(sid > last for sid in received.statuses):
                # the client may retry those streams as unprocessed (RFC 9113 §6.8)
                raise InvariantViolation(f"GOAWAY names stream {last} as the last processed, after answering "
                                         f"{sorted(received.statuses)}")
    return received


def check_outcome(outcome: Outcome, *, mode: str, feed: str) -> Received:
    """Apply the invariant to one connection's outcome.

    Raises:
        InvariantViolation: naming the feed, the upstream mode and what went wrong.
    """
    where = f"[feed={feed}, upstream={mode}]"
    if outcome.hung:
        raise InvariantViolation(f"{where} the connection did not end within {HANG_LIMIT} s (virtual)")
    if outcome.leaked:
        raise InvariantViolation(f"{where} an upstream connection stayed open after the connection ended")
    if outcome.in_flight:
        raise InvariantViolation(f"{where} {outcome.in_flight} stream(s) still counted in flight")
    if outcome.upstream.violations:
        raise InvariantViolation(f"{where} {outcome.upstream.violations[0]}")
    try:
        return check_output(outcome.output)
    except InvariantViolation as exc:
        raise InvariantViolation(f"{where} {exc}") from exc


def fuzz_one(data: bytes) -> None:
    """Feed ``data`` in one chunk per segment (then EOF) and in small pieces (then a stall)."""
    mode = UPSTREAM_MODES[pick(data, len(UPSTREAM_MODES))]
    outcome = run_connection(data, piece=0, eof=True, mode=mode)
    check_outcome(outcome, mode=mode, feed="one-chunk")
    mode = UPSTREAM_MODES[pick(data, len(UPSTREAM_MODES), salt=1)]
    piece = 1 + pick(data, 8, salt=2)
    outcome = run_connection(data, piece=piece, eof=False, mode=mode)
    check_outcome(outcome, mode=mode, feed=f"pieces-of-{piece}")


# --- seeds -----------------------------------------------------------------------------

def _arg(table: Sequence[Any], value: Any) -> bytes:
    return bytes([0x30 + table.index(value)])


def op_headers(stream: int = 1, *, end: bool = True, method: bytes | None = b"GET", path: bytes | None = b"/anything",
               authority: bytes | None = b"api.test", headers: Sequence[Header] = (), flags: int = 0) -> bytes:
    """The program text of one ``H`` (``stream`` is the selector: 1 = the next new stream)."""
    out = b"H" + bytes([0x30 + stream, 0x30 + (flags | end)])
    out += _arg(METHODS, method) + _arg(PATHS, path) + _arg(AUTHORITIES, authority) + bytes([0x30 + len(headers)])
    for name, value in headers:
        out += _arg(HEADER_NAMES, name) + _arg(HEADER_VALUES, value)
    return out


def op_data(size: int, stream: int = 0, *, end: bool = True) -> bytes:
    """The program text of one ``D`` (``stream`` 0: the stream last opened)."""
    return b"D" + bytes([0x30 + stream, 0x30 + end]) + _arg(DATA_SIZES, size)


def op_pause(seconds: float) -> bytes:
    return b"Z" + _arg(PAUSES, seconds)


_CL5 = (b"content-length", b"5")

#: Hand-written seeds (most also in ``fuzz/corpus/proxy-h2/*.txt``): programs, see the module docstring.
SEEDS: dict[str, bytes] = {
    "get": b"K" + op_headers() + op_pause(5.0),
    "head-404": b"K" + op_headers(method=b"HEAD", path=b"/nowhere", authority=b"a") + op_pause(5.0),
    "post-body": b"K" + op_headers(end=False, method=b"POST", path=b"/echo", headers=[_CL5]) + op_data(5)
                 + op_pause(5.0),
    "post-chunked": b"K" + op_headers(end=False, method=b"PUT", path=b"/anything/x?a=1") + op_data(5, end=False)
                    + op_data(10) + op_pause(5.0),
    "concurrent": b"K" + op_headers() + op_headers(path=b"/echo") + op_headers(path=b"/items/42")
                  + op_headers(path=b"/nowhere") + op_headers(path=b"/secure", authority=b"x.wild.test:8000")
                  + op_pause(5.0),
    "rst-mid-body": b"K" + op_headers(end=False, method=b"POST", path=b"/echo", headers=[(b"content-length", b"10")])
                    + op_data(5, end=False) + b"R08" + op_pause(5.0),
    "expect-100": b"K" + op_headers(end=False, method=b"POST", path=b"/echo",
                                    headers=[(b"expect", b"100-continue"), (b"content-length", b"10")])
                  + op_pause(1.0) + op_data(10) + op_pause(5.0),
    "keyed": b"K" + op_headers(path=b"/keyed", authority=b"a", headers=[(b"apikey", CLIENT_KEY.encode())])
             + op_pause(5.0),
    "keyed-missing": b"K" + op_headers(path=b"/keyed", authority=b"a") + op_pause(5.0),
    "continuation": b"K" + op_headers(flags=2 | 4 | 32, headers=[(b"cookie", b"a=1"), (b"cookie", b"2")])
                    + op_pause(5.0),
    "settings-ping": b"KS1P0W70" + op_headers(path=b"/v", authority=b"a", headers=[(b"x-version", b"2")])
                     + op_pause(5.0),
    "goaway": b"K" + op_headers() + b"G04",
    "raw-data-on-stream-0": b".\x00\x00\x01\x00\x00\x00\x00\x00\x00x",
}


def generated_seeds() -> dict[str, bytes]:
    """Valid request sequences and a few that test the edges (with :data:`SEEDS`)."""
    post = op_headers(end=False, method=b"POST", path=b"/echo")
    return {
        "post-large": b"K" + post + op_data(65535, end=False) + op_data(65535, end=False) + op_data(1000)
                      + op_pause(5.0),
        "post-over-window": post + op_data(65536) + op_pause(5.0),  # before the client acknowledged SETTINGS
        "big-window-settings": b"KS1" + op_headers(path=b"/echo") + op_pause(1.0) + b"W02" + op_pause(5.0),
        "trailers": b"K" + post + op_data(5, end=False) + op_headers(
            0, method=None, path=None, authority=None, flags=16, headers=[(b"x-version", b"2")]) + op_pause(5.0),
        "idle-timeout": op_pause(11.0) + op_pause(40.0),
        "body-timeout": b"K" + post + op_pause(11.0) + op_pause(40.0),
        "many-streams": b"K" + op_headers() * 20 + op_pause(5.0),
        "reset-after-answer": b"K" + op_headers() + op_pause(1.0) + b"R04" + op_pause(5.0),
        "unknown-frames": b"KU1Y23" + op_headers() + b"U0" + op_pause(5.0),
        "stray-continuation": b"K" + op_headers() + b"C0" + op_pause(5.0),
        "head": b"K" + op_headers(method=b"HEAD") + op_pause(5.0),
        "connect": b"K" + op_headers(method=b"CONNECT", path=None, flags=16) + op_pause(5.0),
        "bad-authority": b"K" + op_headers(authority=b"bad host") + op_pause(5.0),
        "no-authority": b"K" + op_headers(authority=None) + op_pause(5.0),
        "host-header": b"K" + op_headers(authority=None, headers=[(b"host", b"api.test")]) + op_pause(5.0),
        "redirect": b"K" + op_headers(path=b"/redirect/p?q", authority=b"a") + op_pause(5.0),
        "big-header": b"K" + op_headers(headers=[(b"x-pad", b"x" * 3000)] * 3) + op_pause(5.0),
        "hpack-bomb": b"K" + op_headers(headers=[(b"x-pad", b"x" * 20000)]) + op_pause(5.0),
        "window-update-0": b"K" + op_headers() + b"W04" + op_pause(5.0),
        "settings-frame-size": b"KS3" + op_headers(path=b"/echo") + op_pause(5.0),
        "client-goaway-mid-stream": b"K" + post + b"G01" + op_pause(5.0),
        # graceful shutdown: the open stream finishes, one opened meanwhile is refused
        "drain-mid-body": b"K" + post + op_data(5, end=False) + op_pause(0.5) + b"Q0" + op_headers()
                          + op_data(5, stream=2) + op_pause(5.0),
        "drain-stalled-body": b"K" + post + op_pause(0.5) + b"Q0" + op_pause(40.0),
        "drain-cancel": b"K" + op_headers(method=b"POST", end=False) + op_pause(0.5) + b"Q1" + op_pause(5.0),
        "drain-idle": b"K" + op_headers() + op_pause(1.0) + b"Q0" + op_pause(5.0),
        "drain-at-once": b"K" + op_headers() + b"Q1",
    }
