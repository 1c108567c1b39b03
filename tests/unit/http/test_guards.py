"""Smuggling and sanity guards, fed with real bytes through h11."""

from __future__ import annotations

import json

import h11
import pytest
from hypothesis import given
from hypothesis import strategies as st

from trio_gw.http.errors import RequestRejected
from trio_gw.http.facts import RequestFacts
from trio_gw.http.guards import ChunkSizeGuard, check_body_size, check_request_head, origin_form
from trio_gw.http.responses import error_response, rejection_response

LIMITS = {"max_header_size": 8192, "max_headers": 50}


def parse(raw: bytes, **conn: int) -> h11.Request:
    connection = h11.Connection(h11.SERVER, **conn)
    connection.receive_data(raw)
    event = connection.next_event()
    assert isinstance(event, h11.Request), event
    return event


def reason_for(raw: bytes, **limits: int) -> tuple[int, str] | None:
    try:
        check_request_head(parse(raw, max_incomplete_event_size=1 << 20), **{**LIMITS, **limits})
    except RequestRejected as exc:
        assert exc.close
        return exc.status, exc.reason
    return None


def test_plain_request_passes() -> None:
    assert reason_for(b"GET /a?b=c HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n") is None


def test_chunked_request_passes() -> None:
    raw = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
    assert reason_for(raw) is None


def test_http10_without_host_passes() -> None:
    assert reason_for(b"GET / HTTP/1.0\r\n\r\n") is None


def test_cl_and_te_rejected() -> None:
    raw = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
    assert reason_for(raw) == (400, "cl_te_conflict")


def test_te_in_http10_rejected() -> None:
    raw = b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"
    assert reason_for(raw) == (400, "te_http10")


def test_duplicate_identical_content_length_is_collapsed_by_h11() -> None:
    # h11 merges equal duplicates into one header; what we forward is unambiguous.
    raw = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n"
    request = parse(raw)
    assert [v for n, v in request.headers if n == b"content-length"] == [b"5"]
    assert reason_for(raw) is None


@pytest.mark.parametrize("values", [[b"5", b"6"], [b"5, 6"]])
def test_conflicting_content_length_never_reaches_the_guard(values: list[bytes]) -> None:
    raw = b"POST / HTTP/1.1\r\nHost: a\r\n" + b"".join(b"Content-Length: " + v + b"\r\n" for v in values) + b"\r\n"
    connection = h11.Connection(h11.SERVER)
    connection.receive_data(raw)
    with pytest.raises(h11.RemoteProtocolError):
        connection.next_event()


def test_guard_rejects_multiple_content_length_itself() -> None:
    # Built directly: the guard does not rely on h11 having collapsed them.
    request = h11.Request(method="POST", target="/", headers=[("Host", "a"), ("Content-Length", "5")])
    object.__setattr__(request, "headers", [*request.headers, (b"content-length", b"5")])
    with pytest.raises(RequestRejected) as info:
        check_request_head(request, **LIMITS)
    assert info.value.reason == "bad_content_length"


def test_te_gzip_is_refused() -> None:
    raw = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
    connection = h11.Connection(h11.SERVER)
    connection.receive_data(raw)
    with pytest.raises(h11.RemoteProtocolError) as info:
        connection.next_event()
    assert info.value.error_status_hint == 501
    request = h11.Request(method="POST", target="/", headers=[("Host", "a")])
    object.__setattr__(request, "headers", [(b"host", b"a"), (b"transfer-encoding", b"gzip")])
    with pytest.raises(RequestRejected) as rejected:
        check_request_head(request, **LIMITS)
    assert (rejected.value.status, rejected.value.reason) == (501, "unsupported_te")


def test_huge_head_in_one_read_rejected() -> None:
    big = b"".join(b"X-Pad-%d: %s\r\n" % (i, b"a" * 1000) for i in range(40))
    raw = b"GET / HTTP/1.1\r\nHost: a\r\n" + big + b"\r\n"
    assert len(raw) > 40_000
    assert reason_for(raw, max_header_size=32 * 1024) == (431, "header_too_large")
    assert reason_for(raw, max_header_size=64 * 1024) is None


def test_h11_accepts_a_complete_40k_head_with_default_limits() -> None:
    raw = b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + b"a" * 40_000 + b"\r\n\r\n"
    request = parse(raw)
    with pytest.raises(RequestRejected) as info:
        check_request_head(request, max_header_size=32 * 1024, max_headers=100)
    assert info.value.status == 431


def test_too_many_headers() -> None:
    raw = b"GET / HTTP/1.1\r\nHost: a\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(60)) + b"\r\n"
    assert reason_for(raw) == (431, "too_many_headers")


@pytest.mark.parametrize("value", [b"a\x01b", b"a\x7fb", b"x\x1b[31m"])
def test_control_characters_in_values(value: bytes) -> None:
    raw = b"GET / HTTP/1.1\r\nHost: a\r\nX-Bad: " + value + b"\r\n\r\n"
    assert reason_for(raw) == (400, "invalid_header")


def test_bad_header_names_rejected_by_h11() -> None:
    for raw in [b"GET / HTTP/1.1\r\nHost: a\r\nBad Name: x\r\n\r\n", b"GET / HTTP/1.1\r\nHost: a\r\nX :y\r\n\r\n"]:
        connection = h11.Connection(h11.SERVER)
        connection.receive_data(raw)
        with pytest.raises(h11.RemoteProtocolError):
            connection.next_event()


def test_obs_fold_is_joined_and_passes() -> None:
    raw = b"GET / HTTP/1.1\r\nHost: a\r\nX-Fold: one\r\n two\r\n\r\n"
    request = parse(raw)
    assert (b"x-fold", b"one two") in list(request.headers)
    assert reason_for(raw) is None


@pytest.mark.parametrize(
    "line,expected",
    [
        (b"CONNECT a.com:443 HTTP/1.1", (405, "connect_not_allowed")),
        (b"TRACE / HTTP/1.1", (405, "trace_not_allowed")),
        (b"TRACE http://a.com/ HTTP/1.1", (405, "trace_not_allowed")),
        (b"OPTIONS * HTTP/1.1", (400, "asterisk_form")),
        (b"GET a.com HTTP/1.1", (400, "invalid_target")),
        (b"GET http://a.com/x HTTP/1.1", None),  # absolute-form: origin_form() takes it from here
        (b"OPTIONS / HTTP/1.1", None),
    ],
)
def test_target_forms(line: bytes, expected: tuple[int, str] | None) -> None:
    assert reason_for(line + b"\r\nHost: a.com:443\r\n\r\n") == expected


@pytest.mark.parametrize(
    ("target", "origin", "host"),
    [
        (b"http://api.example/x?q=1", b"/x?q=1", b"api.example"),
        (b"HTTPS://API.example:8443/a/b", b"/a/b", b"API.example:8443"),
        (b"http://api.example", b"/", b"api.example"),
        (b"http://api.example?q=1", b"/?q=1", b"api.example"),
        (b"http://[::1]:80/x", b"/x", b"[::1]:80"),
        (b"http://api.example//x", b"//x", b"api.example"),
    ],
)
def test_absolute_form_becomes_origin_form_with_its_authority_as_host(target: bytes, origin: bytes, host: bytes) -> None:
    # RFC 9112 §3.2.2: the target's authority wins over the Host header the client sent
    request = parse(b"GET " + target + b" HTTP/1.1\r\nX-A: 1\r\nHost: other.example\r\nX-B: 2\r\n\r\n")
    check_request_head(request, **LIMITS)
    assert origin_form(request.target, request.headers) == (origin, [(b"host", host), (b"x-a", b"1"), (b"x-b", b"2")])


_HOSTS = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?(\.[a-z0-9]{1,10}){0,3}(:[0-9]{1,5})?", fullmatch=True).filter(
    lambda h: ":" not in h or int(h.rsplit(":", 1)[1]) <= 65535)
_PATHS = st.from_regex(r"(/[A-Za-z0-9._~%-]{0,12}){0,4}(\?[A-Za-z0-9=&]{0,12})?", fullmatch=True)


@given(scheme=st.sampled_from(["http", "https", "HTTP"]), host=_HOSTS, path=_PATHS,
       sent_host=st.sampled_from([None, "elsewhere.example"]))
def test_absolute_form_gives_the_facts_of_its_origin_form(scheme: str, host: str, path: str, sent_host: str | None) -> None:
    """The gateway sees an absolute-form request exactly as the origin-form one with Host = its authority."""
    fields = [(b"accept", b"*/*")] + ([(b"host", sent_host.encode())] if sent_host else [])
    target, headers = origin_form(f"{scheme}://{host}{path}".encode(), fields)
    origin = path if path.startswith("/") else "/" + path
    expected = RequestFacts.from_head(b"GET", origin.encode(), [(b"host", host.encode()), (b"accept", b"*/*")],
                                      protocol="http")
    assert RequestFacts.from_head(b"GET", target, headers, protocol="http") == expected
    assert target == origin.encode()


def test_absolute_form_gives_an_http10_request_its_host() -> None:
    request = parse(b"GET http://api.example/x HTTP/1.0\r\nX-A: 1\r\n\r\n")
    check_request_head(request, **LIMITS)
    assert origin_form(request.target, request.headers) == (b"/x", [(b"host", b"api.example"), (b"x-a", b"1")])


@pytest.mark.parametrize(
    ("target", "reason"),
    [
        (b"ftp://api.example/x", "invalid_target"),
        (b"http:///x", "invalid_target"),  # no authority
        (b"http://user:pw@api.example/x", "invalid_target"),  # userinfo (RFC 9110 §4.2.4)
        (b"http://api.example#frag", "invalid_target"),
        (b"http://api.example:99999/x", "invalid_host"),
        (b"http://api.example:x/y", "invalid_host"),
        (b"http://[::1/x", "invalid_host"),
    ],
)
def test_absolute_form_refused(target: bytes, reason: str) -> None:
    with pytest.raises(RequestRejected) as info:
        origin_form(target, [(b"host", b"a")])
    assert (info.value.status, info.value.reason) == (400, reason)


def test_missing_host_rejected_by_h11_and_guard() -> None:
    connection = h11.Connection(h11.SERVER)
    connection.receive_data(b"GET / HTTP/1.1\r\n\r\n")
    with pytest.raises(h11.RemoteProtocolError):
        connection.next_event()
    request = h11.Request(method="GET", target="/", headers=[], http_version="1.0")
    object.__setattr__(request, "http_version", b"1.1")
    with pytest.raises(RequestRejected) as info:
        check_request_head(request, **LIMITS)
    assert info.value.reason == "missing_host"


def test_malformed_host_rejected() -> None:
    assert reason_for(b"GET / HTTP/1.1\r\nHost: a.com:99999\r\n\r\n") == (400, "invalid_host")
    assert reason_for(b"GET / HTTP/1.1\r\nHost: user@a.com\r\n\r\n") == (400, "invalid_host")


def test_rejection_response_shape() -> None:
    response, body = rejection_response(RequestRejected(400, "Bad request", reason="cl_te_conflict"))
    headers = dict(response.headers)
    assert response.status_code == 400
    assert headers[b"connection"] == b"close"
    assert headers[b"content-type"] == b"application/json; charset=utf-8"
    assert headers[b"content-length"] == str(len(body)).encode()
    assert body == b'{"message": "Bad request", "reason": "cl_te_conflict"}'


@pytest.mark.parametrize(
    "status,message",
    [
        (404, "no Route matched with those values"),
        (502, "An invalid response was received from the upstream server"),
        (504, "The upstream server is timing out"),
        (426, "Please use HTTPS protocol"),
        (431, "Request header fields too large"),
        (408, "Request timeout"),
        (500, "An unexpected error occurred"),
        (503, "Service unavailable"),
        (413, "Request body too large"),
        (418, "I'm a Teapot"),
    ],
)
def test_standard_messages(status: int, message: str) -> None:
    response, body = error_response(status)
    assert response.status_code == status
    assert json.loads(body) == {"message": message}


def test_request_rejected_needs_error_status() -> None:
    with pytest.raises(ValueError):
        RequestRejected(200, "ok", reason="x")


# --- HTTP versions and chunk sizes h11 would accept ---------------------------------------------------------


def test_http_2_0_on_an_http_1_1_connection_is_505() -> None:
    request = h11.Request(method="GET", target="/", headers=[("host", "a")], http_version="2.0")
    with pytest.raises(RequestRejected) as info:
        check_request_head(request, max_header_size=32768, max_headers=100)
    assert (info.value.status, info.value.reason) == (505, "http_version_not_supported")
    for version in ("1.1", "1.0"):
        check_request_head(h11.Request(method="GET", target="/", headers=[("host", "a")], http_version=version),
                           max_header_size=32768, max_headers=100)


def _chunked(pieces: list[bytes], extensions: bool = False) -> bytes:
    out = b""
    for piece in pieces:
        out += f"{len(piece):x}".encode() + (b";name=value" if extensions else b"") + b"\r\n" + piece + b"\r\n"
    return out + b"0\r\nx-trailer: t\r\n\r\n"


@given(st.lists(st.binary(min_size=1, max_size=40), max_size=6), st.booleans(), st.data())
def test_any_valid_chunked_body_in_any_split_passes(pieces: list[bytes], extensions: bool, data: st.DataObject) -> None:
    body = _chunked(pieces, extensions)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(body)), max_size=8)))
    guard = ChunkSizeGuard()
    for start, end in zip([0, *cuts], [*cuts, len(body)]):
        guard.feed(body[start:end])


@pytest.mark.parametrize("line", [b"f" * 17, b"1" * 20, b"zz", b"", b"-1"])
def test_a_chunk_size_h11_would_take_but_no_request_could_complete_is_refused(line: bytes) -> None:
    guard = ChunkSizeGuard()
    with pytest.raises(RequestRejected) as info:
        for byte in line + b"\r\nabc":
            guard.feed(bytes([byte]))
    assert (info.value.status, info.value.reason) == (400, "bad_chunk_size")
    ChunkSizeGuard().feed(b"f" * 16 + b"\r\nabc")  # 16 digits: a (large) chunk that can complete


def test_a_chunk_line_that_never_ends_is_refused() -> None:
    with pytest.raises(RequestRejected):
        ChunkSizeGuard().feed(b"1;" + b"x" * 5000)


@given(st.lists(st.binary(min_size=1, max_size=40), max_size=6), st.integers(1, 300), st.data())
def test_max_body_refuses_exactly_the_chunked_bodies_beyond_it(pieces: list[bytes], limit: int,
                                                               data: st.DataObject) -> None:
    """client_max_body_size over chunked bodies, in any split: the body within the limit passes, one
    beyond it is refused at the size line of the chunk that crosses it, before that chunk's data."""
    body = _chunked(pieces)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(body)), max_size=8)))
    guard = ChunkSizeGuard(max_body=limit)
    fed = 0
    try:
        for start, end in zip([0, *cuts], [*cuts, len(body)]):
            guard.feed(body[start:end])
            fed = end
    except RequestRejected as exc:
        assert (exc.status, exc.reason) == (413, "body_too_large")
        total = sum(len(p) for p in pieces)
        assert total > limit
        # the crossing chunk's size line was in the last piece fed; none of its data was before it
        crossing = next(i for i in range(len(pieces)) if sum(len(p) for p in pieces[:i + 1]) > limit)
        before = len(_chunked(pieces[:crossing])) - len(b"0\r\nx-trailer: t\r\n\r\n")
        assert fed <= before + len(f"{len(pieces[crossing]):x}\r\n")
    else:
        assert sum(len(p) for p in pieces) <= limit


@pytest.mark.parametrize(("length", "limit", "refused"), [
    (10, 0, False), (10, 10, False), (11, 10, True), (10 ** 12, 1 << 20, True),
])
def test_check_body_size(length: int, limit: int, refused: bool) -> None:
    if not refused:
        check_body_size(length, limit)
        return
    with pytest.raises(RequestRejected) as info:
        check_body_size(length, limit)
    assert (info.value.status, info.value.reason, info.value.message) == (413, "body_too_large",
                                                                           "Request body too large")


def test_check_request_head_refuses_a_content_length_beyond_max_body_size() -> None:
    head = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n"
    assert reason_for(head % 1025, max_body_size=1024) == (413, "body_too_large")
    assert reason_for(head % 1024, max_body_size=1024) is None
    assert reason_for(head % 10 ** 9) is None  # 0, the default: no limit
