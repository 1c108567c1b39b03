"""A WebSocket upstream and client for the tests, over ``wsproto`` (sans-IO, the h11 authors').

The upstream (:class:`WebSocketEcho`) accepts a handshake on any path and
echoes every message back; what the path says changes that:

* ``/refuse/N`` — refuses the handshake with status N (``wsproto``'s
  ``RejectConnection``), a plain HTTP answer on a connection that stays usable;
* ``/silent`` — accepts, then never sends anything (for ``read_timeout``);
* ``/bye`` — accepts, sends the message ``bye`` and closes (code 1000).

Each handshake is recorded with its path and headers, and each message
received, so a test checks what went through the gateway both ways.

:class:`WebSocketClient` speaks the client side over any ``trio.abc.Stream``
(plain or TLS), so the same client talks ``ws://`` and ``wss://`` to the gateway.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import trio
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.utilities import RemoteProtocolError
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)

__all__ = ["Handshake", "WebSocketClient", "WebSocketEcho", "WebSocketRefused", "masked_text_frame"]

RECEIVE_SIZE = 65536


@dataclass
class Handshake:
    """One handshake the upstream received."""

    path: str
    headers: dict[str, str]
    #: The protocol ALPN agreed on, over TLS (None over plain TCP, or without ALPN).
    alpn: str | None = None


@dataclass
class WebSocketEcho:
    """The echoing WebSocket upstream; ``serve`` it on listeners in a nursery."""

    handshakes: list[Handshake] = field(default_factory=list)
    messages: list[str | bytes] = field(default_factory=list)
    #: Connections whose client closed with a close frame (the close handshake went through).
    closed_by_client: int = 0

    async def serve(self, listeners: Sequence[trio.abc.Listener[Any]]) -> None:
        await trio.serve_listeners(self._connection, list(listeners))

    async def _connection(self, stream: trio.abc.Stream) -> None:
        try:
            async with stream:
                await self._serve(stream)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the peer went away without a close frame: this connection ends, the server goes on
        except RemoteProtocolError:
            pass  # not a WebSocket handshake (a gateway that dropped the Upgrade): the connection just closes

    async def _serve(self, stream: trio.abc.Stream) -> None:
        ws = WSConnection(ConnectionType.SERVER)
        while True:
            data = await stream.receive_some(RECEIVE_SIZE)
            ws.receive_data(bytes(data) or None)
            for event in ws.events():
                if isinstance(event, Request):
                    headers = {k.decode().lower(): v.decode() for k, v in event.extra_headers}
                    headers["host"] = event.host
                    alpn = stream.selected_alpn_protocol() if isinstance(stream, trio.SSLStream) else None
                    self.handshakes.append(Handshake(event.target, headers, alpn))
                    if event.target.startswith("/refuse/"):
                        status = int(event.target.rsplit("/", 1)[1])
                        await stream.send_all(ws.send(RejectConnection(
                            status_code=status, headers=[(b"content-length", b"7")], has_body=True)))
                        await stream.send_all(ws.send(RejectData(data=b"refused", body_finished=True)))
                        return
                    await stream.send_all(ws.send(AcceptConnection()))
                    if event.target == "/silent":
                        await trio.sleep_forever()
                    if event.target == "/bye":
                        await stream.send_all(ws.send(TextMessage(data="bye")))
                        await stream.send_all(ws.send(CloseConnection(code=1000)))
                elif isinstance(event, (TextMessage, BytesMessage)):
                    # wsproto may deliver a message in pieces: echo each piece as it comes
                    piece = event.data if isinstance(event.data, str) else bytes(event.data)
                    self.messages.append(piece)
                    await stream.send_all(ws.send(_message(piece, finished=event.message_finished)))
                elif isinstance(event, Ping):
                    await stream.send_all(ws.send(event.response()))
                elif isinstance(event, CloseConnection):
                    if ws.state is ConnectionState.REMOTE_CLOSING:  # a close frame, not wsproto's note of an EOF
                        self.closed_by_client += 1
                        await stream.send_all(ws.send(event.response()))
                    return
            if not data:
                return


def _message(data: str | bytes, *, finished: bool = True) -> TextMessage | BytesMessage:
    if isinstance(data, str):
        return TextMessage(data=data, message_finished=finished)
    return BytesMessage(data=data, message_finished=finished)


def masked_text_frame(text: str, mask: bytes = b"\x01\x02\x03\x04") -> bytes:
    """One final text frame as a client sends it (masked, RFC 6455 §5.2), at most 125 bytes: for
    bytes written before the handshake's answer, which ``wsproto`` rightly refuses to frame."""
    payload = text.encode()
    if len(payload) > 125:
        raise ValueError("a short frame only")
    return bytes([0x81, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


class WebSocketRefused(Exception):
    """The server answered the handshake with a plain HTTP response."""

    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(f"handshake refused with {status}")
        self.status = status
        self.body = body


class WebSocketClient:
    """The client side of one WebSocket over ``stream``."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.pending: list[object] = []
        self.closed: CloseConnection | None = None

    @classmethod
    async def connect(
        cls, stream: trio.abc.Stream, host: str, path: str, *, extra_headers: list[tuple[bytes, bytes]] | None = None,
        early: bytes = b"",
    ) -> WebSocketClient:
        """Send the handshake (and ``early`` bytes right behind it, in the same write) and wait for its answer.

        Raises:
            WebSocketRefused: the server answered with a plain HTTP response.
        """
        client = cls(stream)
        await stream.send_all(client.ws.send(Request(host=host, target=path, extra_headers=extra_headers or [])) + early)
        status, body = 0, b""
        while True:
            events = await client._events()
            for index, event in enumerate(events):
                if isinstance(event, AcceptConnection):
                    client.pending = events[index + 1:]  # frames that came in the same read as the 101
                    return client
                if isinstance(event, RejectConnection):
                    status = event.status_code
                    if not event.has_body:
                        raise WebSocketRefused(status, b"")
                elif isinstance(event, RejectData):
                    body += event.data
                    if event.body_finished:
                        raise WebSocketRefused(status, body)

    async def _events(self) -> list[object]:
        if self.pending:
            events, self.pending = self.pending, []
            return events
        data = await self.stream.receive_some(RECEIVE_SIZE)
        self.ws.receive_data(bytes(data) or None)
        return list(self.ws.events())

    async def send(self, message: str | bytes) -> None:
        await self.stream.send_all(self.ws.send(_message(message)))

    async def receive(self) -> str | bytes | None:
        """The next whole message, or ``None`` when the server closed (``closed`` says how)."""
        parts: list[str | bytes] = []
        while True:
            events = await self._events()
            for index, event in enumerate(events):
                if isinstance(event, (TextMessage, BytesMessage)):
                    parts.append(event.data if isinstance(event.data, str) else bytes(event.data))
                    if event.message_finished:
                        self.pending = events[index + 1:]
                        return "".join(parts) if isinstance(event, TextMessage) else b"".join(parts)  # type: ignore[arg-type]
                elif isinstance(event, CloseConnection):
                    self.closed = event
                    return None
            if not events and self.ws.state.name == "CLOSED":
                return None

    async def close(self, code: int = 1000) -> None:
        """Start the close handshake and wait for the server's close frame."""
        await self.stream.send_all(self.ws.send(CloseConnection(code=code)))
        while self.closed is None:
            for event in await self._events():
                if isinstance(event, CloseConnection):
                    self.closed = event
