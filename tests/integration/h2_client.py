"""A small HTTP/2 client for the tests: h2 over a trio SSLStream, several streams at once.

One task drives everything: it opens the requested streams, sends request
bodies as far as the server's flow-control windows allow, reads, acknowledges
received data, and repeats until every stream ended (or was reset).
"""

from __future__ import annotations

import json
import ssl
from dataclasses import dataclass, field
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import trio

Header = tuple[bytes, bytes]


@dataclass
class H2Request:
    method: str
    path: str
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes | None = None
    authority: str = "localhost"


@dataclass
class H2Reply:
    stream_id: int
    status: int = 0
    headers: list[Header] = field(default_factory=list)
    body: bytearray = field(default_factory=bytearray)
    reset: int | None = None
    ended: bool = False

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k == name.encode():
                return v.decode("latin-1")
        return None

    def json(self) -> Any:
        return json.loads(bytes(self.body))


class H2Client:
    def __init__(self, stream: trio.SSLStream[trio.SocketStream], config: h2.config.H2Configuration | None = None) -> None:
        self.stream = stream
        self.conn = h2.connection.H2Connection(config or h2.config.H2Configuration(client_side=True, header_encoding=None))
        self.events: list[h2.events.Event] = []
        self.closed = False

    @classmethod
    async def connect(cls, port: int, ctx: ssl.SSLContext, *, server_hostname: str = "localhost",
                      config: h2.config.H2Configuration | None = None) -> H2Client:
        sock = await trio.open_tcp_stream("127.0.0.1", port)
        stream = trio.SSLStream(sock, ctx, server_hostname=server_hostname)
        await stream.do_handshake()
        assert stream.selected_alpn_protocol() == "h2", stream.selected_alpn_protocol()
        client = cls(stream, config)
        client.conn.initiate_connection()
        await client.flush()
        return client

    async def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            await self.stream.send_all(data)

    async def receive(self) -> list[h2.events.Event]:
        """One read: the events it produced (also kept in ``self.events``)."""
        data = await self.stream.receive_some(65536)
        if not data:
            self.closed = True
            return []
        events = self.conn.receive_data(data)
        self.events.extend(events)
        await self.flush()
        return events

    def start(self, request: H2Request, *, end_stream: bool | None = None) -> int:
        sid = self.conn.get_next_available_stream_id()
        headers = [
            (b":method", request.method.encode()),
            (b":scheme", b"https"),
            (b":authority", request.authority.encode()),
            (b":path", request.path.encode()),
            *((k.lower().encode(), v.encode()) for k, v in request.headers),
        ]
        if end_stream is None:
            end_stream = request.body is None
        self.conn.send_headers(sid, headers, end_stream=end_stream)
        return sid

    async def exchange(self, *requests: H2Request) -> list[H2Reply]:
        """Run ``requests`` concurrently on this connection; the replies in order."""
        replies: dict[int, H2Reply] = {}
        uploads: dict[int, memoryview] = {}
        for request in requests:
            sid = self.start(request)
            replies[sid] = H2Reply(sid)
            if request.body is not None:
                uploads[sid] = memoryview(request.body)
        while not all(r.ended for r in replies.values()):
            for sid, view in list(uploads.items()):
                if replies[sid].ended:
                    del uploads[sid]
                    continue
                size = min(self.conn.local_flow_control_window(sid), self.conn.max_outbound_frame_size, len(view))
                while size > 0:
                    self.conn.send_data(sid, view[:size])
                    view = view[size:]
                    size = min(self.conn.local_flow_control_window(sid), self.conn.max_outbound_frame_size, len(view))
                uploads[sid] = view
                if not view:
                    self.conn.end_stream(sid)
                    del uploads[sid]
            await self.flush()
            events = await self.receive()
            if self.closed:
                raise ConnectionError("server closed the connection")
            for event in events:
                self._apply(event, replies)
        return [replies[sid] for sid in sorted(replies)]

    def _apply(self, event: h2.events.Event, replies: dict[int, H2Reply]) -> None:
        if isinstance(event, h2.events.ResponseReceived) and event.stream_id in replies:
            reply = replies[event.stream_id]
            for name, value in event.headers:
                if name == b":status":
                    reply.status = int(value)
                else:
                    reply.headers.append((name, value))
        elif isinstance(event, h2.events.DataReceived) and event.stream_id in replies:
            replies[event.stream_id].body += event.data
            self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        elif isinstance(event, h2.events.StreamEnded) and event.stream_id in replies:
            replies[event.stream_id].ended = True
        elif isinstance(event, h2.events.StreamReset) and event.stream_id in replies:
            replies[event.stream_id].reset = event.error_code
            replies[event.stream_id].ended = True
        elif isinstance(event, h2.events.ConnectionTerminated):
            for reply in replies.values():
                if not reply.ended and (event.last_stream_id is None or reply.stream_id > event.last_stream_id):
                    reply.ended = True

    async def request(self, method: str, path: str, **kw: Any) -> H2Reply:
        return (await self.exchange(H2Request(method, path, **kw)))[0]

    async def wait_for(self, kind: type[h2.events.Event], timeout: float = 5) -> h2.events.Event:
        """Read until an event of ``kind`` arrives (or the server closes)."""
        with trio.fail_after(timeout):
            while True:
                for event in self.events:
                    if isinstance(event, kind):
                        return event
                await self.receive()
                if self.closed:
                    raise ConnectionError("server closed the connection")

    async def aclose(self) -> None:
        await trio.aclose_forcefully(self.stream)


def h2_context(ca: Any, *, alpn: list[str] | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    ctx.set_alpn_protocols(alpn or ["h2"])
    return ctx
