"""The control channel between a supervisor and a worker: JSON lines over a Unix socket pair."""

from __future__ import annotations

import socket
from typing import Any

import pytest
import trio

from trio_gw.runtime.control import Channel


def pair() -> tuple[Channel, Channel]:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    return (Channel(trio.SocketStream(trio.socket.from_stdlib_socket(a))),
            Channel(trio.SocketStream(trio.socket.from_stdlib_socket(b))))


async def test_messages_arrive_whole_in_order_until_the_other_end_closes() -> None:
    supervisor, worker = pair()
    big = "x" * 200_000  # more than one read, and more than the socket buffers: senders wait for the reader
    got: list[dict[str, Any]] = []

    async def read() -> None:
        got.extend([m async for m in worker.messages()])

    async with trio.open_nursery() as reading:
        reading.start_soon(read)
        async with trio.open_nursery() as sending:  # concurrent senders: the lock keeps each line whole
            for i in range(3):
                sending.start_soon(supervisor.send, {"type": "state", "n": i, "pad": big})
        await supervisor.aclose()
    assert sorted(m["n"] for m in got) == [0, 1, 2] and all(m["pad"] == big for m in got)


async def test_a_malformed_line_ends_the_channel_with_a_reason() -> None:
    supervisor, worker = pair()
    await supervisor.stream.send_all(b'{"type": "state"}\n[1, 2]\n')
    messages = worker.messages()
    assert await messages.__anext__() == {"type": "state"}
    with pytest.raises(ValueError, match="not an object with a type"):
        await messages.__anext__()
    await supervisor.stream.send_all(b"not json\n")
    with pytest.raises(ValueError):
        await worker.messages().__anext__()
