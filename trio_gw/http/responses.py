"""Error responses in Kong's JSON shape.

Every answer the gateway makes itself (no route, bad request, upstream failure,
HTTPS required, ...) is a small JSON document ``{"message": "..."}`` (plus
``"reason"`` when a stable reason code is known) with
``content-type: application/json; charset=utf-8`` and an exact
``content-length``.  Messages are Kong's where Kong has one, so clients and
tests written against Kong keep working.  Nothing internal (exception text,
addresses, certificate details) ever goes into a body: callers pass a public
message or none, and the reason code is a fixed vocabulary.

Bodies are cached: the same (status, message, reason) always serialises to the
same bytes, and a gateway under a scan answers thousands of identical 404s.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import lru_cache
from http import HTTPStatus

import h11

from trio_gw.http.errors import RequestRejected

#: Kong's texts for the answers the proxy makes itself.
STANDARD_MESSAGES: dict[int, str] = {
    400: "Bad request",
    401: "Unauthorized",
    403: "You cannot consume this service",
    404: "no Route matched with those values",
    405: "Method not allowed",
    408: "Request timeout",
    411: "Length required",
    413: "Request body too large",
    414: "Request-URI too large",
    421: "Misdirected request",
    426: "Please use HTTPS protocol",
    429: "API rate limit exceeded",
    431: "Request header fields too large",
    494: "Request header or cookie too large",
    500: "An unexpected error occurred",
    501: "Not implemented",
    502: "An invalid response was received from the upstream server",
    503: "Service unavailable",
    504: "The upstream server is timing out",
}

_JSON_TYPE = (b"content-type", b"application/json; charset=utf-8")
_CLOSE = (b"connection", b"close")


def standard_message(status: int) -> str:
    """The default public message for ``status``.

    Args:
        status: an HTTP status code.

    Returns:
        Kong's message for that status, else the standard reason phrase, else
        ``"An unexpected error occurred"``.
    """
    message = STANDARD_MESSAGES.get(status)
    if message is not None:
        return message
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return STANDARD_MESSAGES[500]


@lru_cache(maxsize=256)
def _body(message: str, reason: str | None) -> bytes:
    doc = {"message": message} if reason is None else {"message": message, "reason": reason}
    return json.dumps(doc, ensure_ascii=True, separators=(", ", ": ")).encode("ascii")


def error_body(status: int, message: str | None = None, reason: str | None = None) -> bytes:
    """The JSON body of an error answer (cached).

    Args:
        status: HTTP status.
        message: public message; ``None`` uses :func:`standard_message`.
        reason: optional stable reason code.

    Returns:
        ``{"message": ...}`` (with ``"reason"``) as bytes.
    """
    return _body(standard_message(status) if message is None else message, reason)


def _phrase(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode("ascii")
    except ValueError:
        return b""


def error_response(
    status: int,
    message: str | None = None,
    *,
    reason: str | None = None,
    headers: Sequence[tuple[bytes, bytes]] = (),
) -> tuple[h11.Response, bytes]:
    """Build a JSON error answer.

    Args:
        status: HTTP status, 100..599 (normally 4xx/5xx).
        message: public message; ``None`` uses :func:`standard_message`.
        reason: optional stable reason code, added as ``"reason"``.
        headers: extra response headers (lowercase names), e.g. ``location``
            or ``connection: close``; they must not repeat content-type or
            content-length.

    Returns:
        The h11 ``Response`` head and the body bytes to send as one ``Data``
        event (followed by ``EndOfMessage``).

    Raises:
        h11.LocalProtocolError: an extra header is not a valid HTTP field.
    """
    body = error_body(status, message, reason)
    head = [_JSON_TYPE, (b"content-length", str(len(body)).encode("ascii")), *headers]
    return h11.Response(status_code=status, headers=head, reason=_phrase(status)), body


def rejection_response(error: RequestRejected) -> tuple[h11.Response, bytes]:
    """The answer to a :class:`RequestRejected` raised by the guards or the router.

    Args:
        error: the rejection.

    Returns:
        The JSON error response, with ``connection: close`` when
        ``error.close`` is set (the driver must close after sending it).
    """
    extra = (_CLOSE,) if error.close else ()
    return error_response(error.status, error.message, reason=error.reason, headers=extra)
