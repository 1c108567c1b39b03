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
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol

import trio

log = logging.getLogger("trio_gw.net")

#: At most one log line per listener group in this many seconds about shed connections.
SHED_LOG_INTERVAL = 10.0
#: How long a drain lets an idle connection receive a request already on its way (seconds).
DRAIN_IDLE_GRACE = 0.05
#: The Admin API's and the status listener's own limits (never shared with the proxy).
ADMIN_CONNECTIONS = 256
STATUS_CONNECTIONS = 256


class IdleConnections:
    """Connections waiting for their next request; the oldest is closed first to make room.

    Two kinds of entry:

    * *timed*, through :meth:`receive`: an HTTP/1.1 connection waiting for the first bytes of its next
      request on one of the gateway's own streams.  It holds no cancel scope while it waits: its
      deadline sits in a first-in-first-out queue per timeout (one timeout per queue, so insertion
      order is deadline order, and entering or leaving is O(1)), and :meth:`run` wakes a connection
      whose deadline passed by interrupting its receive (``interrupt_receive``: the wait ends with
      ``trio.ClosedResourceError``, the descriptor stays open for a clean close).  nginx keeps an
      idle keep-alive connection as little more than an event and a timer for the same reason: a
      cancel scope (two sets), a closure and a frame cost ~0.9 KB per idle connection, and a scope
      entered and left per request is CPU on every keep-alive request.
    * *callback*, through :meth:`enter`/:meth:`leave`: anything else (an HTTP/2 connection with no open
      stream; an HTTP/1.1 connection on a stream that cannot be interrupted), closed by its callback.
    """

    def __init__(self) -> None:
        #: Timed entries: timeout -> stream -> deadline (trio clock), oldest first.
        self._timed: dict[float, OrderedDict[Interruptible, float]] = {}
        #: Callback entries, oldest first: (close, drain or None, when it became idle).
        self._callbacks: OrderedDict[object, tuple[Callable[[], None], Callable[[], None] | None, float]] = OrderedDict()
        #: When :meth:`run` wakes next, and the scope it sleeps in (None: not running).
        self._next_wake = math.inf
        self._sleep: trio.CancelScope | None = None

    # --- timed entries -------------------------------------------------------------------

    async def receive(self, stream: trio.abc.ReceiveStream, max_bytes: int, timeout: float) -> bytes | bytearray | None:
        """The first bytes of the next request on ``stream``: ``None`` if none came within ``timeout``
        seconds, or the connection was closed to make room or by a drain; ``b""`` at the client's end.

        Waits without a cancel scope when the stream can be interrupted and :meth:`run` is running.
        """
        if self._sleep is None or not hasattr(stream, "interrupt_receive"):
            return await self._receive_in_scope(stream, max_bytes, timeout)
        deadline = trio.current_time() + timeout
        queue = self._timed.get(timeout)
        if queue is None:
            queue = self._timed[timeout] = OrderedDict()
        queue[stream] = deadline  # type: ignore[index]  # it has interrupt_receive
        if deadline < self._next_wake:
            self._next_wake = self._sleep.deadline = deadline
        try:
            return await stream.receive_some(max_bytes)
        except trio.ClosedResourceError:
            if self._holds(stream):
                raise  # closed by someone else
            return None  # woken: its time was up, or its slot was needed
        finally:
            if queue.pop(stream, None) is None:  # type: ignore[call-overload]
                for other in self._timed.values():  # moved to the drain's queue meanwhile
                    other.pop(stream, None)  # type: ignore[call-overload]

    def _holds(self, stream: object) -> bool:
        return any(stream in queue for queue in self._timed.values())

    async def _receive_in_scope(self, stream: trio.abc.ReceiveStream, max_bytes: int, timeout: float) -> bytes | bytearray | None:
        with trio.CancelScope(deadline=trio.current_time() + timeout) as scope:
            self.enter(scope, scope.cancel, lambda: _shorten(scope, DRAIN_IDLE_GRACE))
            try:
                return await stream.receive_some(max_bytes)
            finally:
                self.leave(scope)
        return None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Wake timed entries whose deadline passed, until cancelled (one task per worker)."""
        self._sleep = trio.CancelScope()
        task_status.started()
        try:
            while True:
                now = trio.current_time()
                next_wake = math.inf
                for timeout, queue in list(self._timed.items()):
                    while queue:
                        stream, deadline = next(iter(queue.items()))
                        if deadline > now:
                            next_wake = min(next_wake, deadline)
                            break
                        del queue[stream]
                        stream.interrupt_receive()
                    if not queue:
                        del self._timed[timeout]
                self._next_wake = next_wake
                self._sleep = trio.CancelScope(deadline=next_wake)
                with self._sleep:
                    await trio.sleep_forever()
        finally:
            self._sleep = None
            self._next_wake = math.inf
            timed, self._timed = self._timed, {}
            for queue in timed.values():  # nobody is left to wake them: now
                for stream in queue:
                    stream.interrupt_receive()

    # --- callback entries ----------------------------------------------------------------

    def enter(self, key: object, close: Callable[[], None], drain: Callable[[], None] | None = None) -> None:
        """``key`` waits for its next request from now on.

        Args:
            key: the connection.
            close: ends it now (sync, never raises).
            drain: ends it at a drain (default: ``close``); HTTP/1.1 gives a request
                already on its way :data:`DRAIN_IDLE_GRACE` first.
        """
        self._callbacks.pop(key, None)
        self._callbacks[key] = (close, drain, trio.current_time())

    def leave(self, key: object) -> None:
        """``key`` is busy again (a request started), or gone."""
        self._callbacks.pop(key, None)

    # --- both ------------------------------------------------------------------------------

    def close_oldest(self) -> bool:
        """Close the connection idle the longest; whether there was one."""
        oldest: tuple[float, object, float | None] | None = None  # (idle since, key, its timed queue)
        for timeout, queue in self._timed.items():
            if queue:
                stream, deadline = next(iter(queue.items()))
                if oldest is None or deadline - timeout < oldest[0]:
                    oldest = (deadline - timeout, stream, timeout)
        if self._callbacks:
            key, (_close, _drain, since) = next(iter(self._callbacks.items()))
            if oldest is None or since < oldest[0]:
                oldest = (since, key, None)
        if oldest is None:
            return False
        key, in_queue = oldest[1], oldest[2]
        if in_queue is None:
            self._callbacks.pop(key)[0]()
        else:
            del self._timed[in_queue][key]  # type: ignore[arg-type]  # a timed entry's key is its stream
            key.interrupt_receive()  # type: ignore[attr-defined]
        return True

    def close_all(self) -> int:
        """End every idle connection (a drain); how many.

        HTTP/1.1 connections get :data:`DRAIN_IDLE_GRACE` for a request already on its way.
        """
        count = len(self)
        grace = trio.current_time() + DRAIN_IDLE_GRACE
        if any(self._timed.values()):
            queue = self._timed.pop(DRAIN_IDLE_GRACE, None) or OrderedDict()  # entered during a drain
            for other in self._timed.values():
                for stream in other:
                    queue[stream] = grace
                other.clear()  # a receive still holding this queue must find its entry gone from it
            self._timed = {DRAIN_IDLE_GRACE: queue}
            if self._sleep is not None and grace < self._next_wake:
                self._next_wake = self._sleep.deadline = grace
        callbacks, self._callbacks = self._callbacks, OrderedDict()
        for close, drain, _since in callbacks.values():
            (drain or close)()
        return count

    def __len__(self) -> int:
        return len(self._callbacks) + sum(len(queue) for queue in self._timed.values())


class Interruptible(Protocol):
    """A stream whose pending receive another task can end (the gateway's own streams)."""

    async def receive_some(self, max_bytes: int | None = None) -> bytes: ...

    def interrupt_receive(self) -> None:
        """End a receive waiting on the socket with ``trio.ClosedResourceError``; the stream stays usable."""


def _shorten(scope: trio.CancelScope, seconds: float) -> None:
    scope.deadline = min(scope.deadline, trio.current_time() + seconds)


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
