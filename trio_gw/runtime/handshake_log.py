"""Failed inbound handshakes in the log and in the metrics, rate-limited per reason and client network.

The listener's handshake failure path makes one call,
:meth:`HandshakeRejectionLog.record`, with the reason code
(``tls.handshake_errors.classify_handshake_failure``), the client address and
what else it knows (SNI, offered version): the failure is counted in
``trio_gw_tls_handshake_failures_total`` every time, and logged at NOTICE (a
default log shows it) when ``tls.rejection_log`` lets it through — else counted
in ``trio_gw_log_lines_suppressed_total``.  :meth:`HandshakeRejectionLog.run`
flushes the held-back counts of scans that stopped.  One limiter per listener,
so the listener is part of each key.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import trio

from trio_gw.runtime.kong_metrics import KongMetrics
from trio_gw.runtime.logs import NOTICE
from trio_gw.tls.rejection_log import DEFAULT_INTERVAL, RejectionLine, RejectionLogLimiter, format_rejection

__all__ = ["HandshakeRejectionLog"]

log = logging.getLogger("trio_gw.tls")


class HandshakeRejectionLog:
    """Logs and counts rejected handshakes (see the module docstring)."""

    def __init__(self, interval: float = DEFAULT_INTERVAL, *, metrics: KongMetrics | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """Args:
            interval: ``rejection_log_interval`` (seconds).
            metrics: where failures and held-back lines are counted (``None``: not counted).
            clock: a monotonic clock (seconds).
        """
        self.interval = interval
        self.metrics = metrics
        self.clock = clock
        self._limiters: dict[str, RejectionLogLimiter] = {}

    def record(self, listener: str, reason: str, client_ip: str, **details: str | None) -> bool:
        """One failed handshake: count it, and log it unless its key already logged within the interval.

        Args:
            listener: ``proxy``, ``admin`` or ``status``.
            reason: the reason code.
            client_ip: the client's address.
            details: more facts for the line (``sni=...``); client-supplied text is escaped.

        Returns:
            Whether a line was written.
        """
        if self.metrics is not None:
            self.metrics.record_handshake_failure(listener, reason)
        limiter = self._limiters.get(listener)
        if limiter is None:
            limiter = self._limiters[listener] = RejectionLogLimiter(self.interval)
        line = limiter.admit(reason, client_ip, self.clock())
        if line is None:
            if self.metrics is not None:
                self.metrics.suppressed_log_lines.labels(reason).inc()
            return False
        self._write(line, listener, details)
        return True

    def flush(self) -> int:
        """Log the held-back counts of keys whose interval ended; return how many lines were written."""
        now, written = self.clock(), 0
        for listener, limiter in self._limiters.items():
            for line in limiter.flush(now):
                self._write(line, listener, {})
                written += 1
        return written

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Flush once per interval until cancelled."""
        task_status.started()
        while True:
            await trio.sleep(self.interval)
            self.flush()

    def _write(self, line: RejectionLine, listener: str, details: dict[str, str | None]) -> None:
        log.log(NOTICE, "%s", format_rejection(line, listener=listener, interval=self.interval, details=details))
