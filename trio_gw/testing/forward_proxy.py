"""A minimal HTTP forward proxy for tests, on 127.0.0.1 port 0: ``CONNECT`` tunnels and absolute-form requests.

It asks for ``Proxy-Authorization: Basic`` of ``user:s3cret`` (anything else
gets 407) and records each request line with the credentials it came with.
Start it with ``proxy, port = await start_proxy(nursery)`` (``tls=`` makes it an
https proxy, recording the client certificate of each connection); cancelling
the nursery stops it.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from typing import Any

import trio

__all__ = ["ConnectProxy", "start_proxy"]


@dataclass
class ConnectProxy:
    """A minimal forward proxy: CONNECT tunnels and absolute-form GETs, Basic auth ``user:s3cret``."""

    heads: list[tuple[bytes, bytes | None]] = field(default_factory=list)  # (request line, proxy-authorization)
    expected_auth: bytes = b"Basic dXNlcjpzM2NyZXQ="  # user:s3cret
    peers: list[Any] = field(default_factory=list)  # https proxy: the client certificate of each connection

    async def serve(self, listener: trio.abc.Listener[Any]) -> None:
        async with trio.open_nursery() as nursery:
            while True:
                sock = await listener.accept()
                nursery.start_soon(self._one, sock)

    async def _one(self, sock: Any) -> None:
        data = b""
        try:
            while b"\r\n\r\n" not in data:
                chunk = await sock.receive_some(4096)
                if not chunk:
                    return
                data += chunk
        except trio.BrokenResourceError:
            return  # the gateway refused this https proxy's certificate
        if isinstance(sock, trio.SSLStream):
            self.peers.append(sock.getpeercert(binary_form=True))
        head, rest = data.split(b"\r\n\r\n", 1)
        lines = head.split(b"\r\n")
        auth = next((ln.split(b":", 1)[1].strip() for ln in lines[1:] if ln.lower().startswith(b"proxy-authorization:")), None)
        self.heads.append((lines[0], auth))
        method, target, _ = lines[0].split(b" ")
        if auth != self.expected_auth:
            await sock.send_all(b"HTTP/1.1 407 Proxy Authentication Required\r\ncontent-length: 0\r\n\r\n")
            await sock.aclose()
            return
        if method == b"CONNECT":
            host, port = target.rsplit(b":", 1)
            origin = await trio.open_tcp_stream(host.decode(), int(port))
            await sock.send_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        else:  # absolute form: forward the request as it came
            authority = target.split(b"/", 3)[2]
            host, port = authority.rsplit(b":", 1)
            origin = await trio.open_tcp_stream(host.decode(), int(port))
            await origin.send_all(head + b"\r\n\r\n" + rest)
        async with trio.open_nursery() as pipes:
            pipes.start_soon(_pipe, sock, origin)
            pipes.start_soon(_pipe, origin, sock)


async def _pipe(src: trio.abc.Stream, dst: trio.abc.Stream) -> None:
    try:
        while data := await src.receive_some(65536):
            await dst.send_all(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    finally:
        await trio.aclose_forcefully(dst)


async def start_proxy(
    nursery: trio.Nursery, tls: ssl.SSLContext | None = None, peers: list[Any] | None = None,
) -> tuple[ConnectProxy, int]:
    """Start a proxy; with ``tls`` an https one, appending the client certificate it got (or None) to ``peers``."""
    proxy = ConnectProxy()
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    listener: Any = listeners[0]
    if tls is not None:
        listener = trio.SSLListener(listener, tls, https_compatible=True)
        proxy.peers = peers if peers is not None else []
    nursery.start_soon(proxy.serve, listener)
    return proxy, listeners[0].socket.getsockname()[1]
