"""Heads written by ``http.wire`` mean exactly what h11 would have written for the whole field list."""

from __future__ import annotations

from collections import Counter

import h11
import pytest
from hypothesis import given
from hypothesis import strategies as st

from trio_gw.http.wire import field_lines, request_head, splice, split_framing

Header = tuple[bytes, bytes]

_TCHAR = "abcdefghijklmnopqrstuvwxyz0123456789-!#$%&'*+.^_`|~"
names = st.text(_TCHAR, min_size=1, max_size=12).map(str.encode).filter(
    lambda n: n not in (b"content-length", b"transfer-encoding", b"connection", b"host"))
values = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=20).map(str.encode)
fields = st.lists(st.tuples(names, values), max_size=8)
framings = st.sampled_from([
    [], [(b"content-length", b"0")], [(b"content-length", b"5")], [(b"transfer-encoding", b"chunked")],
    [(b"connection", b"close")], [(b"content-length", b"3"), (b"connection", b"close")],
])


def _parse_response(
    raw: bytes, method: bytes = b"GET",
) -> tuple[h11.Response, list[h11.Event | type[h11.NEED_DATA] | type[h11.PAUSED]]]:
    client = h11.Connection(h11.CLIENT)
    client.send(h11.Request(method=method, target=b"/", headers=[(b"host", b"x")]))
    client.send(h11.EndOfMessage())
    client.receive_data(raw)
    client.receive_data(b"")  # the end of stream frames a response without a length
    head = client.next_event()
    assert isinstance(head, h11.Response)
    rest: list[h11.Event | type[h11.NEED_DATA] | type[h11.PAUSED]] = []
    while True:
        event = client.next_event()
        rest.append(event)
        if isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
            return head, rest


def _server(request: bytes) -> h11.Connection:
    server = h11.Connection(h11.SERVER)
    server.receive_data(request)
    assert isinstance(server.next_event(), h11.Request)
    return server


def _respond_whole(server: h11.Connection, status: int, headers: list[Header], body: bytes) -> bytes:
    out = server.send(h11.Response(status_code=status, headers=headers))
    if body:
        out += server.send(h11.Data(data=body))
    return out + server.send(h11.EndOfMessage())


def _respond_spliced(server: h11.Connection, status: int, headers: list[Header], body: bytes) -> bytes:
    framing, lines = split_framing(headers)
    out = splice(server.send(h11.Response(status_code=status, headers=framing)), lines)
    if body:
        out += server.send(h11.Data(data=body))
    return out + server.send(h11.EndOfMessage())


@given(fields, framings, st.sampled_from([b"GET", b"HEAD"]), st.sampled_from([b"1.1", b"1.0"]),
       st.sampled_from([200, 204, 304, 404]))
def test_a_spliced_response_means_what_h11s_own_does(
    others: list[Header], framing: list[Header], method: bytes, version: bytes, status: int,
) -> None:
    length = next((int(v) for n, v in framing if n == b"content-length"), None)
    no_body = status in (204, 304) or method == b"HEAD"  # h11 writes no body for these, in both ways
    body = b"" if no_body else b"x" * (length if length is not None else 7)
    if status in (204, 304):
        framing = [h for h in framing if h[0] != b"content-length"]
    headers = others[:1] + framing + others[1:]  # framing fields among the others
    request = method + b" / HTTP/" + version + b"\r\nhost: x\r\n\r\n"
    whole = _respond_whole(_server(request), status, headers, body)
    spliced = _respond_spliced(_server(request), status, headers, body)
    head_a, rest_a = _parse_response(whole, method)
    head_b, rest_b = _parse_response(spliced, method)
    assert head_a.status_code == head_b.status_code
    assert Counter(head_a.headers) == Counter(head_b.headers)  # the same fields (order aside)
    assert [type(e) for e in rest_a] == [type(e) for e in rest_b]
    assert b"".join(e.data for e in rest_a if isinstance(e, h11.Data)) == \
        b"".join(e.data for e in rest_b if isinstance(e, h11.Data))


@given(fields, st.sampled_from([b"GET", b"DELETE", b"OPTIONS"]))
def test_a_request_head_is_what_h11_writes(others: list[Header], method: bytes) -> None:
    headers = [(b"host", b"upstream.example:8080"), *others]
    ours = request_head(method, b"/a?b=c", headers)
    theirs = h11.Connection(h11.CLIENT).send(h11.Request(method=method, target=b"/a?b=c", headers=headers))
    assert ours == theirs


def test_split_framing_keeps_order_and_every_field() -> None:
    headers = [(b"a", b"1"), (b"content-length", b"2"), (b"b", b"3"), (b"connection", b"close")]
    framing, lines = split_framing(headers)
    assert framing == [(b"content-length", b"2"), (b"connection", b"close")]
    assert lines == b"a: 1\r\nb: 3\r\n" == field_lines([(b"a", b"1"), (b"b", b"3")])


def test_h11_still_refuses_conflicting_lengths_among_the_framing() -> None:
    """The reason the framing fields, and only they, still go through h11."""
    framing, _ = split_framing([(b"x", b"1"), (b"content-length", b"1"), (b"content-length", b"2")])
    with pytest.raises(h11.LocalProtocolError):
        h11.Response(status_code=200, headers=framing)


def test_splice_refuses_an_incomplete_head() -> None:
    assert splice(b"HTTP/1.1 200 OK\r\n\r\n", b"a: 1\r\n") == b"HTTP/1.1 200 OK\r\na: 1\r\n\r\n"
    with pytest.raises(ValueError):
        splice(b"HTTP/1.1 200 OK\r\n", b"a: 1\r\n")
