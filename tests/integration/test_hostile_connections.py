"""A client that resets its connection at once must cost that connection, never the node.

Found by hand: connecting and closing with ``SO_LINGER`` 0 (an RST right after the
handshake) made the accepted socket fail ``getpeername`` with ENOTCONN before the
gateway looked at it; the exception escaped the connection's task and stopped the node.
Each listener kind gets a burst of such connections, then a well-behaved request.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import struct
from pathlib import Path

import trustme

from .processes import Node, nodes  # noqa: F401  (fixture)
from .test_no_lost_requests import node_before_echo

RESETS = 300


def reset_burst(port: int, count: int = RESETS) -> None:
    """Connect and close with an RST, ``count`` times, as fast as the kernel completes handshakes."""
    for _ in range(count):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        try:
            sock.connect(("127.0.0.1", port))
        except OSError:
            pass
        sock.close()


def test_connections_reset_before_they_are_served_cost_nothing_else(
    tmp_path: Path, nodes: list[Node], ca: trustme.CA, server_pair: tuple[Path, Path],
) -> None:
    cert, key = server_pair
    node = node_before_echo(tmp_path, nodes, {"proxy_listen": "127.0.0.1:0, 127.0.0.1:0 ssl",
                                              "ssl_cert": str(cert), "ssl_cert_key": str(key)})
    plain_port, tls_port = node.ports["proxy"]
    for port in (plain_port, tls_port, node.status_port):
        reset_burst(port)

    assert node.proc.poll() is None, node.log()
    client = http.client.HTTPConnection("127.0.0.1", plain_port, timeout=10)
    client.request("GET", "/anything")
    assert client.getresponse().status == 200
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    tls_client = http.client.HTTPSConnection("127.0.0.1", tls_port, timeout=10, context=ctx)
    tls_client.request("GET", "/anything", headers={"host": "localhost"})
    assert tls_client.getresponse().status == 200
    status = http.client.HTTPConnection("127.0.0.1", node.status_port, timeout=10)
    status.request("GET", "/status")
    assert status.getresponse().status == 200
    assert "Traceback" not in node.log()
