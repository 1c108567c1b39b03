"""Loopback ports that must be known before the server that will listen on them starts.

pebble validates challenges on the gateway's own ports, so it is told those ports before the
gateway binds them. A port picked free and released can be taken in between -- by pebble's own
ports, by any client's ephemeral port -- and the gateway then fails with EADDRINUSE (a CI run
did). :func:`reserved_ports` closes that gap: each port stays bound with ``SO_REUSEPORT`` and
never listens, so until the block ends only a ``reuseport`` listener of this user can bind it,
and the kernel hands that listener every connection (a socket that never listens receives none).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager


@contextmanager
def reserved_ports(count: int, host: str = "127.0.0.1") -> Iterator[list[int]]:
    """``count`` distinct ports on ``host``, held until the block ends (listen on them with ``reuseport``)."""
    with ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket())
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((host, 0))
            ports.append(int(sock.getsockname()[1]))
        yield ports
