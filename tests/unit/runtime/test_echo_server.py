"""The built-in echo upstream keeps what the tests read, and no more than it is told to.

The demo runs it for as long as the demo runs: before ``keep_requests`` it kept a description
of every request (~1 KB each) for the life of the process.
"""

from __future__ import annotations

import h11
import trio

from trio_gw.runtime.echo import EchoServer, open_echo_listeners


async def _get_each(port: int, paths: list[str]) -> list[int]:
    """One keep-alive connection, one GET per path; the status of each."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    conn = h11.Connection(h11.CLIENT)
    statuses: list[int] = []
    async with stream:
        for path in paths:
            await stream.send_all(conn.send(h11.Request(method="GET", target=path, headers=[("host", "echo")])))
            await stream.send_all(conn.send(h11.EndOfMessage()))
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    conn.receive_data(await stream.receive_some(65536))
                    continue
                if isinstance(event, h11.Response):
                    statuses.append(event.status_code)
                if isinstance(event, h11.EndOfMessage):
                    break
            conn.start_next_cycle()
    return statuses


async def _served(server: EchoServer, paths: list[str]) -> list[int]:
    listeners = await open_echo_listeners()
    port = listeners[0].socket.getsockname()[1]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.serve, listeners)
        statuses = await _get_each(port, paths)
        nursery.cancel_scope.cancel()
    return statuses


async def test_keep_requests_bounds_the_record_to_the_latest() -> None:
    server = EchoServer(keep_requests=3)
    paths = [f"/anything/{i}" for i in range(7)]
    assert await _served(server, paths) == [200] * 7
    assert [r["path"] for r in server.requests] == paths[-3:]


async def test_by_default_every_request_is_kept() -> None:
    server = EchoServer()
    paths = [f"/anything/{i}" for i in range(7)]
    assert await _served(server, paths) == [200] * 7
    assert [r["path"] for r in server.requests] == paths
