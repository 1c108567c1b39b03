"""Changes everywhere within 100 ms: 50 writes on node A, each timed until every worker of node B serves it.

Node A and node B share a private PostgreSQL; each runs two workers.  The
fallback poll is set to 30 s, so only the change feed (``LISTEN``/``NOTIFY``)
can deliver a change in time.  For each write the clock starts before the
Admin API request is sent on A (its commit included) and stops at the moment
each worker of B installed the generation of that version (the worker's own
``installed_at``, reported to B's supervisor): from then on, every request that
worker reads is served with the change.  The figures are printed; the test
fails only above 1 s (the issue's bound; the target is p99 < 100 ms).  The
same is measured between the workers of one SQLite node (``data_version``).
"""

from __future__ import annotations

import statistics
import time
import uuid
from pathlib import Path
from typing import Any

from trio_gw.testing.postgres import PostgresServer

from .cluster_tools import call, status, upstream, wait_for
from .processes import Node, nodes  # noqa: F401  (fixture)

CHANGES = 50
BOUND = 1.0


def _percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def _measure(writer: Node, reader: Node, url: str, label: str) -> list[float]:
    code, _ = call(writer.admin_port, "POST", "/services", {"name": "echo", "url": url})
    assert code == 201
    delays: list[float] = []
    writes: list[float] = []
    for i in range(CHANGES):
        sent = time.time()
        code, body = call(writer.admin_port, "POST", "/services/echo/routes", {"name": f"r{i}", "paths": [f"/r{i}"]})
        assert code == 201, body
        writes.append(time.time() - sent)
        version = status(writer)["database"]["version"]

        def arrived() -> list[dict[str, Any]] | None:
            listed = status(reader)["workers"]["list"]
            done = all((w.get("store_version") or -1) >= version for w in listed)
            return listed if done else None

        for worker in wait_for(arrived, f"change {i} on every worker of the other node", timeout=10):
            delays.append(worker["installed_at"] - sent)
        assert call(reader.proxy_port, "GET", f"/r{i}/x")[0] == 200
    p50, p99 = _percentile(delays, 50), _percentile(delays, 99)
    print(f"\n{label}: {CHANGES} changes x {len(delays) // CHANGES} workers: write to served "
          f"p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, max {max(delays) * 1000:.1f} ms, "
          f"mean {statistics.mean(delays) * 1000:.1f} ms (the Admin write itself, answered after its commit: "
          f"p50 {_percentile(writes, 50) * 1000:.1f} ms)")
    return delays


def test_50_changes_on_node_a_reach_every_worker_of_node_b(
    tmp_path: Path, nodes: list[Node], private_postgres: PostgresServer
) -> None:
    settings = {"database": "postgres", "pg_host": private_postgres.host, "pg_port": private_postgres.port,
                "pg_user": private_postgres.user, "pg_database": private_postgres.database,
                "pg_schema": f"prop_{uuid.uuid4().hex[:10]}", "workers": 2,
                "db_update_frequency": "30s"}  # the fallback poll is too slow to matter: only NOTIFY counts
    a = Node(tmp_path / "a", settings)
    nodes.append(a)
    b = Node(tmp_path / "b", settings)
    nodes.append(b)
    with upstream() as url:
        delays = _measure(a, b, url, "PostgreSQL, node A to the 2 workers of node B")
    assert _percentile(delays, 99) < BOUND


def test_a_write_reaches_every_worker_of_a_sqlite_node(tmp_path: Path, nodes: list[Node]) -> None:
    node = Node(tmp_path / "n", {"database": "sqlite", "workers": 2, "db_update_frequency": "30s"})
    nodes.append(node)
    with upstream() as url:
        delays = _measure(node, node, url, "SQLite, the supervisor's write to its 2 workers")
    assert _percentile(delays, 99) < BOUND
