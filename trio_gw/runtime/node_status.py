"""What ``/status`` says about the datastore, the worker processes and the session-ticket keys.

* ``database``: the kind, ``state`` (``ok`` or ``stale``), for how long it has
  been stale (``stale_seconds``: since the outage began, or — for a node that
  started from its cache — since that configuration was cached), the last
  error, the change feed (listening, events, reconnects), and whether the
  configuration served is the cached one.
* ``workers``: every worker of the node — pid, the generation it serves and
  its configuration hash, its connections, how often its slot was restarted
  (``model/workers.py``).  A single-process node lists itself.
* ``session_tickets``: where the keys come from, whether they are shared
  across processes, the ring's key names and roles (never key bytes).
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

from trio_gw.model.workers import SlotState, WorkerState, workers_summary

if TYPE_CHECKING:
    from trio_gw.runtime.gateway import Gateway

__all__ = ["add_worker_totals", "datastore_status", "own_state", "workers_status"]


def datastore_status(gw: Gateway, now: float) -> dict[str, Any]:
    """The ``database`` object of ``/status``."""
    database: dict[str, Any] = {"kind": gw.settings.database, "reachable": None, "version": None}
    if gw.settings.database == "off":
        return database
    health = gw.datastore
    database = {"kind": gw.settings.database, "reachable": health.reachable,
                "version": gw.generation.store_version if gw.holder.ready else None,
                "state": "ok" if health.reachable else "stale", "feed": gw.feed.describe()}
    if not health.reachable:
        database["stale_seconds"] = round(now - health.since, 3)
        database["error"] = health.error
    cached = gw.last_good.started_from
    database["serving_cache"] = gw.store is None and cached is not None
    if cached is not None and gw.store is None:
        database["cache_written_at"] = cached.written_at
    if gw.last_good.written_at is not None:
        database["cache_written_at"] = gw.last_good.written_at
    return database


def own_state(gw: Gateway, now: float | None = None) -> WorkerState:
    """This process's facts as a worker reports them."""
    gen = gw.holder.current if gw.holder.ready else None
    limit = gw.limits.get("proxy")
    return WorkerState(
        index=gw.role.index or 0, pid=os.getpid(),
        generation=gen.number if gen else None, configuration_hash=gen.config_hash if gen else None,
        store_version=gen.store_version if gen else None, installed_at=gw.installed_at or None,
        connections=limit.active if limit is not None else 0,
        requests_in_flight=gw.proxy.in_flight,
        datastore=None if gw.settings.database == "off" else "ok" if gw.datastore.reachable else "stale",
        reported_at=time.time() if now is None else now,
        extra={"proxy_limit": {"active": limit.active, "limit": limit.limit, "idle": len(gw.proxy.idle),
                               "shed": limit.shed, "idle_closed": limit.evicted},
               "connections_accepted": limit.admitted} if limit is not None else {},
    )  # fmt: skip


def add_worker_totals(server: dict[str, Any], workers: dict[str, Any]) -> None:
    """In the supervisor's ``/status``, the proxy's figures are its workers' (the supervisor proxies nothing)."""
    listed = [w for w in workers["list"] if w["state"] == "ready"]
    server["connections_in_flight"] = workers["requests_in_flight"]
    totals = {"active": 0, "limit": 0, "idle": 0, "shed": 0, "idle_closed": 0}
    for worker in listed:
        for key, value in worker.get("proxy_limit", {}).items():
            if key in totals and isinstance(value, int):
                totals[key] += value
    server.setdefault("connections", {})["proxy"] = totals


def workers_status(gw: Gateway, now: float) -> dict[str, Any]:
    """The ``workers`` object of ``/status``: the supervisor's, or this single process as worker 0."""
    if gw.role.supervisor is not None:
        return gw.role.supervisor.workers_status()
    state = own_state(gw, now)
    slot = SlotState(0, pid=state.pid, started_at=gw.started_at)
    return workers_summary([slot], {0: state}, now)
