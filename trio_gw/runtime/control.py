"""What each process of a node does, and the control channel between the supervisor and its workers.

Theory of operation
-------------------
A node is one process (``workers: 1``: :data:`SINGLE_PROCESS`), or a
supervisor and N workers (``runtime/supervisor.py``, ``runtime/worker.py``).
:class:`ProcessRole` tells :class:`~trio_gw.runtime.gateway.Gateway` which
part it plays: the supervisor serves the Admin API and status listeners (once
per node) and no proxy listener; a worker serves the proxy listeners on
sockets the supervisor bound and handed down, and no Admin API.

The **control channel** is a Unix socket pair per worker, inherited by the
worker.  Messages are JSON objects, one per line, each with a ``type``:

=================  ===================  ======================================================
type               direction            meaning
=================  ===================  ======================================================
``hello``          supervisor → worker  first message: slot, worker count, the settings (exactly
                                        the supervisor's, pickled), the inherited socket numbers,
                                        the https port, the ticket ring (``database: off``)
``ticket_ring``    supervisor → worker  the supervisor rotated its ring (``database: off``)
``intermediates``  both ways            CA certificates of client chains a worker verified: a
                                        session resumed on another worker needs them
                                        (``tls/resumed_chain.py``), and tickets are shared
``state``          worker → supervisor  the worker's facts (:class:`~trio_gw.model.workers.WorkerState`):
                                        the first one means "ready"; then on every new
                                        generation and every :data:`REPORT_INTERVAL`
=================  ===================  ======================================================

Signals are not messages: SIGHUP and SIGTERM go to the workers as signals
(each handles them as a single-process node does).  A worker whose channel
reaches EOF lost its supervisor: it drains and exits, so no worker outlives
its node.
"""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

import trio

from trio_gw.tls.resumed_chain import IntermediateCache
from trio_gw.tls.ticket_keys import TicketKeyRing

__all__ = ["REPORT_INTERVAL", "SINGLE_PROCESS", "Channel", "ProcessRole", "SupervisorView"]

#: Seconds between two state reports of an idle worker (connection counts in ``/status``).
REPORT_INTERVAL: Final = 1.0
#: The longest control message accepted (a hello carries the settings).
MAX_MESSAGE: Final = 16 * 1024 * 1024


class SupervisorView(Protocol):
    """What the supervisor's own gateway asks of the supervisor (``/status``, the ready file, signals)."""

    def workers_status(self) -> dict[str, Any]:
        """The ``workers`` part of ``/status``."""
        ...

    def proxy_listeners(self) -> list[dict[str, Any]]:
        """The proxy listeners the workers serve, as the ready file lists them."""
        ...

    def forward_signal(self, signum: int) -> None:
        """Pass a signal on to every worker."""
        ...

    async def wait_workers_ready(self) -> None:
        """Return once every worker serves (the node's ready file is written then).

        Raises:
            ConfigError: a worker could not start (its error is in the log).
        """
        ...

    def publish_ring(self, ring: TicketKeyRing) -> None:
        """Send the supervisor's rotated ticket key ring to every worker (``database: off``)."""
        ...


@dataclass(frozen=True)
class ProcessRole:
    """The part one process plays in its node.

    Attributes:
        name: ``node`` (the only process), ``supervisor`` or ``worker``.
        workers: the node's number of worker processes.
        index: a worker's slot.
        proxy_sockets: the proxy listeners' sockets a worker inherited, one per ``proxy_listen`` entry.
        https_port: the port https redirects name (a worker's listeners were bound by the supervisor).
        supervisor: the supervisor's view, for the supervisor's own gateway.
        metrics_dir: prometheus-client's multiprocess directory (several workers), or ``None``.
        intermediates: a worker's shared client-chain intermediates (``runtime/worker.py``).
        on_install: called with every generation installed (a worker reports it).
        owns_process: the gateway is what this process runs (the CLI node, a supervisor, a worker,
            the demo), not one part of another program: once it serves, it sets the process's
            cyclic collector for a long-running server (``runtime/heap.py``).
    """

    name: str = "node"
    workers: int = 1
    index: int | None = None
    proxy_sockets: tuple[socket.socket, ...] | None = None
    https_port: int | None = None
    supervisor: SupervisorView | None = None
    metrics_dir: str | None = None
    #: A worker's cache of client-certificate intermediates, shared with the other workers.
    intermediates: IntermediateCache | None = field(default=None, compare=False)
    on_install: Callable[[object], None] | None = field(default=None, compare=False)
    owns_process: bool = False

    @property
    def serves_proxy(self) -> bool:
        return self.name != "supervisor"

    @property
    def serves_control(self) -> bool:
        """Admin API and status listeners: once per node."""
        return self.name != "worker"

    @property
    def primary(self) -> bool:
        """The process that writes the ready file and the cache, and logs node-wide warnings."""
        return self.name != "worker"


SINGLE_PROCESS: Final = ProcessRole()


class Channel:
    """JSON lines over one end of a control socket pair (one reader task, any number of senders).

    Args:
        stream: the socket stream.
    """

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self._send_lock = trio.Lock()
        self._buffer = bytearray()

    @classmethod
    def from_fd(cls, fd: int) -> Channel:
        """The channel over an inherited socket (the worker's end)."""
        sock = socket.socket(fileno=fd)
        return cls(trio.SocketStream(trio.socket.from_stdlib_socket(sock)))

    async def send(self, message: Mapping[str, Any]) -> None:
        """Send one message.

        Raises:
            trio.BrokenResourceError: the other end is gone.
        """
        data = json.dumps(message, separators=(",", ":"), default=str).encode() + b"\n"
        async with self._send_lock:
            await self.stream.send_all(data)

    async def messages(self) -> AsyncIterator[dict[str, Any]]:
        """Every message until the other end closes (a malformed line ends the channel).

        Raises:
            ValueError: a line that is not a JSON object, or longer than :data:`MAX_MESSAGE`.
        """
        while True:
            end = self._buffer.find(b"\n")
            while end < 0:
                try:
                    data = await self.stream.receive_some(65536)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    return
                if not data:
                    return
                self._buffer += data
                if len(self._buffer) > MAX_MESSAGE:
                    raise ValueError("control message too long")
                end = self._buffer.find(b"\n")
            line = bytes(self._buffer[:end])
            del self._buffer[: end + 1]
            message = json.loads(line)
            if not isinstance(message, dict) or not isinstance(message.get("type"), str):
                raise ValueError("control message is not an object with a type")
            yield message

    async def aclose(self) -> None:
        await self.stream.aclose()
