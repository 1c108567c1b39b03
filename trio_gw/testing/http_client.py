"""A small HTTP/1.1 client over trio + h11 for integration tests (plain or TLS)."""

from __future__ import annotations

import json
import ssl
from dataclasses import dataclass, field
from typing import Any

import h11
import trio


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes
    informational: list[int] = field(default_factory=list)

    def json(self) -> Any:
        return json.loads(self.body)


class Client:
    """One keep-alive connection; ``request`` can be called repeatedly."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.conn = h11.Connection(h11.CLIENT)

    @classmethod
    async def connect(
        cls, port: int, *, host: str = "127.0.0.1", tls: ssl.SSLContext | None = None, server_hostname: str | None = None
    ) -> Client:
        sock = await trio.open_tcp_stream(host, port)
        stream: trio.abc.Stream = sock
        if tls is not None:
            ssl_stream = trio.SSLStream(sock, tls, server_hostname=server_hostname, https_compatible=True)
            await ssl_stream.do_handshake()
            stream = ssl_stream
        return cls(stream)

    async def request(
        self,
        method: str,
        target: str,
        *,
        host: str = "localhost",
        headers: list[tuple[str, str]] | None = None,
        body: bytes | None = None,
        chunks: list[bytes] | None = None,
    ) -> Reply:
        hdrs = [("host", host)] + list(headers or [])
        if body is not None:
            hdrs.append(("content-length", str(len(body))))
        elif chunks is not None:
            hdrs.append(("transfer-encoding", "chunked"))
        out = self.conn.send(h11.Request(method=method, target=target, headers=hdrs))
        await self.stream.send_all(out)

        async def send_body() -> None:
            pieces = [body[i : i + 65536] for i in range(0, len(body), 65536)] if body else []
            for piece in pieces + list(chunks or []):
                await self.stream.send_all(self.conn.send(h11.Data(data=piece)))
            await self.stream.send_all(self.conn.send(h11.EndOfMessage()))

        # Send and receive at once, as curl does: an echoing upstream answers while we upload.
        async with trio.open_nursery() as nursery:
            nursery.start_soon(send_body)
            reply = await self.read_reply()
        if self.conn.our_state is h11.DONE and self.conn.their_state is h11.DONE:
            self.conn.start_next_cycle()
        return reply

    async def read_reply(self) -> Reply:
        informational: list[int] = []
        status, headers, parts = 0, {}, []
        while True:
            event = self.conn.next_event()
            if event is h11.NEED_DATA:
                self.conn.receive_data(await self.stream.receive_some(65536))  # type: ignore[arg-type]  # h11 takes bytearray too
                continue
            if isinstance(event, h11.InformationalResponse):
                informational.append(event.status_code)
            elif isinstance(event, h11.Response):
                status = event.status_code
                headers = {k.decode(): v.decode("latin-1") for k, v in event.headers}
            elif isinstance(event, h11.Data):
                parts.append(bytes(event.data))
            elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                break
        if self.conn.our_state is h11.DONE and self.conn.their_state is h11.DONE:
            self.conn.start_next_cycle()
        return Reply(status, headers, b"".join(parts), informational)

    async def aclose(self) -> None:
        await trio.aclose_forcefully(self.stream)


async def raw_exchange(port: int, data: bytes, *, timeout: float = 5.0) -> bytes:
    """Send raw bytes, read until the server closes (or ``timeout``); returns what came back."""
    sock = await trio.open_tcp_stream("127.0.0.1", port)
    received = []
    with trio.move_on_after(timeout):
        await sock.send_all(data)
        while True:
            try:
                chunk = await sock.receive_some(65536)
            except trio.BrokenResourceError:
                break
            if not chunk:
                break
            received.append(chunk)
    await trio.aclose_forcefully(sock)
    return b"".join(received)
