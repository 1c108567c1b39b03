"""The upstream request head in HTTP/2 terms and the answer's head back (proxy_enable_http2)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trio_gw.http.h2_upstream import (
    CONNECTION_SPECIFIC,
    MalformedResponse,
    h2_request_fields,
    h2_response_head,
    reason_phrase,
)

TOKEN = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=12).map(str.encode)
VALUE = st.binary(min_size=0, max_size=20).filter(lambda v: b"\r" not in v and b"\n" not in v)


def test_pseudo_headers_come_first_and_host_becomes_the_authority() -> None:
    fields = h2_request_fields(b"POST", b"/orders?x=1", [
        (b"host", b"api.example:8443"), (b"content-length", b"5"), (b"transfer-encoding", b"chunked"),
        (b"connection", b"keep-alive"), (b"te", b"gzip"), (b"x-team", b"a")])
    assert fields == [(b":method", b"POST"), (b":scheme", b"https"), (b":authority", b"api.example:8443"),
                      (b":path", b"/orders?x=1"), (b"content-length", b"5"), (b"x-team", b"a")]


def test_te_trailers_is_the_one_te_http2_allows() -> None:
    assert (b"te", b"trailers") in h2_request_fields(b"GET", b"/", [(b"host", b"h"), (b"te", b"trailers")])
    assert all(n != b"te" for n, _ in h2_request_fields(b"GET", b"/", [(b"host", b"h"), (b"te", b"deflate")]))


@given(st.lists(st.tuples(TOKEN | st.sampled_from(sorted(CONNECTION_SPECIFIC)), VALUE), max_size=12), VALUE)
def test_every_other_field_is_kept_in_order_and_no_connection_specific_one(fields: list[tuple[bytes, bytes]],
                                                                          host: bytes) -> None:
    out = h2_request_fields(b"GET", b"/p", [(b"host", host), *fields])
    assert [n for n, _ in out[:4]] == [b":method", b":scheme", b":authority", b":path"] and out[2][1] == host
    kept = [(n, v) for n, v in fields if n not in CONNECTION_SPECIFIC and n != b"te"]
    assert out[4:] == kept
    assert not {n for n, _ in out[4:]} & CONNECTION_SPECIFIC


def test_the_answer_s_status_is_split_off_and_unknown_pseudo_headers_dropped() -> None:
    status, fields = h2_response_head([(b":status", b"201"), (b"content-type", b"text/plain"), (b":odd", b"x")])
    assert (status, fields) == (201, [(b"content-type", b"text/plain")])


@pytest.mark.parametrize("fields", [[], [(b"content-type", b"a")], [(b":status", b"20")], [(b":status", b"2x0")]])
def test_an_answer_without_a_valid_status_is_malformed(fields: list[tuple[bytes, bytes]]) -> None:
    with pytest.raises(MalformedResponse):
        h2_response_head(fields)


def test_the_reason_phrase_is_the_standard_one_or_none() -> None:
    assert reason_phrase(404) == b"Not Found" and reason_phrase(299) == b""
