"""HTTP/2 request heads, fed with real bytes through h2 (client encodes, server decodes)."""

from __future__ import annotations

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h11
import pytest

from trio_gw.http.errors import RequestRejected
from trio_gw.http.facts import RequestFacts
from trio_gw.http.h2_request import parse_h2_request, pseudo_header

LIMITS = {"max_header_size": 8192, "max_headers": 50}
BASE = [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", b"api.example:8443"), (b":path", b"/a?b=c")]


def received(headers: list[tuple[bytes, bytes]], *, validate: bool = True) -> list[tuple[bytes, bytes]]:
    """``headers`` sent by an h2 client and decoded by an h2 server, as the gateway gets them."""
    client = h2.connection.H2Connection(h2.config.H2Configuration(
        client_side=True, header_encoding=None, validate_outbound_headers=False, normalize_outbound_headers=False))
    server = h2.connection.H2Connection(h2.config.H2Configuration(
        client_side=False, header_encoding=None, validate_inbound_headers=validate))
    client.initiate_connection()
    server.initiate_connection()
    client.send_headers(1, headers, end_stream=True)
    events = server.receive_data(client.data_to_send())
    request = next(e for e in events if isinstance(e, h2.events.RequestReceived))
    return [(bytes(k), bytes(v)) for k, v in request.headers]


def reason_for(headers: list[tuple[bytes, bytes]], **limits: int) -> tuple[int, str] | None:
    try:
        parse_h2_request(received(headers), **{**LIMITS, **limits})
    except RequestRejected as exc:
        assert not exc.close  # one stream is refused, never the connection
        return exc.status, exc.reason
    return None


def test_plain_request_becomes_an_http11_head() -> None:
    head = parse_h2_request(received([*BASE, (b"accept", b"*/*"), (b"cookie", b"a=1"), (b"cookie", b"b=2")]),
                            **LIMITS)
    assert (head.method, head.target, head.content_length) == (b"GET", b"/a?b=c", None)
    assert head.headers[0] == (b"host", b"api.example:8443")
    assert (b"accept", b"*/*") in head.headers
    assert (b"cookie", b"a=1; b=2") in head.headers  # h2 joins split cookies (RFC 9113 §8.2.3)
    assert not any(name.startswith(b":") for name, _ in head.headers)


def test_host_header_without_authority_is_the_host() -> None:
    headers = [(b":method", b"GET"), (b":scheme", b"https"), (b":path", b"/"), (b"host", b"h.example")]
    head = parse_h2_request(received(headers), **LIMITS)
    assert head.headers == [(b"host", b"h.example")]


def test_content_length() -> None:
    head = parse_h2_request(received([*BASE, (b"content-length", b"12")]), **LIMITS)
    assert head.content_length == 12
    assert reason_for([*BASE, (b"content-length", b"1"), (b"content-length", b"1")]) == (400, "bad_content_length")
    with pytest.raises(h2.exceptions.ProtocolError):  # h2 refuses a non-decimal length itself
        received([*BASE, (b"content-length", b"-1")])


@pytest.mark.parametrize(("path", "expected"), [
    (b"*", (400, "asterisk_form")),
    (b"http://a/b", (400, "invalid_target")),
    (b"a/b", (400, "invalid_target")),
])
def test_non_origin_form_paths(path: bytes, expected: tuple[int, str]) -> None:
    headers = [(b":method", b"OPTIONS"), (b":scheme", b"https"), (b":authority", b"a"), (b":path", path)]
    assert reason_for(headers) == expected


def test_connect_is_refused() -> None:
    headers = [(b":method", b"CONNECT"), (b":authority", b"upstream.example:443")]
    assert reason_for(headers) == (405, "connect_not_allowed")


def test_trace_is_refused_and_other_methods_are_not() -> None:
    trace = [(b":method", b"TRACE"), (b":scheme", b"https"), (b":authority", b"a"), (b":path", b"/x")]
    assert reason_for(trace) == (405, "trace_not_allowed")
    assert reason_for([(b":method", b"OPTIONS"), *trace[1:]]) is None


def test_control_characters_in_values() -> None:
    assert reason_for([*BASE, (b"x-a", b"a\x01b")]) == (400, "invalid_header")
    assert reason_for([*BASE, (b"x-a", b"a\x7fb")]) == (400, "invalid_header")
    assert reason_for([*BASE, (b"x-a", b"a\tb")]) is None


def test_malformed_authority() -> None:
    headers = [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", b"bad host"), (b":path", b"/")]
    assert reason_for(headers) == (400, "invalid_host")
    headers[2] = (b":authority", b"a:99999")
    assert reason_for(headers) == (400, "invalid_host")


def test_limits_count_the_equivalent_http11_head() -> None:
    assert reason_for([*BASE, *((f"x-{i}".encode(), b"v") for i in range(5))], max_headers=5) == (
        431, "too_many_headers")
    assert reason_for([*BASE, *((f"x-{i}".encode(), b"v") for i in range(4))], max_headers=5) is None
    big = [*BASE, (b"x-big", b"v" * 1000)]
    assert reason_for(big, max_header_size=1000) == (431, "header_too_large")
    assert reason_for(big, max_header_size=1100) is None


def test_what_h2_refuses_never_reaches_the_parser() -> None:
    """Connection-specific fields, TE other than trailers, uppercase names: connection errors in h2."""
    for bad in ([*BASE, (b"connection", b"close")], [*BASE, (b"transfer-encoding", b"chunked")],
                [*BASE, (b"te", b"gzip")], [*BASE, (b"X-Upper", b"1")], [*BASE, (b"upgrade", b"h2c")],
                [*BASE, (b"x-a", b"a\r\nb")], [*BASE[:3]]):
        with pytest.raises(h2.exceptions.ProtocolError):
            received(bad)
    assert reason_for([*BASE, (b"te", b"trailers")]) is None


def test_pseudo_header_for_logging() -> None:
    assert pseudo_header(BASE, b":path") == b"/a?b=c"
    assert pseudo_header([(b"host", b"a"), (b":path", b"/")], b":path") is None


def test_facts_match_the_http11_facts() -> None:
    head = parse_h2_request(received([*BASE, (b"x-route", b"blue")]), **LIMITS)
    h2_facts = RequestFacts.from_head(head.method, head.target, head.headers, protocol="https", sni="api.example",
                                      header_names=frozenset({"x-route"}))
    request = h11.Request(method="GET", target="/a?b=c", headers=[("Host", "api.example:8443"), ("X-Route", "blue")])
    h11_facts = RequestFacts.from_h11(request, protocol="https", sni="api.example",
                                      header_names=frozenset({"x-route"}))
    assert h2_facts == h11_facts
    assert (h2_facts.host, h2_facts.port, h2_facts.path, h2_facts.query) == ("api.example", 8443, "/a", "b=c")


def test_a_content_length_beyond_max_body_size_is_refused_on_its_stream() -> None:
    fields = [*BASE, (b"content-length", b"1025")]
    with pytest.raises(RequestRejected) as info:
        parse_h2_request(fields, max_header_size=8192, max_headers=50, max_body_size=1024)
    assert (info.value.status, info.value.reason, info.value.close) == (413, "body_too_large", False)
    assert parse_h2_request(fields, max_header_size=8192, max_headers=50, max_body_size=1025).content_length == 1025
