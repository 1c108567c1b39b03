"""Connection limits that protect the node, and the idle connections they (and a drain) may close first.

Theory of operation
-------------------
Each group of listeners has its own :class:`ConnectionLimit`: the proxy
listeners share one (``max_connections``, Kong's ``worker_connections``); the
Admin API and the status listener have their own, so a proxy full of
connections never takes the health check or the Admin API down with it.

Idle keep-alive connections cost a slot and serve nobody.  While a client
connection waits for its next request (HTTP/1.1) or has no open stream
(HTTP/2) it is registered in :class:`IdleConnections` with a way to close it.
When a new connection finds the proxy limit full, the oldest idle connection
is closed and its slot handed to the newcomer (nginx closes idle keep-alive
connections the same way when ``worker_connections`` runs out).  Only when no
connection is idle is the newcomer shed: a plain-HTTP client gets a 503 with
the reason ``overloaded``, a TLS client a clean close (no handshake is worth
its CPU then).  Shedding is counted and logged at most once per
:data:`SHED_LOG_INTERVAL`.

A drain (SIGTERM) ends every idle connection at once — after a grace of
:data:`DRAIN_IDLE_GRACE` for a request already on its way: a keep-alive
client sends its next request the moment it has read an answer, and closing
the connection under that request (in flight, or unread in the kernel) would
lose it.  A request arriving in the grace is served, with ``Connection: close``.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable

log = logging.getLogger("trio_gw.net")

#: At most one log line per listener group in this many seconds about shed connections.
SHED_LOG_INTERVAL = 10.0
#: How long a drain lets an idle connection receive a request already on its way (seconds).
DRAIN_IDLE_GRACE = 0.05
#: The Admin API's and the status listener's own limits (never shared with the proxy).
ADMIN_CONNECTIONS = 256
STATUS_CONNECTIONS = 256


class IdleConnections:
    """Connections waiting for their next request, oldest first, each with a way to close it."""

    def __init__(self) -> None:
        self._idle: OrderedDict[object, Callable[[], None]] = OrderedDict()
        self._drain: dict[object, Callable[[], None]] = {}

    def enter(self, key: object, close: Callable[[], None], drain: Callable[[], None] | None = None) -> None:
        """``key`` waits for its next request from now on.

        Args:
            key: the connection.
            close: ends it now (sync, never raises).
            drain: ends it at a drain (default: ``close``); HTTP/1.1 gives a request
                already on its way :data:`DRAIN_IDLE_GRACE` first.
        """
        self._idle.pop(key, None)
        self._idle[key] = close
        if drain is not None:
            self._drain[key] = drain

    def leave(self, key: object) -> None:
        """``key`` is busy again (a request started), or gone."""
        self._idle.pop(key, None)
        self._drain.pop(key, None)

    def close_oldest(self) -> bool:
        """Close the connection idle the longest; whether there was one."""
        if not self._idle:
            return False
        key, close = self._idle.popitem(last=False)
        self._drain.pop(key, None)
        close()
        return True

    def close_all(self) -> int:
        """End every idle connection (a drain); how many."""
        idle, self._idle = self._idle, OrderedDict()
        drain, self._drain = self._drain, {}
        for key, close in idle.items():
            drain.get(key, close)()
        return len(idle)

    def __len__(self) -> int:
        return len(self._idle)


class Slot:
    """One admitted connection's place in a :class:`ConnectionLimit`; released once, whoever releases it."""

    __slots__ = ("limit", "held")

    def __init__(self, limit: ConnectionLimit) -> None:
        self.limit = limit
        self.held = True

    def release(self) -> None:
        if self.held:
            self.held = False
            self.limit.active -= 1


class ConnectionLimit:
    """At most ``limit`` connections of one listener group (see the module docstring).

    Args:
        limit: the most connections at once.
        name: the group, for the log and the metric (``proxy``, ``admin``, ``status``).
        idle: idle connections that may be closed to make room (``None``: never).
    """

    def __init__(self, limit: int, name: str, idle: IdleConnections | None = None) -> None:
        self.limit = limit
        self.name = name
        self.idle = idle
        self.active = 0
        #: Connections admitted since start (with :attr:`shed`, Kong's ``accepted`` and ``handled``; per worker,
        #: how evenly a node's workers share the load).
        self.admitted = 0
        self.shed = 0
        self.evicted = 0
        self._shed_since_log = 0
        self._last_log = 0.0

    def admit(self) -> Slot | None:
        """A slot for a new connection, making room by closing the oldest idle one if needed; None: shed it."""
        if self.active >= self.limit and not (self.idle is not None and self.idle.close_oldest()):
            self._count_shed()
            return None
        if self.active >= self.limit:
            # The closed idle connection leaves its slot when its task ends; the newcomer
            # takes it now (at most one connection over the limit per closed idle one, briefly).
            self.evicted += 1
        self.active += 1
        self.admitted += 1
        return Slot(self)

    def _count_shed(self) -> None:
        self.shed += 1
        self._shed_since_log += 1
        now = time.monotonic()
        if now - self._last_log >= SHED_LOG_INTERVAL:
            log.warning("%s: %d connection(s) refused since the last report: all %d slots busy and none idle",
                        self.name, self._shed_since_log, self.limit)
            self._last_log, self._shed_since_log = now, 0
