"""``backlog=N`` on a ``*_listen`` entry reaches the kernel, on every kind of listener.

Kong's ``backlog=N`` flag was accepted and silently dropped: every socket listened with 16384.
The kernel's own figure is read back with ``TCP_INFO``: for a listening socket Linux reports
the listen queue's limit in ``tcpi_sacked`` (``sk_max_ack_backlog``).
"""

from __future__ import annotations

import socket
import struct
import sys

import pytest

from trio_gw.runtime.gateway import Gateway
from trio_gw.runtime.settings import load_settings
from trio_gw.runtime.supervisor import bind_proxy_sockets
from trio_gw.settings.values import DEFAULT_BACKLOG

from .conftest import StartGateway

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="TCP_INFO's listen-queue figure is Linux's")


def listen_backlog(sock: socket.socket) -> int:
    """The listen queue limit the kernel holds for ``sock`` (struct tcp_info: 8 bytes of u8, then
    rto, ato, snd_mss, rcv_mss, unacked, sacked as u32)."""
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    return int(struct.unpack_from("I", info, 28)[0])


def kernel_cap(backlog: int) -> int:
    """What the kernel makes of ``backlog``: at most ``net.core.somaxconn``."""
    with open("/proc/sys/net/core/somaxconn") as f:
        return min(backlog, int(f.read()))


def test_the_tcp_info_reading_is_the_backlog_given() -> None:
    with socket.create_server(("127.0.0.1", 0), backlog=37) as sock:
        assert listen_backlog(sock) == 37


async def test_every_listener_listens_with_its_backlog(start_gateway: StartGateway) -> None:
    gw: Gateway = await start_gateway(
        {"_format_version": "3.0"},
        proxy_listen="127.0.0.1:0 backlog=71, 127.0.0.1:0 ssl",
        admin_listen="127.0.0.1:0 backlog=72",
        status_listen="127.0.0.1:0 backlog=73",
    )
    seen = {kind: [listen_backlog(li.socket) for li in items]
            for kind, items in gw.listeners.items()}
    assert seen == {"proxy": [71, kernel_cap(DEFAULT_BACKLOG)], "admin": [72], "status": [73]}


def test_the_supervisor_binds_worker_sockets_with_the_backlog() -> None:
    settings = load_settings(None, environ={}, overrides={
        "proxy_listen": "127.0.0.1:0 reuseport backlog=81, 127.0.0.1:0"})
    groups = bind_proxy_sockets(settings, workers=2)
    try:
        assert [[listen_backlog(s) for s in group] for group in groups] == [[81, 81], [kernel_cap(DEFAULT_BACKLOG)]]
    finally:
        for group in groups:
            for sock in group:
                sock.close()
