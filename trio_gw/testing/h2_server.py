"""An HTTP/2-over-TLS upstream for tests, on 127.0.0.1 port 0 (trio + h2).

It offers ALPN ``h2`` (or, with ``alpn=("http/1.1",)``, only HTTP/1.1, and then
answers in HTTP/1.1 through h11) and records every request whole: its fields
(pseudo-headers included), its body, the stream and the connection it came
on.  Each stream is answered with ``status`` and a JSON description of the
request, or ``body_size`` bytes of ``x``; ``script`` overrides the answer per
request, in order:

* an ``int``: that status;
* ``"refuse"``: RST_STREAM(REFUSED_STREAM), the stream was not processed;
* ``"reset"``: RST_STREAM(INTERNAL_ERROR) after the head was read;
* ``"cut"``: a 200 head announcing 100 bytes, 10 of them, then RST_STREAM(INTERNAL_ERROR);
* ``"goaway"``: GOAWAY naming the previous stream as the last processed one, then close;
* ``"malformed"``: an answer with a ``connection`` field, which HTTP/2 forbids (RFC 9113 §8.2.2);
* ``"early"``: as soon as the head arrives, a whole 413 answer and RST_STREAM(NO_ERROR): the
  upstream takes none of the body (RFC 9113 §8.1).

Start it with ``port = await nursery.start(server.serve)``; cancelling the
nursery stops it.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import h2.config
import h2.connection
import h2.events
import h11
import trio
from h2.errors import ErrorCodes

from trio_gw.testing.http_server import read_request

__all__ = ["H2Request", "H2TestServer"]


@dataclass
class H2Request:
    """One request as received (``client_certificate``: DER, when the client sent one)."""

    connection: int
    stream_id: int
    fields: dict[str, str]
    body: bytes
    protocol: str
    client_certificate: bytes | None = None


class H2TestServer:
    """See the module docstring."""

    def __init__(self, tls: ssl.SSLContext, *, status: int = 200, body_size: int | None = None,
                 script: Sequence[int | str] = (), alpn: Sequence[str] = ("h2", "http/1.1"),
                 read_delay: float = 0.0, on_request: Callable[[H2Request], None] | None = None) -> None:
        tls.set_alpn_protocols(list(alpn))
        self.tls = tls
        self.status = status
        self.body_size = body_size
        self.script = list(script)
        self.requests: list[H2Request] = []
        self.connections = 0
        #: Seconds to wait before reading more of a request body (to exercise the client's flow control).
        self.read_delay = read_delay
        #: Called with each request recorded (the spec harness keeps its own records this way).
        self.on_request = on_request
        self.port = 0

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        tls_listeners = [trio.SSLListener(li, self.tls, https_compatible=True) for li in listeners]
        async with trio.open_nursery() as nursery:
            task_status.started(self.port)
            await trio.serve_listeners(self._connection, tls_listeners, handler_nursery=nursery)

    def _record(self, request: H2Request) -> None:
        self.requests.append(request)
        if self.on_request is not None:
            self.on_request(request)

    def _next_answer(self) -> int | str:
        return self.script.pop(0) if self.script else self.status

    def _body_for(self, request: H2Request) -> bytes:
        if self.body_size is not None:
            return b"x" * self.body_size
        return json.dumps({"fields": request.fields, "body_length": len(request.body), "stream": request.stream_id,
                           "protocol": request.protocol}).encode()

    async def _connection(self, stream: trio.SSLStream[trio.abc.Stream]) -> None:
        self.connections += 1
        number = self.connections
        try:
            await stream.do_handshake()
            peer = stream.getpeercert(binary_form=True)
            if stream.selected_alpn_protocol() == "h2":
                await self._serve_h2(stream, number, peer)
            else:
                await self._serve_h11(stream, number, peer)
        except (trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError):
            pass
        finally:
            await trio.aclose_forcefully(stream)

    async def _serve_h2(self, stream: trio.SSLStream[trio.abc.Stream], number: int, peer: bytes | None) -> None:
        conn = h2.connection.H2Connection(h2.config.H2Configuration(
            client_side=False, header_encoding="utf-8", validate_outbound_headers=False,
            normalize_outbound_headers=False))  # so that "malformed" can be sent
        conn.initiate_connection()
        await stream.send_all(conn.data_to_send())
        heads: dict[int, dict[str, str]] = {}
        bodies: dict[int, bytearray] = {}
        last_done = 0
        while True:
            data = await stream.receive_some(65536)
            if not data:
                return
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.RequestReceived):
                    heads[event.stream_id] = {str(k): str(v) for k, v in event.headers}
                    bodies[event.stream_id] = bytearray()
                    if self.script and self.script[0] == "early":
                        self.script.pop(0)
                        sid = event.stream_id
                        self._record(H2Request(number, sid, heads.pop(sid), b"", "h2", peer))
                        bodies.pop(sid)
                        conn.send_headers(sid, [(":status", "413"), ("content-length", "2")])
                        conn.send_data(sid, b"no", end_stream=True)
                        conn.reset_stream(sid, ErrorCodes.NO_ERROR)
                        last_done = sid
                elif isinstance(event, h2.events.DataReceived):
                    if event.stream_id not in bodies:  # a stream answered early: its body is dropped
                        conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                        continue
                    bodies[event.stream_id] += event.data
                    if self.read_delay:
                        await stream.send_all(conn.data_to_send())
                        await trio.sleep(self.read_delay)
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, h2.events.StreamEnded):
                    sid = event.stream_id
                    if sid not in heads:
                        continue
                    request = H2Request(number, sid, heads.pop(sid), bytes(bodies.pop(sid)), "h2", peer)
                    answer = self._next_answer()
                    if answer == "refuse":
                        conn.reset_stream(sid, ErrorCodes.REFUSED_STREAM)
                        continue
                    if answer == "goaway":
                        conn.close_connection(ErrorCodes.NO_ERROR, last_stream_id=last_done)
                        await stream.send_all(conn.data_to_send())
                        return
                    self._record(request)
                    if answer == "reset":
                        conn.reset_stream(sid, ErrorCodes.INTERNAL_ERROR)
                        continue
                    if answer == "cut":
                        conn.send_headers(sid, [(":status", "200"), ("content-length", "100")])
                        conn.send_data(sid, b"0123456789")
                        conn.reset_stream(sid, ErrorCodes.INTERNAL_ERROR)
                        continue
                    if answer == "malformed":
                        conn.send_headers(sid, [(":status", "200"), ("connection", "close")], end_stream=True)
                        continue
                    body = self._body_for(request)
                    conn.send_headers(sid, [(":status", str(answer)), ("content-type", "application/json"),
                                            ("content-length", str(len(body))), ("x-h2-test", "yes")])
                    await self._send_body(stream, conn, sid, body)
                    last_done = sid
            await stream.send_all(conn.data_to_send())

    async def _send_body(self, stream: trio.SSLStream[trio.abc.Stream], conn: h2.connection.H2Connection, sid: int,
                         body: bytes) -> None:
        view = memoryview(body)
        while True:
            window = min(conn.local_flow_control_window(sid), conn.max_outbound_frame_size)
            if window > 0 or not view:
                piece = bytes(view[:window])
                view = view[len(piece):]
                conn.send_data(sid, piece, end_stream=not view)
                await stream.send_all(conn.data_to_send())
                if not view:
                    return
                continue
            data = await stream.receive_some(65536)  # wait for the client's WINDOW_UPDATE
            if not data:
                return
            conn.receive_data(bytes(data))

    async def _serve_h11(self, stream: trio.SSLStream[trio.abc.Stream], number: int, peer: bytes | None) -> None:
        conn = h11.Connection(h11.SERVER)
        while True:
            received = await read_request(stream, conn)
            if received is None:
                return
            head, body = received
            fields = {k.decode(): v.decode() for k, v in head.headers}
            fields[":method"], fields[":path"] = head.method.decode(), head.target.decode()
            request = H2Request(number, 0, fields, body, "http/1.1", peer)
            self._record(request)
            answer = self._next_answer()
            data = self._body_for(request)
            status = answer if isinstance(answer, int) else 500
            out = conn.send(h11.Response(status_code=status, headers=[("content-length", str(len(data)))]))
            await stream.send_all(out + conn.send(h11.Data(data=data)) + conn.send(h11.EndOfMessage()))
            conn.start_next_cycle()
