"""The Kong collectors in prometheus-client's multiprocess mode: two worker processes record, a third
aggregates their files the way a node's /metrics handler will (workers = N)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from trio_gw._version import __version__

WORKER = textwrap.dedent("""
    from trio_gw.runtime.kong_metrics import ConnectionCounts, KongMetrics, RequestFacts
    metrics = KongMetrics(None, node_id="node-1")
    metrics.record_request(RequestFacts("orders", "orders-api", 200, "service", "alice", request_ms=30,
                                        upstream_ms=20, kong_ms=3, bytes_in=100, bytes_out=1000))
    metrics.observe_connections(ConnectionCounts(accepted=10, handled=10, active=2, reading=0, writing=1,
                                                 waiting=1, requests=50))
    metrics.observe_datastore(True)
    metrics.record_handshake_failure("proxy", "unknown_ca")
    import os
    print(os.getpid())
""")
SCRAPE = textwrap.dedent("""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector
    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    print(generate_latest(registry).decode())
""")


def _run(code: str, directory: Path) -> str:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_two_workers_are_summed_as_kong_counts_them(tmp_path: Path) -> None:
    first = int(_run(WORKER, tmp_path))
    _run(WORKER, tmp_path)
    text = _run(SCRAPE, tmp_path)
    lines = set(text.splitlines())
    assert ('kong_http_requests_total{code="200",consumer="alice",route="orders-api",service="orders",'
            'source="service"} 2.0') in lines
    assert 'kong_bandwidth_bytes{consumer="alice",direction="egress",route="orders-api",service="orders"} 2000.0' \
        in lines
    assert 'kong_request_latency_ms_count{route="orders-api",service="orders"} 2.0' in lines
    assert 'trio_gw_tls_handshake_failures_total{listener="proxy",reason="unknown_ca"} 2.0' in lines
    live = 'kong_nginx_connections_total{node_id="node-1",state="active",subsystem="http"} '
    assert live + "4.0" in lines  # both workers' connections
    assert 'kong_node_info{node_id="node-1",version="%s"} 1.0' % __version__ in lines  # one series, not two
    assert "kong_datastore_reachable 1.0" in lines
    # a worker that died (the supervisor marks it) leaves the live gauges; its counts stay in the totals
    _run(f"from prometheus_client.multiprocess import mark_process_dead; mark_process_dead({first})", tmp_path)
    after = set(_run(SCRAPE, tmp_path).splitlines())
    assert live + "2.0" in after
    assert 'kong_bandwidth_bytes{consumer="alice",direction="egress",route="orders-api",service="orders"} 2000.0' \
        in after
