"""Moving a phase's deadline only when it really moves.

Theory of operation
-------------------
A request runs its phases (reading the head, sending upstream, waiting for the
answer, writing it back) under one ``trio.CancelScope`` per exchange whose
deadline follows the phase (``send_timeout``, ``read_timeout``...).  Setting
``CancelScope.deadline`` re-registers the scope in Trio's deadline heap through
a context manager: about 2.5 µs, several times per request.  Gateway timeouts
are seconds long and, by default, equal (Kong's 60 s everywhere), so the new
deadline of a phase that starts a millisecond after the previous one is, within
a millisecond, the one already set.  :func:`move_deadline` leaves the scope
alone when the difference is within :data:`DEADLINE_SLACK` (at most 1 % of the
timeout): a timeout fires at most that much early or late, never more.
"""

from __future__ import annotations

import trio

__all__ = ["DEADLINE_SLACK", "move_deadline"]

#: The most a deadline may be off (seconds); never more than 1 % of the timeout either.
DEADLINE_SLACK = 0.05


def move_deadline(scope: trio.CancelScope, seconds: float) -> None:
    """Give ``scope`` the deadline ``seconds`` from now, unless it has that one already, near enough."""
    deadline = trio.current_time() + seconds
    if abs(scope.deadline - deadline) > min(DEADLINE_SLACK, seconds * 0.01):
        scope.deadline = deadline
