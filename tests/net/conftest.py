"""The IO shell driven without a whole gateway: generations built by the real builder, connections
over in-memory streams (as trio's and h11's own tests drive their code), upstreams real or in memory."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
import trio
import trio.testing
import yaml

from trio_gw.http.facts import ConnectionFacts
from trio_gw.model.declarative import load_declarative_text
from trio_gw.net.exchange import Exchange, Proxy
from trio_gw.net.generation import Generation, GenerationBuilder, GenerationHolder
from trio_gw.net.http1 import Http1Server
from trio_gw.net.upstream import UpstreamPool
from trio_gw.settings import default_settings

BuildGeneration = Callable[..., Generation]


@pytest.fixture
def build_generation() -> BuildGeneration:
    """``build_generation(decK dict, **settings)``: one builder per test, so generations share its caches."""
    builders: dict[tuple[tuple[str, str], ...], GenerationBuilder] = {}

    def build(declarative: dict[str, Any], **settings: Any) -> Generation:
        key = tuple(sorted((k, str(v)) for k, v in settings.items()))
        builder = builders.get(key)
        if builder is None:
            builder = builders[key] = GenerationBuilder(default_settings(**settings))
        entities = load_declarative_text(yaml.safe_dump({"_format_version": "3.0", **declarative}),
                                         now=int(time.time()))
        return builder.build(entities)

    return build


class Driver:
    """One HTTP/1.1 client connection to an :class:`Http1Server`, over an in-memory stream pair."""

    def __init__(self, holder: GenerationHolder, *, lockstep: bool = False) -> None:
        self.holder = holder
        self.exchanges: list[Exchange] = []
        self.pool = UpstreamPool(size=4, idle_timeout=30.0, max_requests=100)
        self.proxy = Proxy(holder, self.pool, lambda _conn, ex: self.exchanges.append(ex))
        self.server = Http1Server(self.proxy)
        pair: Callable[[], tuple[trio.abc.HalfCloseableStream, trio.abc.HalfCloseableStream]] = (
            trio.testing.lockstep_stream_pair if lockstep else trio.testing.memory_stream_pair)
        self.client, self.served = pair()
        self.conn = ConnectionFacts(client_ip="127.0.0.1", client_port=40000, server_port=8000)

    async def serve(self) -> None:
        await self.server.serve_connection(self.served, self.conn)

    async def read_until(self, marker: bytes, *, limit: float = 10.0) -> bytes:
        """Read from the gateway until ``marker`` has arrived (or the connection closed)."""
        data = bytearray()
        with trio.fail_after(limit):
            while marker not in data:
                chunk = await self.client.receive_some(65536)
                if not chunk:
                    break
                data += chunk
        return bytes(data)
