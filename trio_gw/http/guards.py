"""Request-smuggling and sanity guards over an h11 request head.

Theory of operation
-------------------
h11 parses and validates, but a gateway forwards, so what h11 tolerates can
still desynchronise the gateway and an upstream that reads the same bytes
differently (see ``docs/tls-stack.md`` §11).  :func:`check_request_head`
runs once per request head, after h11 produced the ``Request`` event and
before routing, and raises :class:`RequestRejected` for:

============================================  ======  =======================
condition                                     status  reason
============================================  ======  =======================
Content-Length and Transfer-Encoding both     400     ``cl_te_conflict``
more than one / non-decimal Content-Length    400     ``bad_content_length``
Transfer-Encoding other than ``chunked``      501     ``unsupported_te``
Transfer-Encoding in an HTTP/1.0 request      400     ``te_http10``
control characters in a header value          400     ``invalid_header``
head larger than ``max_header_size``          431     ``header_too_large``
more than ``max_headers`` fields              431     ``too_many_headers``
CONNECT                                       405     ``connect_not_allowed``
TRACE                                         405     ``trace_not_allowed``
asterisk-form target (``OPTIONS *``)          400     ``asterisk_form``
absolute-form target not ``http(s)://host/``  400     ``invalid_target``
other non-origin-form target                  400     ``invalid_target``
HTTP/1.1 without exactly one Host             400     ``missing_host``
malformed Host                                400     ``invalid_host``
an HTTP version other than 1.0 or 1.1         505     ``http_version_not_supported``
a chunk size of more than 16 hex digits       400     ``bad_chunk_size``
a body beyond ``client_max_body_size``        413     ``body_too_large``
============================================  ======  =======================

Why 501 for an unknown transfer coding: RFC 9112 §6.1 says a server that
receives a transfer coding it does not understand SHOULD answer 501, and h11
itself gives that hint; the connection is still closed because the body's
framing is unknown.  Every rejection closes the connection: after a framing
problem the rest of the stream cannot be trusted, and closing the others too
costs nothing worth keeping.

An absolute-form target (``GET http://api.example/x HTTP/1.1``) is served:
RFC 9112 §3.2.2 says a server MUST accept it, and that the target's authority
then replaces the Host header.  :func:`origin_form` gives the origin-form
target and the headers the rest of the gateway sees, so routing, the
forwarded ``Host`` and ``X-Forwarded-Host``, and the SNI/Host check all read
one host — the one nginx (and so Kong) would use.  Only ``http`` and
``https`` targets with a host and no userinfo are taken (RFC 9110 §4.2.4).

TRACE is refused as nginx refuses it, whatever the route: an upstream that
answers TRACE echoes the request's headers back, cookies and credentials the
gateway or a browser added included (cross-site tracing).

Some checks repeat h11's (conflicting lengths, Host, TE values); they are cheap
set/len operations and keep the guard correct if h11 becomes more lenient.
The value check does not: h11 accepts control characters other than
whitespace and NUL in field values (its ``field-vchar`` is ``[^\\x00\\s]``).
Header *names* are not re-checked: every ``h11.Request`` has token names,
whether parsed (h11 answers 400) or constructed (h11 raises).

h11 gives up on an *incomplete* head at ``max_incomplete_event_size`` (set it
to ``max_header_size``), but accepts a complete head of any size that arrives
in one read: hence the size check here.  h11 also takes ``GET / HTTP/2.0`` on an
HTTP/1.1 connection as a request, and any number of hex digits as a chunk size
(a 20-digit size makes a request that never ends): :func:`check_request_head`
answers the first 505 (RFC 9110 §15.6.6), :class:`ChunkSizeGuard` — fed the raw
bytes of a chunked body beside h11 — the second 400 at once, as nginx does
(it refuses chunk sizes that overflow an ``off_t``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import h11

from trio_gw.http.errors import RequestRejected
from trio_gw.http.routing import parse_host_header

#: nginx's ``large_client_header_buffers`` default is 4 × 8 KiB; Kong keeps it.
DEFAULT_MAX_HEADER_SIZE = 32 * 1024
#: Kong's ``lua_max_req_headers`` default.
DEFAULT_MAX_HEADERS = 100

_BAD_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
# request line overhead: two spaces, "HTTP/1.1", CRLF; per field ": " and CRLF
_LINE_OVERHEAD = 12
_FIELD_OVERHEAD = 4


def _reject(status: int, reason: str) -> RequestRejected:
    messages = {400: "Bad request", 405: "Method not allowed", 413: "Request body too large",
                431: "Request header fields too large"}
    return RequestRejected(status, messages.get(status, "Not implemented"), reason=reason)


def check_request_head(
    request: h11.Request, *, max_header_size: int, max_headers: int, max_body_size: int = 0,
) -> None:
    """Reject request heads the gateway must not forward.

    Args:
        request: the h11 ``Request`` event.
        max_header_size: limit on the whole head (request line and fields), bytes.
        max_headers: limit on the number of header fields.
        max_body_size: ``client_max_body_size`` (0: none): a larger Content-Length is refused here,
            before a byte of the body is read or anything goes upstream (nginx checks it before its
            access phase).

    Raises:
        RequestRejected: see the module table; ``close`` is always ``True``.
    """
    headers = request.headers
    if len(headers) > max_headers:
        raise _reject(431, "too_many_headers")
    size = len(request.method) + len(request.target) + _LINE_OVERHEAD
    content_lengths = 0
    content_length = b""
    transfer_encodings = []
    hosts = []
    for name, value in headers:
        size += len(name) + len(value) + _FIELD_OVERHEAD
        if name == b"content-length":
            content_lengths += 1
            content_length = value
            if not value.isdigit():
                raise _reject(400, "bad_content_length")
        elif name == b"transfer-encoding":
            transfer_encodings.append(value)
        elif name == b"host":
            hosts.append(value)
        if _BAD_VALUE.search(value) is not None:
            raise _reject(400, "invalid_header")
    if size > max_header_size:
        raise _reject(431, "header_too_large")
    if request.http_version not in (b"1.1", b"1.0"):
        raise RequestRejected(505, "HTTP version not supported", reason="http_version_not_supported")
    _check_framing(request, content_lengths, transfer_encodings)
    _check_target(request)
    _check_host(request, hosts)
    if max_body_size and content_length:
        check_body_size(int(content_length), max_body_size)


def _check_framing(request: h11.Request, content_lengths: int, transfer_encodings: list[bytes]) -> None:
    if content_lengths > 1:
        raise _reject(400, "bad_content_length")
    if transfer_encodings:
        if content_lengths:
            raise _reject(400, "cl_te_conflict")
        if request.http_version != b"1.1":
            raise _reject(400, "te_http10")
        if transfer_encodings != [b"chunked"]:
            raise _reject(501, "unsupported_te")


#: Methods no route may receive, with the rejection's reason (nginx refuses both before any location).
REFUSED_METHODS = {b"CONNECT": "connect_not_allowed", b"TRACE": "trace_not_allowed"}


def _check_target(request: h11.Request) -> None:
    refused = REFUSED_METHODS.get(request.method)
    if refused is not None:
        raise _reject(405, refused)
    target = request.target
    if target.startswith(b"/"):
        return
    if target == b"*":
        raise _reject(400, "asterisk_form")
    if b"://" not in target:
        raise _reject(400, "invalid_target")
    # absolute-form: origin_form() checks and converts it


def origin_form(target: bytes, headers: Sequence[tuple[bytes, bytes]]) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    """The origin-form request an absolute-form one stands for (RFC 9112 §3.2.2).

    Call it on a head that passed :func:`check_request_head` whose target does
    not start with ``/`` (the guard lets only absolute-form through then).

    Args:
        target: the absolute-form target, e.g. ``http://api.example:8080/x?q=1``.
        headers: the request's header fields.

    Returns:
        ``(origin_target, headers)``: the path and query (``/`` when the
        target has no path), and the fields with ``Host`` replaced by the
        target's authority (added when the request had none: HTTP/1.0).

    Raises:
        RequestRejected: 400 ``invalid_target`` for a scheme other than
            ``http``/``https``, an empty authority, userinfo, or anything but a
            path or query after the authority; 400 ``invalid_host`` for an
            authority that is not ``host[:port]``.
    """
    scheme, _, rest = target.partition(b"://")
    end = len(rest)
    for delimiter in b"/?#":
        found = rest.find(delimiter)
        if found != -1 and found < end:
            end = found
    authority, path = rest[:end], rest[end:]
    if scheme.lower() not in (b"http", b"https") or not authority or b"@" in authority:
        raise _reject(400, "invalid_target")
    if not path:
        path = b"/"
    elif path[:1] == b"?":
        path = b"/" + path
    elif path[:1] != b"/":  # a fragment: never part of a request target
        raise _reject(400, "invalid_target")
    parse_host_header(authority.decode("latin-1"))
    out = [(name, value) for name, value in headers if name != b"host"]
    out.insert(0, (b"host", authority))  # first, as the HTTP/2 driver puts :authority
    return path, out


def _check_host(request: h11.Request, hosts: list[bytes]) -> None:
    if len(hosts) > 1 or (request.http_version == b"1.1" and not hosts):
        raise _reject(400, "missing_host")
    if hosts:
        parse_host_header(hosts[0].decode("latin-1"))


#: The longest chunk size accepted: 16 hex digits (nginx refuses sizes that overflow a 64-bit off_t).
MAX_CHUNK_SIZE_DIGITS = 16
#: A chunk-size line (size, extensions) longer than this is refused too.
MAX_CHUNK_LINE = 4096


def check_body_size(length: int, limit: int) -> None:
    """Refuse a request whose Content-Length is beyond ``client_max_body_size`` (``limit``; 0: none).

    Raises:
        RequestRejected: 413 ``body_too_large``, before a byte of the body is read (nginx's
            "client intended to send too large body").
    """
    if limit and length > limit:
        raise _reject(413, "body_too_large")


class ChunkSizeGuard:
    """Follows the chunk sizes of a chunked request body, fed the same raw bytes as h11.

    h11 accepts any number of hex digits as a chunk size, so a client can
    declare a chunk that never ends; this guard refuses one with more than
    :data:`MAX_CHUNK_SIZE_DIGITS` digits, or a chunk-size line that does not
    end, as soon as the bytes show it; and, with ``max_body``
    (``client_max_body_size``), a chunk whose size takes the body beyond it,
    before its data is read (413, as nginx answers).  It only follows framing
    (sizes, CRLFs); h11 still parses and validates the body.
    """

    __slots__ = ("_remaining", "_line", "_state", "_total", "_max_body")

    def __init__(self, max_body: int = 0) -> None:
        self._remaining = 0  # data bytes (plus the CRLF after them) still to skip
        self._line = bytearray()
        self._state = "size"  # size | data | trailers | done
        self._total = 0  # the sizes declared so far
        self._max_body = max_body

    def feed(self, data: bytes | bytearray) -> None:
        """Account for ``data``, the next raw bytes of the body.

        Raises:
            RequestRejected: 400 ``bad_chunk_size``.
        """
        view = memoryview(data)
        while view and self._state != "done":
            if self._state == "data":
                step = min(self._remaining, len(view))
                self._remaining -= step
                view = view[step:]
                if self._remaining == 0:
                    self._state = "size"
                continue
            end = bytes(view).find(b"\n")
            if end < 0:
                self._line += view
                view = view[len(view):]
            else:
                self._line += view[:end]
                view = view[end + 1:]
                self._end_of_line()
            if len(self._line) > MAX_CHUNK_LINE:
                raise _reject(400, "bad_chunk_size")

    def _end_of_line(self) -> None:
        line = bytes(self._line).rstrip(b"\r")
        self._line.clear()
        if self._state == "trailers":
            if not line:
                self._state = "done"
            return
        digits = line.split(b";", 1)[0].strip()
        if not digits or len(digits) > MAX_CHUNK_SIZE_DIGITS or not all(c in b"0123456789abcdefABCDEF" for c in digits):
            raise _reject(400, "bad_chunk_size")
        size = int(digits, 16)
        self._total += size
        if self._max_body and self._total > self._max_body:
            raise _reject(413, "body_too_large")
        if size == 0:
            self._state = "trailers"
        else:
            self._remaining, self._state = size + 2, "data"  # the data, then its CRLF
