"""The two ways an exchange with an upstream ends badly, shared by the HTTP/1.1 and HTTP/2 upstream relays."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from trio_gw.net.exchange import Exchange

__all__ = ["ClientGone", "UpstreamFailure", "client_left"]


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
    """The client disappeared or stalled mid-exchange: nothing can be answered."""


def client_left(ex: Exchange) -> ClientGone:
    """The end of an exchange whose client closed its connection while it waited on the upstream
    (:mod:`trio_gw.net.client_abort`): ``499 client_closed`` in the access log, as nginx's "client
    closed request" — or, when the answer's head had gone already, the status the client got."""
    ex.status = ex.status or 499
    ex.reason = "client_closed"
    return ClientGone("the client closed its connection while its request waited on the upstream")
