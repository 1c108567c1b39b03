"""What the hot path relies on in h11: ``_parsed=True`` skips the field regexes, not the framing rules."""

from __future__ import annotations

import h11
import pytest


def test_a_parsed_request_is_serialised_as_given_and_framed_by_h11() -> None:
    client = h11.Connection(h11.CLIENT)
    request = h11.Request(method=b"POST", target=b"/x", headers=[(b"host", b"a"), (b"content-length", b"3")],
                          _parsed=True)
    assert client.send(request) == b"POST /x HTTP/1.1\r\nhost: a\r\ncontent-length: 3\r\n\r\n"
    with pytest.raises(h11.LocalProtocolError):  # the declared length still binds
        client.send(h11.Data(data=b"four"))


def test_framing_is_still_checked_on_parsed_heads() -> None:
    with pytest.raises(h11.LocalProtocolError):
        h11.Request(method=b"GET", target=b"/", headers=[(b"host", b"a"), (b"content-length", b"1"),
                                                          (b"content-length", b"2")], _parsed=True)
    with pytest.raises(h11.LocalProtocolError):
        h11.Request(method=b"GET", target=b"/", headers=[(b"host", b"a"), (b"transfer-encoding", b"gzip")],
                    _parsed=True)


def test_without_parsed_the_field_regexes_run() -> None:
    """The reason the gateway passes ``_parsed`` only for fields h11 itself parsed."""
    with pytest.raises(h11.LocalProtocolError):
        h11.Request(method=b"GET", target=b"/", headers=[(b"host", b"a"), (b"x", b"bad\r\nvalue")])


def test_a_parsed_response_keeps_h11_state_right() -> None:
    server = h11.Connection(h11.SERVER)
    server.receive_data(b"HEAD / HTTP/1.1\r\nhost: a\r\n\r\n")
    assert isinstance(server.next_event(), h11.Request)
    server.next_event()
    head = server.send(h11.Response(status_code=200, headers=[(b"content-length", b"10")], reason=b"OK",
                                    _parsed=True))
    assert head == b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n"
    assert server.send(h11.EndOfMessage()) == b""  # a HEAD answer has no body, as h11 knows
