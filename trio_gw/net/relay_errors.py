"""The two ways an exchange with an upstream ends badly, shared by the HTTP/1.1 and HTTP/2 upstream relays."""

from __future__ import annotations

__all__ = ["ClientGone", "UpstreamFailure"]


class UpstreamFailure(Exception):
    """The upstream could not be used, or stopped answering; carries the status and reason for the client.

    Raised after the response's head went to the client too (the upstream closed or timed out
    mid-body): the client's response is then cut short, and the status is only for the error log.
    ``detail``, when given, is what the error log says of it instead of the reason's usual text.
    """

    def __init__(self, status: int, reason: str, message: str | None = None, *, detail: str | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.message = message
        self.detail = detail


class ClientGone(Exception):
    """The client disappeared, stalled or broke its request mid-exchange: the request cannot go on.

    ``status`` and ``reason`` are what the access log records when nothing was answered yet, and
    what the client is answered when it still can be: ``408 client_body_timeout`` for a body that
    stalled, ``400 bad_request`` for one that broke its framing (nginx answers both), else nginx's
    ``499`` "client closed request", ``client_closed``.
    """

    def __init__(self, message: str, *, status: int = 499, reason: str = "client_closed") -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
