"""The upgraded-connection relay over in-memory stream pairs, in virtual time (trio's MockClock)."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from trio_gw.net.tunnel import relay_tunnel

LIMITS = {"read_timeout": 60.0, "write_timeout": 10.0, "send_timeout": 5.0}


@pytest.fixture
def autojump_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


Pair = tuple[trio.abc.Stream, trio.abc.Stream]


def pairs() -> tuple[Pair, Pair]:
    """(client side, the gateway's client end), (the gateway's upstream end, upstream side)."""
    client, gw_client = trio.testing.memory_stream_pair()
    gw_upstream, upstream = trio.testing.memory_stream_pair()
    return (client, gw_client), (gw_upstream, upstream)


async def test_bytes_go_both_ways_early_ones_first_and_a_close_ends_it(autojump_clock: trio.testing.MockClock) -> None:
    (client, gw_client), (gw_upstream, upstream) = pairs()
    result: list[tuple[int, int, str | None]] = []

    async def run() -> None:
        result.append(await relay_tunnel(gw_client, b"early-up", gw_upstream, b"early-down", **LIMITS))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run)
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
    (client, gw_client), (gw_upstream, upstream) = pairs()
    result: list[tuple[int, int, str | None]] = []

    async def run() -> None:
        result.append(await relay_tunnel(gw_client, b"", gw_upstream, b"", **LIMITS))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run)
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
    client, gw_client = trio.testing.lockstep_stream_pair()  # no buffer: a write waits for a read
    gw_upstream, upstream = trio.testing.memory_stream_pair()
    result: list[tuple[int, int, str | None]] = []

    async def run() -> None:
        result.append(await relay_tunnel(gw_client, b"", gw_upstream, b"", **LIMITS))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run)
        start = trio.current_time()
        await upstream.send_all(b"nobody reads this")
        while not result:
            await trio.sleep(1)
    assert result == [(0, 0, "client_send_timeout")]
    assert 5 <= trio.current_time() - start < 7
    del client


async def test_a_client_that_leaves_ends_it_at_once(autojump_clock: trio.testing.MockClock) -> None:
    (client, gw_client), (gw_upstream, upstream) = pairs()
    result: list[tuple[int, int, str | None]] = []

    async def run() -> None:
        result.append(await relay_tunnel(gw_client, b"", gw_upstream, b"", **LIMITS))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run)
        start = trio.current_time()
        await client.aclose()
    assert result == [(0, 0, None)] and trio.current_time() == start
    del upstream
