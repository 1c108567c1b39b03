"""Metrics of the node as a member of its cluster: the datastore, the workers, the session-ticket keys.

Read at scrape time by the process serving ``/metrics`` (the supervisor, with
workers), from the facts it already keeps — nothing per request:

==========================================  =======  =========================================================
series                                      type     meaning
==========================================  =======  =========================================================
``trio_gw_datastore_reachable``             gauge    1 when the datastore answered its last check (Kong's
                                                     ``kong_datastore_reachable``), 0 while the node is stale
``trio_gw_datastore_stale_seconds``         gauge    how long the node has served without its datastore (0: not)
``trio_gw_datastore_feed_reconnects``       counter  times the change feed listened again after losing it
``trio_gw_workers``                         gauge    worker processes by ``state`` (ready, starting, restarting)
``trio_gw_worker_restarts``                 counter  restarts of each worker slot (``worker``)
``trio_gw_worker_connections``              gauge    open client connections of each worker (``worker``)
``trio_gw_session_ticket_keys``             gauge    keys of the shared ring by ``role`` (encrypts, decrypts, pending)
``trio_gw_session_ticket_rotations``        counter  ring changes this process has taken in since it started
==========================================  =======  =========================================================

Counts of requests and handshakes are the workers' own counters, added up by
prometheus-client's multiprocess mode (``runtime/metrics.py``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from trio_gw.runtime.node_status import workers_status

if TYPE_CHECKING:
    from trio_gw.runtime.gateway import Gateway

__all__ = ["ClusterCollector"]


class ClusterCollector:
    """Collects the table above from one gateway (see the module)."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    def collect(self) -> Iterator[Metric]:
        gw = self.gateway
        now = time.time()
        if gw.settings.database != "off":
            health = gw.datastore
            yield _gauge("trio_gw_datastore_reachable", "1 when the datastore answered its last check, else 0",
                         1 if health.reachable else 0)
            yield _gauge("trio_gw_datastore_stale_seconds", "Seconds the node has served without its datastore "
                         "(its last configuration, or the cached one); 0 when it is reachable",
                         0.0 if health.reachable else max(0.0, now - health.since))
            reconnects = CounterMetricFamily("trio_gw_datastore_feed_reconnects",
                                             "Times the change feed listened again after losing the datastore")
            reconnects.add_metric([], gw.feed.reconnects)
            yield reconnects
        if gw.holder.ready:
            yield from _workers(gw, now)
        keys = GaugeMetricFamily("trio_gw_session_ticket_keys", "Keys of the shared session-ticket ring by role",
                                 labels=["role"])
        for role, count in gw.tickets.role_counts().items():
            keys.add_metric([role], count)
        yield keys
        rotations = CounterMetricFamily("trio_gw_session_ticket_rotations",
                                        "Session-ticket ring changes taken in by this process")
        rotations.add_metric([], gw.tickets.rotations)
        yield rotations


def _workers(gw: Gateway, now: float) -> Iterator[Metric]:
    summary = workers_status(gw, now)
    states = {"ready": 0, "starting": 0, "restarting": 0}
    restarts = CounterMetricFamily("trio_gw_worker_restarts", "Restarts of each worker slot", labels=["worker"])
    connections = GaugeMetricFamily("trio_gw_worker_connections", "Open client connections of each worker",
                                    labels=["worker"])
    for worker in summary["list"]:
        states[worker["state"]] = states.get(worker["state"], 0) + 1
        restarts.add_metric([str(worker["index"])], worker["restarts"])
        connections.add_metric([str(worker["index"])], worker.get("connections", 0))
    by_state = GaugeMetricFamily("trio_gw_workers", "Worker processes by state", labels=["state"])
    for state, count in states.items():
        by_state.add_metric([state], count)
    yield from (by_state, restarts, connections)


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation)
    family.add_metric([], value)
    return family
