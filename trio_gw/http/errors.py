"""Errors of the HTTP layer.

A request head the gateway will not serve raises :class:`RequestRejected`.  It
carries everything the driver needs to answer without deciding anything: the
status, a short public message, a stable ``reason`` code for logs and metrics,
and whether the connection must be closed after the answer.
"""

from __future__ import annotations

from trio_gw.errors import GatewayError


class RequestRejected(GatewayError):
    """A request (head) that the gateway refuses to serve.

    ``message`` is shown to the client and must never contain internal details;
    ``reason`` is a stable snake_case code (``cl_te_conflict``,
    ``header_too_large``, ...) for logs and metrics.

    Attributes:
        status: the HTTP status to answer with (4xx/5xx).
        message: public, client-facing text.
        reason: stable machine-readable code.
        close: whether the connection must be closed after the answer; ``True``
            whenever the framing of the rest of the stream cannot be trusted.
    """

    def __init__(self, status: int, message: str, *, reason: str, close: bool = True) -> None:
        """Create the rejection.

        Args:
            status: HTTP status code, 400..599.
            message: public message.
            reason: stable reason code.
            close: close the connection after answering.

        Raises:
            ValueError: ``status`` is not an error status.
        """
        if not 400 <= status <= 599:
            raise ValueError(f"RequestRejected needs a 4xx/5xx status, not {status}")
        super().__init__(status, message, reason)
        self.status = status
        self.message = message
        self.reason = reason
        self.close = close

    def __str__(self) -> str:
        return f"{self.status} {self.reason}: {self.message}"
