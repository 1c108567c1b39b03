"""The Admin API's HTTP/1.1 server loop: read a request whole, hand it to the runtime, write the answer.

Admin requests are small and rare, so bodies are read whole (bounded by
``MAX_ADMIN_BODY``); deciding what they mean is :mod:`trio_gw.admin`'s job.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qs

import h11
import trio

from trio_gw.admin.api import AdminRequest, AdminResponse
from trio_gw.http.responses import error_response
from trio_gw.net.contexts import TLS_RECEIVE_SIZE
from trio_gw.http.facts import ConnectionFacts
from trio_gw.net.connection import close_stream

#: Largest Admin API request body (a certificate bundle is a few KiB; decK imports more).
MAX_ADMIN_BODY = 16 * 1024 * 1024
#: Deadline for reading one whole admin request.
ADMIN_REQUEST_TIMEOUT = 30.0

Handler = Callable[[AdminRequest, ConnectionFacts], Awaitable[AdminResponse]]


class AdminServer:
    def __init__(self, handle: Handler) -> None:
        self.handle = handle

    async def serve_connection(self, stream: trio.abc.Stream, info: ConnectionFacts) -> None:
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                request: AdminRequest | AdminResponse | None = None
                with trio.move_on_after(ADMIN_REQUEST_TIMEOUT):
                    request = await self._read_request(stream, conn)
                if request is None:
                    return  # closed, or not read in time
                if isinstance(request, AdminResponse):
                    with trio.move_on_after(ADMIN_REQUEST_TIMEOUT):
                        await self._send(stream, conn, request)
                    return
                # Not under the read deadline: POST /acme waits for the CA (validation and issuance
                # may take longer than reading a request may).
                response = await self.handle(request, info)
                with trio.move_on_after(ADMIN_REQUEST_TIMEOUT):
                    await self._send(stream, conn, response)
                if conn.our_state is h11.MUST_CLOSE or conn.their_state is not h11.DONE:
                    return
                conn.start_next_cycle()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return
        finally:
            await close_stream(stream)  # TLS: close_notify first, so clients can tell an end from a truncation

    async def _next(self, stream: trio.abc.Stream, conn: h11.Connection) -> object:
        while True:
            event = conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            conn.receive_data(await stream.receive_some(TLS_RECEIVE_SIZE))  # type: ignore[arg-type]  # bytearray ok

    async def _read_request(self, stream: trio.abc.Stream, conn: h11.Connection) -> AdminRequest | AdminResponse | None:
        try:
            event = await self._next(stream, conn)
            if not isinstance(event, h11.Request):
                return None
            if conn.they_are_waiting_for_100_continue:
                await stream.send_all(conn.send(h11.InformationalResponse(status_code=100, headers=[])))
            body = bytearray()
            while True:
                part = await self._next(stream, conn)
                if isinstance(part, h11.Data):
                    body += part.data
                    if len(body) > MAX_ADMIN_BODY:
                        return _json_response(413, {"message": "request body too large"})
                elif isinstance(part, h11.EndOfMessage):
                    break
                else:
                    return None
        except h11.RemoteProtocolError as exc:
            return _json_response(exc.error_status_hint, {"message": "bad request"})
        target = event.target.decode("latin-1")
        path, _, query = target.partition("?")
        return AdminRequest(
            method=event.method.decode("ascii"),
            path=path,
            query={k: tuple(v) for k, v in parse_qs(query, keep_blank_values=True).items()},
            headers={k.decode("latin-1"): v.decode("latin-1") for k, v in event.headers},
            body=bytes(body),
        )

    async def _send(self, stream: trio.abc.Stream, conn: h11.Connection, response: AdminResponse) -> None:
        if conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in response.headers]
        names = {k.lower() for k, _ in headers}
        if b"content-type" not in names and response.body:
            headers.append((b"content-type", b"application/json; charset=utf-8"))
        headers.append((b"content-length", str(len(response.body)).encode()))
        if conn.their_state is not h11.DONE:
            headers.append((b"connection", b"close"))
        out = conn.send(h11.Response(status_code=response.status, headers=headers))
        if response.body:
            out += conn.send(h11.Data(data=response.body))
        out += conn.send(h11.EndOfMessage())
        await stream.send_all(out)


def _json_response(status: int, body: dict[str, object]) -> AdminResponse:
    return AdminResponse(status=status, body=json.dumps(body).encode(), headers=(("connection", "close"),))


__all__ = ["AdminServer", "error_response"]
