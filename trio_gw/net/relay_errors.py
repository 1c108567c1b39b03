"""The two ways an exchange with an upstream ends badly, shared by the HTTP/1.1 and HTTP/2 upstream relays."""

from __future__ import annotations

__all__ = ["ClientGone", "UpstreamFailure"]


class UpstreamFailure(Exception):
    """The upstream could not be used; carries the status and reason for the client."""

    def __init__(self, status: int, reason: str, message: str | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.message = message


class ClientGone(Exception):
    """The client disappeared or stalled mid-exchange: nothing can be answered."""
