"""The status listener: ``GET /status`` reports health, config hash and snapshot age.

With worker processes it is served once per node, by the supervisor: ``workers``
lists every worker (``runtime/node_status.py``) and ``/metrics`` adds up every
worker's counts (prometheus-client's multiprocess mode).

Listeners with the ``ssl`` flag (``status_listen 127.0.0.1:8100 ssl``) serve it
over TLS with ``status_ssl_cert`` (Kong); the handshake happens in the
listener, and the answer ends with close_notify like every TLS answer.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING

import h11
import trio

from trio_gw.http.responses import error_response
from trio_gw.net.contexts import TLS_RECEIVE_SIZE
from trio_gw.http.facts import ConnectionFacts
from trio_gw.net.connection import close_stream
from trio_gw.runtime.node_status import add_worker_totals, datastore_status, workers_status

if TYPE_CHECKING:
    from trio_gw.runtime.gateway import Gateway


class StatusServer:
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    def status(self) -> dict[str, object]:
        gw = self.gateway
        gen = gw.generation
        now = time.time()
        database = datastore_status(gw, now)
        workers = workers_status(gw, now)
        status: dict[str, object] = {
            "server": {
                "connections_in_flight": gw.proxy.in_flight,
                "upstream_idle_connections": gw.pool.idle_count(),
                "uptime_seconds": round(now - gw.started_at, 3),
                "connections": {name: {"active": limit.active, "limit": limit.limit, "idle": len(gw.proxy.idle)
                                       if name == "proxy" else None, "shed": limit.shed,
                                       "idle_closed": limit.evicted}
                                for name, limit in gw.limits.items()},
            },
            "configuration_hash": gen.config_hash,
            "generation": gen.number,
            "snapshot_age_seconds": round(now - gen.built_at, 3),
            "database": database,
            "workers": workers,
            "session_tickets": gw.tickets.status(),
        }
        if gw.role.supervisor is not None:
            add_worker_totals(status["server"], workers)  # type: ignore[arg-type]  # the dict built above
        return status

    async def serve_connection(self, stream: trio.abc.Stream, info: ConnectionFacts) -> None:
        conn = h11.Connection(h11.SERVER)
        try:
            with trio.move_on_after(30):
                while True:
                    event = conn.next_event()
                    if event is h11.NEED_DATA:
                        conn.receive_data(await stream.receive_some(TLS_RECEIVE_SIZE))  # type: ignore[arg-type]  # h11 takes bytearray too
                        continue
                    if not isinstance(event, h11.Request):
                        return
                    # status requests carry no body worth reading; the answer closes the connection
                    path = event.target.split(b"?")[0]
                    if path == b"/metrics" and event.method in (b"GET", b"HEAD"):
                        body = self.gateway.metrics.exposition()
                        response = h11.Response(status_code=200, headers=[
                            (b"content-type", b"text/plain; version=0.0.4; charset=utf-8"),
                            (b"content-length", str(len(body)).encode()), (b"connection", b"close")])
                    elif path == b"/status" and event.method in (b"GET", b"HEAD"):
                        body = json.dumps(self.status()).encode()
                        response = h11.Response(status_code=200, headers=[
                            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")])
                    else:
                        response, body = error_response(404, "Not found", headers=[(b"connection", b"close")])
                    await stream.send_all(conn.send(response) + conn.send(h11.Data(data=body)) + conn.send(h11.EndOfMessage()))
                    return
        except (trio.BrokenResourceError, h11.ProtocolError):
            return
        finally:
            await close_stream(stream)  # TLS: close_notify first, so clients can tell an end from a truncation
