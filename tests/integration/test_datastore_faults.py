"""A node never dies of its datastore: it keeps serving its last generation and recovers.

Before the generation (issue 12), ``reload`` caught only ``ConfigError``: a
``StoreError`` from ``store.load()`` during the poll — the datastore moved, then
failed to be read, as when a database restarts — escaped, unwound the accept
nursery, and the node exited.  The fault is injected into the node's own store
object (its version says "changed elsewhere", every read fails), which is what a
datastore going away between two polls looks like from inside.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
import trio

from trio_gw.store import StoreError
from trio_gw.testing.http_client import Client

from .conftest import StartGateway, Upstream, port_of


async def call(port: int, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    client = await Client.connect(port)
    data = None if body is None else json.dumps(body).encode()
    reply = await client.request(method, path, body=data,
                                 headers=[("content-type", "application/json")] if data is not None else [])
    await client.aclose()
    return reply.status, reply.json() if reply.body else None


class Fault:
    """Makes a store's reads fail while ``on`` (the version says another node wrote)."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.on = False
        self.reads = 0
        real_version, real_load = store.version, store.load
        real_versioned = getattr(store, "load_versioned", real_load)  # (the store before issue 12 had no such read)

        def version() -> int:
            return real_version() + 1000 if self.on else real_version()

        def failing(real: Any) -> Any:
            def read() -> Any:
                if self.on:
                    self.reads += 1
                    raise StoreError("datastore error: injected: the database went away")
                return real()
            return read

        store.version, store.load, store.load_versioned = version, failing(real_load), failing(real_versioned)


async def test_the_node_keeps_serving_while_its_datastore_fails_and_recovers(
    start_gateway: StartGateway, upstream: Upstream, caplog: pytest.LogCaptureFixture,
) -> None:
    gw = await start_gateway(None, database="sqlite", admin_listen="127.0.0.1:0", db_update_frequency="0.05s")
    admin, proxy, status_port = port_of(gw, kind="admin"), port_of(gw), port_of(gw, kind="status")
    assert (await call(admin, "POST", "/services", {"name": "echo", "url": upstream.url}))[0] == 201
    assert (await call(admin, "POST", "/services/echo/routes", {"name": "r", "paths": ["/api"]}))[0] == 201
    assert (await call(proxy, "GET", "/api/before"))[0] == 200

    fault = Fault(gw.store)
    fault.on = True
    caplog.set_level(logging.ERROR, logger="trio_gw")
    while fault.reads < 5:  # several polls, each of which reloads and fails
        await trio.sleep(0.05)
    for i in range(5):
        assert (await call(proxy, "GET", f"/api/during/{i}"))[0] == 200  # the last generation still serves
    _, status = await call(status_port, "GET", "/status")
    assert status["database"]["reachable"] is False and status["database"]["state"] == "stale"
    assert "the database went away" in status["database"]["error"]
    code, body = await call(admin, "POST", "/services", {"name": "other", "url": upstream.url})
    assert code == 503 and "unavailable" in body["message"]  # nothing written, said so
    outage_lines = [r for r in caplog.records if "datastore unreachable" in r.getMessage()]
    assert len(outage_lines) == 1  # once per outage, not once per poll

    fault.on = False
    with trio.fail_after(10):
        while not (await call(status_port, "GET", "/status"))[1]["database"]["reachable"]:
            await trio.sleep(0.05)
    assert (await call(admin, "POST", "/services", {"name": "after", "url": upstream.url}))[0] == 201
    assert (await call(proxy, "GET", "/api/after"))[0] == 200
