"""A scripted HTTP/1.1 server over trio + h11 for integration tests (plain, TLS or mTLS), on 127.0.0.1 port 0.

Each request is recorded whole, then answered with the next status of the
script (the last one repeats); ``None`` in the script means "read the request
and never answer", to exercise a client's deadline.  Every connection is closed
after its answer.  Over TLS it runs the gateway's own server stream, so a client
refused during the handshake (no certificate, an unknown CA, no common version)
reads the alert that says why.  Start it with ``port = await nursery.start(server.serve)``;
cancelling the nursery stops it.
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from dataclasses import dataclass

import h11
import trio

from trio_gw.net.listener import close_failed_handshake
from trio_gw.net.tls_stream import TlsStream


@dataclass(frozen=True)
class Recorded:
    """One request as received: method, target, headers (lowercase names), body, and over TLS the client's
    certificate (DER), if it sent one."""

    method: str
    target: str
    headers: dict[str, str]
    body: bytes
    peer_certificate: bytes | None = None


async def read_request(stream: trio.abc.Stream, conn: h11.Connection) -> tuple[h11.Request, bytes] | None:
    """One whole request read through ``conn`` (an h11 server), or ``None`` when the client closed first."""
    head: h11.Request | None = None
    body = bytearray()
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            data = await stream.receive_some(65536)
            if not data:
                return None
            conn.receive_data(bytes(data))
        elif isinstance(event, h11.Request):
            head = event
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage) and head is not None:
            return head, bytes(body)
        else:
            return None


class ScriptedServer:
    """Answers requests with the statuses of ``script`` in turn (see the module docstring)."""

    def __init__(self, script: Sequence[int | None], *, tls: ssl.SSLContext | None = None) -> None:
        if not script:
            raise ValueError("the script needs at least one answer")
        self.script = list(script)
        self.tls = tls
        self.requests: list[Recorded] = []
        self.port = 0
        #: Set once per request received, so a test can wait for the n-th without sleeping.
        self.received = trio.Event()

    def url(self, path: str = "/", *, host: str = "127.0.0.1") -> str:
        """The URL of ``path`` on this server."""
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}{path}"

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen on 127.0.0.1:0 until cancelled; reports the port through ``task_status``."""
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            task_status.started(self.port)
            await trio.serve_listeners(self._connection, listeners, handler_nursery=nursery)

    async def _connection(self, stream: trio.abc.Stream) -> None:
        peer: bytes | None = None
        try:
            if self.tls is not None:
                assert isinstance(stream, trio.SocketStream)
                tls_stream = TlsStream.wrap_server(stream, self.tls)
                stream = tls_stream
                try:
                    await tls_stream.do_handshake()
                except trio.BrokenResourceError:  # the alert is out (OpenSSL wrote it): let the client read it
                    await close_failed_handshake(tls_stream, "refused")
                    return
                peer = tls_stream.getpeercert(binary_form=True)
            await self._exchange(stream, peer)
        except (trio.BrokenResourceError, h11.ProtocolError):
            pass  # the client went away (or failed the handshake): nothing to answer
        finally:
            await trio.aclose_forcefully(stream)

    async def _exchange(self, stream: trio.abc.Stream, peer: bytes | None) -> None:
        conn = h11.Connection(h11.SERVER)
        request = await read_request(stream, conn)
        if request is None:
            return
        head, body = request
        received = {k.decode("latin-1"): v.decode("latin-1") for k, v in head.headers}
        self.requests.append(Recorded(head.method.decode(), head.target.decode(), received, body, peer))
        status = self.script[min(len(self.requests), len(self.script)) - 1]
        self.received.set()
        self.received = trio.Event()
        if status is None:
            await trio.sleep_forever()
        answer = b"" if status in (204, 304) else b'{"ok":true}' if 200 <= status < 300 else b'{"ok":false}'
        headers = [("connection", "close")]
        if answer:
            headers += [("content-type", "application/json"), ("content-length", str(len(answer)))]
        out = conn.send(h11.Response(status_code=status, headers=headers))
        if answer:
            out += conn.send(h11.Data(data=answer))
        await stream.send_all(out + conn.send(h11.EndOfMessage()))
