"""HTTP/2 to upstreams (Tyk ``proxy_enable_http2``): the request head in HTTP/2 terms, the answer back.

Theory of operation
-------------------
The decision (``trio_gw.decision``) builds every upstream request head in
HTTP/1.1 terms: lowercase names, ``host`` first, hop-by-hop fields already
removed, ``transfer-encoding: chunked`` appended when the client's body is
chunked.  An upstream that chose ``h2`` by ALPN gets the same request as
HTTP/2 fields (RFC 9113 §8.3.1):

* ``:method``, ``:scheme`` (``https``: HTTP/2 is only offered over TLS),
  ``:authority`` from ``host`` (which is then not sent: §8.3.1 prefers the
  pseudo-header), ``:path`` from the request target;
* every other field as it is, except the connection-specific ones HTTP/2
  forbids (§8.2.2): ``connection``, ``keep-alive``, ``proxy-connection``,
  ``transfer-encoding``, ``upgrade``, and ``te`` other than ``trailers``.

Framing needs no field: DATA frames carry the body and END_STREAM ends it; a
``content-length`` the request had is kept (the upstream checks the DATA
against it, §8.1.1).

The answer's fields are validated by ``h2`` (``validate_inbound_headers``):
one ``:status`` first, no connection-specific fields, lowercase names.  What
is left here is to split ``:status`` off; the fields then go through the
same ``downstream_response_headers`` as an HTTP/1.1 answer's, and the status
line's reason phrase, which HTTP/2 does not carry, is the status's standard
one.  Trailers are not forwarded, as on HTTP/1.1.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from http import HTTPStatus

__all__ = ["CONNECTION_SPECIFIC", "MalformedResponse", "h2_request_fields", "h2_response_head", "reason_phrase"]

Header = tuple[bytes, bytes]

#: Fields RFC 9113 §8.2.2 forbids in HTTP/2 (``te`` is allowed only as ``trailers``), and ``host``,
#: which ``:authority`` replaces.
CONNECTION_SPECIFIC = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding",
                                 b"upgrade", b"host"})


class MalformedResponse(Exception):
    """The upstream's HTTP/2 answer has no usable ``:status``."""


def h2_request_fields(method: bytes, target: bytes, headers: Sequence[Header]) -> list[Header]:
    """The HTTP/2 fields of an upstream request head given in HTTP/1.1 terms (see the module docstring).

    Args:
        method: the request method.
        target: the origin-form target (``/path?query``).
        headers: the head's fields, ``host`` first, lowercase names.

    Returns:
        The pseudo-headers, then the fields an HTTP/2 request may carry.
    """
    authority: bytes | None = None
    rest: list[Header] = []
    for name, value in headers:
        if name == b"host":
            if authority is None:  # the decision puts Host first; a second one is never sent
                authority = value
            continue
        if name in CONNECTION_SPECIFIC or (name == b"te" and value.strip().lower() != b"trailers"):
            continue
        rest.append((name, value))
    return [(b":method", method), (b":scheme", b"https"), (b":authority", authority or b""), (b":path", target), *rest]


def h2_response_head(fields: Iterable[Header]) -> tuple[int, list[Header]]:
    """Split an HTTP/2 answer's fields into its status and its other fields.

    Raises:
        MalformedResponse: no ``:status``, or one that is not three digits.
    """
    status: int | None = None
    out: list[Header] = []
    for name, value in fields:
        if name == b":status":
            if len(value) == 3 and value.isdigit():
                status = int(value)
            continue
        if name.startswith(b":"):
            continue
        out.append((name, value))
    if status is None:
        raise MalformedResponse("the upstream's HTTP/2 answer has no valid :status")
    return status, out


#: Every standard status's reason phrase, built once (HTTP/2 carries none).
_PHRASES = {status.value: status.phrase.encode("ascii") for status in HTTPStatus}


def reason_phrase(status: int) -> bytes:
    """The standard reason phrase of ``status`` (HTTP/2 carries none), or ``b""``."""
    return _PHRASES.get(status, b"")
