"""Hypothesis strategies shared by the bounded fuzz tests in ``tests/property/test_fuzz_*.py``.

Random bytes rarely get past an HTTP parser's first line, so the request
strategy builds *valid-looking* requests (pipelined, with every framing) and
then applies a few byte-level mutations, as a coverage-guided fuzzer would.
The HTTP/2 strategy builds programs of the ``proxy-h2`` target (opcodes that
become well-formed frames), then a few raw bytes, mutated the same way.
"""

from __future__ import annotations

from hypothesis import strategies as st

METHODS = [b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"OPTIONS", b"CONNECT", b"PATCH", b"G\x00T", b"get"]
TARGETS = [
    b"/anything", b"/anything/x?a=1&b", b"/echo", b"/items/42", b"/items/x", b"/secure", b"/redirect/p?q",
    b"/v", b"/h", b"/nowhere", b"*", b"http://a.test/anything", b"a.test:443", b"/%00/..%2f", b"",
    b"/anything#frag", b"//anything",
]
VERSIONS = [b"HTTP/1.1", b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0", b"HTTP/1.1 ", b"http/1.1"]
HEADER_NAMES = [
    b"Host", b"Content-Length", b"Transfer-Encoding", b"Connection", b"Expect", b"Upgrade", b"X-Version",
    b"X-Forwarded-For", b"X-Forwarded-Proto", b"Keep-Alive", b"TE", b"Trailer", b"Proxy-Authorization",
    b"Content-Type", b"X-Custom", b"Host ", b" Host", b"X\x00Y",
]
HEADER_VALUES = [
    b"a", b"api.test", b"x.wild.test:8000", b"[::1]:80", b"a:99999", b"0", b"5", b"-1", b"1, 2", b"chunked",
    b"gzip, chunked", b"chunked, gzip", b"close", b"keep-alive, x-custom", b"upgrade", b"100-continue",
    b"websocket", b"2", b"10.0.0.1, 1.2.3.4", b"https", b"", b"a\x01b", b"\xff\xfe", b"a\r\n b",
]


def _chunked(body: bytes, sizes: list[int]) -> bytes:
    out = b""
    rest = body
    for size in sizes:
        if not rest:
            break
        piece, rest = rest[: max(size, 1)], rest[max(size, 1) :]
        out += b"%x\r\n%s\r\n" % (len(piece), piece)
    if rest:
        out += b"%x\r\n%s\r\n" % (len(rest), rest)
    return out + b"0\r\n\r\n"


@st.composite
def http_request(draw: st.DrawFn) -> bytes:
    """One request: a head from the lists above plus a body framed one of several ways."""
    method = draw(st.sampled_from(METHODS))
    target = draw(st.sampled_from(TARGETS))
    version = draw(st.sampled_from(VERSIONS))
    headers = draw(st.lists(
        st.tuples(st.sampled_from(HEADER_NAMES), st.sampled_from(HEADER_VALUES) | st.binary(max_size=12)),
        max_size=5,
    ))
    if draw(st.booleans()):
        headers.insert(0, (b"Host", draw(st.sampled_from(HEADER_VALUES[:5]))))
    body = draw(st.binary(max_size=24))
    framing = draw(st.sampled_from(["none", "length", "length", "wrong-length", "chunked", "chunked-bad"]))
    if framing == "length":
        headers.append((b"Content-Length", str(len(body)).encode()))
    elif framing == "wrong-length":
        headers.append((b"Content-Length", str(len(body) + draw(st.integers(-3, 3))).encode()))
    elif framing.startswith("chunked"):
        headers.append((b"Transfer-Encoding", b"chunked"))
        body = _chunked(body, draw(st.lists(st.integers(1, 8), max_size=3)))
        if framing == "chunked-bad":
            body = body.replace(b"\r\n", b"\n", 1)
    head = method + b" " + target + b" " + version + b"\r\n"
    head += b"".join(name + b": " + value + b"\r\n" for name, value in headers)
    return head + b"\r\n" + body


@st.composite
def mutated(draw: st.DrawFn, base: st.SearchStrategy[bytes]) -> bytes:
    """``base`` with up to three byte-level edits (replace, delete, insert, truncate)."""
    data = bytearray(draw(base))
    for _ in range(draw(st.integers(0, 3))):
        op = draw(st.sampled_from(["replace", "delete", "insert", "truncate"]))
        pos = draw(st.integers(0, len(data)))
        if op == "replace" and pos < len(data):
            data[pos] = draw(st.integers(0, 255))
        elif op == "delete":
            del data[pos : pos + draw(st.integers(1, 4))]
        elif op == "insert":
            data[pos:pos] = draw(st.sampled_from([b"\r\n", b"\n", b" ", b":", b"\x00", b"0", b"\r"])
                                 | st.binary(min_size=1, max_size=3))
        else:
            del data[pos:]
    return bytes(data)


def http_traffic(max_requests: int = 3) -> st.SearchStrategy[bytes]:
    """What a client may send on one connection: pipelined requests, mutated."""
    pipeline = st.lists(http_request(), min_size=1, max_size=max_requests).map(b"".join)
    return mutated(pipeline)


# --- HTTP/2: programs of the ``proxy-h2`` target (see fuzz/targets/proxy_h2.py) --------

#: Argument bytes each ``proxy-h2`` opcode reads (``H`` also reads two per header field).
H2_ARGUMENTS = {b"D": 3, b"R": 2, b"W": 2, b"S": 1, b"K": 0, b"P": 1, b"G": 2, b"Y": 2, b"C": 1, b"U": 1, b"Z": 1,
                b"Q": 1}


def _arg(value: int) -> bytes:
    return bytes([0x30 + value])


@st.composite
def h2_operation(draw: st.DrawFn) -> bytes:
    """One operation of a ``proxy-h2`` program, its arguments mostly small (common choices)."""
    small = st.integers(0, 3) | st.integers(0, 20)
    op = draw(st.sampled_from([b"H", b"H", b"H", b"D", b"D", b"R", b"W", b"S", b"K", b"K", b"P", b"G", b"Y",
                               b"C", b"U", b"Z", b"Z", b"Q"]))
    if op == b"H":
        stream = draw(st.sampled_from([1, 1, 0, 2, 3, 7, 8]))
        flags = draw(st.sampled_from([0, 1, 1, 1]) | st.integers(0, 63))
        fields = draw(st.lists(st.tuples(small, small), max_size=4))
        head = [stream, flags, *(draw(small) for _ in range(3)), len(fields)]
        return op + b"".join(_arg(v) for v in head) + b"".join(_arg(n) + _arg(v) for n, v in fields)
    return op + b"".join(_arg(draw(small)) for _ in range(H2_ARGUMENTS[op]))


def h2_traffic(max_operations: int = 10) -> st.SearchStrategy[bytes]:
    """A ``proxy-h2`` input: a program, then (after ``.``) a few raw bytes, the whole mutated."""
    program = st.lists(h2_operation(), min_size=1, max_size=max_operations).map(b"".join)
    raw = st.just(b"") | st.binary(max_size=24).map(lambda tail: b"." + tail)
    return mutated(st.tuples(program, raw).map(b"".join))
