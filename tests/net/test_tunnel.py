"""The upgraded-connection relay over in-memory stream pairs, in virtual time (trio's MockClock)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing

from trio_gw.net.tunnel import relay_tunnel

LIMITS = {"read_timeout": 60.0, "write_timeout": 10.0, "send_timeout": 5.0}

Result = list[tuple[int, int, str | None]]


@pytest.fixture
def autojump_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


@asynccontextmanager
async def tunnel(
    gw_client: trio.abc.Stream, gw_upstream: trio.abc.Stream, early_up: bytes = b"", early_down: bytes = b"",
) -> AsyncIterator[Result]:
    """The relay between the gateway's two ends, running while the block runs; its result once it ended
    (the block waits for that on leaving)."""
    result: Result = []

    async def run() -> None:
        result.append(await relay_tunnel(gw_client, early_up, gw_upstream, early_down, **LIMITS))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run)
        yield result


async def test_bytes_go_both_ways_early_ones_first_and_a_close_ends_it(autojump_clock: trio.testing.MockClock) -> None:
    client, gw_client = trio.testing.memory_stream_pair()
    gw_upstream, upstream = trio.testing.memory_stream_pair()
    async with tunnel(gw_client, gw_upstream, b"early-up", b"early-down") as result:
        assert await upstream.receive_some(100) == b"early-up"
        assert await client.receive_some(100) == b"early-down"
        await client.send_all(b"ping")
        assert await upstream.receive_some(100) == b"ping"
        await upstream.send_all(b"pong!")
        assert await client.receive_some(100) == b"pong!"
        await upstream.aclose()  # the upstream ends: the tunnel ends
    assert result == [(len(b"early-up") + 4, len(b"early-down") + 5, None)]


async def test_an_upstream_silent_for_read_timeout_ends_it_whatever_the_client_sends(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """nginx's proxy_read_timeout: the upstream's silence counts, the client's chatter does not."""
    client, gw_client = trio.testing.memory_stream_pair()
    gw_upstream, upstream = trio.testing.memory_stream_pair()
    async with tunnel(gw_client, gw_upstream) as result:
        start = trio.current_time()
        for _ in range(2):  # client messages at 25 s and 50 s; the upstream reads them and says nothing
            await trio.sleep(25)
            await client.send_all(b"x")
            assert await upstream.receive_some(100) == b"x"
        while not result:
            await trio.sleep(0.5)
        assert 60 <= trio.current_time() - start <= 60.5
    assert result == [(2, 0, "upstream_read_timeout")]


async def test_a_client_that_stops_reading_ends_it_at_send_timeout(autojump_clock: trio.testing.MockClock) -> None:
    _client, gw_client = trio.testing.lockstep_stream_pair()  # no buffer: a write waits for a read
    gw_upstream, upstream = trio.testing.memory_stream_pair()
    async with tunnel(gw_client, gw_upstream) as result:
        start = trio.current_time()
        await upstream.send_all(b"nobody reads this")
        while not result:
            await trio.sleep(1)
        assert 5 <= trio.current_time() - start < 7
    assert result == [(0, 0, "client_send_timeout")]


async def test_a_client_that_leaves_ends_it_at_once(autojump_clock: trio.testing.MockClock) -> None:
    client, gw_client = trio.testing.memory_stream_pair()
    gw_upstream, _upstream = trio.testing.memory_stream_pair()
    async with tunnel(gw_client, gw_upstream) as result:
        start = trio.current_time()
        await client.aclose()
    assert result == [(0, 0, None)] and trio.current_time() == start
