"""HTTP/2 request heads, turned into the request the HTTP/1.1 path sees.

Theory of operation
-------------------
The ``h2`` library (``validate_inbound_headers=True``) already refuses, as a
connection error, what RFC 9113 §8.2–8.3 calls malformed: uppercase or empty
field names, connection-specific fields (``connection``, ``keep-alive``,
``proxy-connection``, ``transfer-encoding``, ``upgrade``), ``te`` other than
``trailers``, unknown, repeated, misplaced or missing pseudo-headers, an empty
``:path``, NUL/CR/LF or surrounding whitespace in a value, two ``host`` fields,
and ``:authority`` disagreeing with ``host``.  None of that reaches this module.

What is left is the gateway's own policy, the same as :mod:`trio_gw.http.guards`
applies to HTTP/1.1 heads, with the same statuses and reason codes:

=============================================  ======  =========================
condition                                      status  reason
=============================================  ======  =========================
more than ``max_headers`` fields               431     ``too_many_headers``
head larger than ``max_header_size``           431     ``header_too_large``
control characters in a value                  400     ``invalid_header``
more than one / non-decimal ``content-length``  400     ``bad_content_length``
``content-length`` beyond ``client_max_body_size``  413   ``body_too_large``
``CONNECT`` (plain or extended, RFC 8441)       405     ``connect_not_allowed``
``TRACE``                                       405     ``trace_not_allowed``
``:path`` ``*`` (``OPTIONS *``)                 400     ``asterisk_form``
``:path`` not starting with ``/``               400     ``invalid_target``
no ``:authority`` and no ``host``               400     ``missing_host``
malformed authority                             400     ``invalid_host``
what h11 refuses in a head: a method that is    400     ``bad_request``
not a token, a ``:path`` with other than
visible ASCII, a field name that is not a token
=============================================  ======  =========================

``h2`` does not check that the method is a token, refuses in ``:path`` only
NUL/CR/LF and surrounding whitespace, and lets field names with separators
(``/``, ``{``, ``"``…) through; on HTTP/1.1 h11 refuses such a head (400
``bad_request``), and here h11 would refuse to send it upstream, so it is
answered the same way.

The size is counted as the equivalent HTTP/1.1 head (request line plus
``name: value`` lines), so ``max_header_size`` means the same for both
protocols; HPACK's own accounting (32 bytes per field) is larger, so a head
within the ``SETTINGS_MAX_HEADER_LIST_SIZE`` the gateway advertises always
passes here.

The result has h11's shape — lowercase names, ``host`` first (from
``:authority``, RFC 9113 §8.3.1), pseudo-headers removed — so routing, plugins
and header rewriting cannot tell the protocols apart.  Split ``cookie`` fields
are already joined by ``h2`` (``normalize_inbound_headers``, RFC 9113 §8.2.3).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from trio_gw.http.errors import RequestRejected
from trio_gw.http.facts import parse_host_header
from trio_gw.http.guards import REFUSED_METHODS

Header = tuple[bytes, bytes]

# Same set as the HTTP/1.1 guard: controls other than HTAB, and DEL.
_BAD_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
# What h11 accepts (RFC 9110 token; request-target of visible ASCII).
_TOKEN = re.compile(rb"[-!#$%&'*+.^_`|~0-9A-Za-z]+")
_TARGET = re.compile(rb"[\x21-\x7e]+")
# The equivalent HTTP/1.1 head: request line overhead, and ": " + CRLF per field.
_LINE_OVERHEAD = 12
_FIELD_OVERHEAD = 4
_MESSAGES = {400: "Bad request", 405: "Method not allowed", 413: "Request body too large",
             431: "Request header fields too large"}


def _reject(status: int, reason: str) -> RequestRejected:
    # close=False: one stream is refused, the connection's framing is intact.
    return RequestRejected(status, _MESSAGES[status], reason=reason, close=False)


@dataclass(frozen=True, slots=True)
class H2RequestHead:
    """One HTTP/2 request head in HTTP/1.1 terms.

    Attributes:
        method: ``:method``.
        target: ``:path`` (origin-form, with the query).
        headers: the regular fields, lowercase, ``host`` first.
        content_length: the ``content-length`` value, or ``None`` when absent
            (a body of unknown length is re-framed chunked for the upstream).
    """

    method: bytes
    target: bytes
    headers: list[Header]
    content_length: int | None = None


def pseudo_header(headers: Iterable[Header], name: bytes) -> bytes | None:
    """The value of pseudo-header ``name`` (``b":method"``), or ``None``; for logging."""
    for key, value in headers:
        if key == name:
            return value
        if not key.startswith(b":"):
            return None  # pseudo-headers come first (RFC 9113 §8.3)
    return None


def parse_h2_request(
    headers: Iterable[Header], *, max_header_size: int, max_headers: int, max_body_size: int = 0,
) -> H2RequestHead:
    """Check an HTTP/2 request header list and translate it.

    Args:
        headers: the decoded header list of a ``RequestReceived`` event
            (bytes, already validated by ``h2``).
        max_header_size: limit on the equivalent HTTP/1.1 head, bytes.
        max_headers: limit on the number of regular fields.
        max_body_size: ``client_max_body_size`` (0: none): a larger ``content-length``
            is refused with the head.

    Returns:
        The head in HTTP/1.1 terms.

    Raises:
        RequestRejected: see the module table; ``close`` is ``False``, only
            the stream is answered.
    """
    pseudo: dict[bytes, bytes] = {}
    regular: list[Header] = []
    size = _LINE_OVERHEAD
    host: bytes | None = None
    lengths: list[bytes] = []
    for name, value in headers:
        if _BAD_VALUE.search(value) is not None:
            raise _reject(400, "invalid_header")
        if name.startswith(b":"):
            pseudo[name] = value
            if name in (b":method", b":path"):
                size += len(value)
            continue
        size += len(name) + len(value) + _FIELD_OVERHEAD
        if _TOKEN.fullmatch(name) is None:
            raise _reject(400, "bad_request")
        if name == b"host":
            host = value
            continue
        if name == b"content-length":
            lengths.append(value)
        regular.append((name, value))
    authority = pseudo.get(b":authority", host)
    if authority is not None and b":authority" in pseudo:
        size += len(b"host") + len(authority) + _FIELD_OVERHEAD
    if len(regular) + (authority is not None) > max_headers:
        raise _reject(431, "too_many_headers")
    if size > max_header_size:
        raise _reject(431, "header_too_large")
    if len(lengths) > 1 or (lengths and not lengths[0].isdigit()):
        raise _reject(400, "bad_content_length")
    if max_body_size and lengths and int(lengths[0]) > max_body_size:
        raise _reject(413, "body_too_large")
    method = pseudo.get(b":method", b"")
    refused = REFUSED_METHODS.get(method)
    if refused is not None:  # CONNECT (plain or extended), TRACE
        raise _reject(405, refused)
    if _TOKEN.fullmatch(method) is None:
        raise _reject(400, "bad_request")
    target = pseudo.get(b":path", b"")
    if not target.startswith(b"/"):
        raise _reject(400, "asterisk_form" if target == b"*" else "invalid_target")
    if _TARGET.fullmatch(target) is None:
        raise _reject(400, "bad_request")
    if authority is None:
        raise _reject(400, "missing_host")
    try:
        parse_host_header(authority.decode("latin-1"))
    except RequestRejected as exc:  # invalid_host, for this stream only
        raise _reject(exc.status, exc.reason) from None
    return H2RequestHead(
        method=method,
        target=target,
        headers=[(b"host", authority), *regular],
        content_length=int(lengths[0]) if lengths else None,
    )
