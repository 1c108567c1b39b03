"""Prometheus metrics, served on the status listener at ``/metrics``.

Everything the data plane counts has a stable, low-cardinality label set:
status class and reason code for requests, reason code for handshakes, and one
expiry gauge per certificate and role — updated whenever a generation goes live,
so expiry is visible independent of traffic.
"""

from __future__ import annotations

import glob
import os
import time
import warnings
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from trio_gw.net.limits import ConnectionLimit

if TYPE_CHECKING:
    from trio_gw.http.facts import ConnectionFacts
    from trio_gw.net.exchange import Exchange
    from trio_gw.net.generation import Generation


class Metrics:
    """The metrics of one process.

    Args:
        multiprocess_dir: with worker processes, prometheus-client's
            ``PROMETHEUS_MULTIPROC_DIR`` (set in the environment before
            prometheus-client is imported): counts go to files there, and
            :meth:`exposition` adds up every process's (:class:`WorkerCounts`).
    """

    def __init__(self, *, multiprocess_dir: str | None = None) -> None:
        self.registry = CollectorRegistry()
        self.multiprocess_dir = multiprocess_dir
        # Counts of every worker are read from their files at scrape time: not registered here too.
        counts = None if multiprocess_dir is not None else self.registry
        self.requests = Counter("trio_gw_requests", "Requests answered, by status class and reason code",
                                ["status", "reason"], registry=counts)
        self.handshake_failures = Counter("trio_gw_tls_handshake_failures",
                                          "Failed inbound TLS handshakes, by listener and reason code",
                                          ["listener", "reason"], registry=counts)
        self.handshakes = Counter("trio_gw_tls_handshakes", "Completed inbound TLS handshakes, by version",
                                  ["version"], registry=counts)
        self.expiry = Gauge("trio_gw_certificate_expiry_seconds",
                            "Seconds until each configured certificate expires (negative: expired)",
                            ["certificate", "role", "subject"], registry=self.registry)
        self.snapshot_age = Gauge("trio_gw_snapshot_created_timestamp_seconds",
                                  "When the live configuration snapshot was built", registry=self.registry)

    def record_request(self, info: ConnectionFacts, ex: Exchange) -> None:
        status = f"{ex.status // 100}xx" if ex.status else "none"
        self.requests.labels(status, ex.reason or "").inc()

    def record_handshake(self, listener: str, reason: str | None, version: str | None = None) -> None:
        if reason is None:
            self.handshakes.labels(version or "unknown").inc()
        else:
            self.handshake_failures.labels(listener, reason).inc()

    def observe_generation(self, generation: Generation) -> None:
        """Refresh the expiry gauges for every certificate of every role (from facts parsed at build)."""
        with warnings.catch_warnings():  # multiprocess mode: this process's own gauge (never read from files)
            warnings.simplefilter("ignore", UserWarning)
            self.expiry.clear()
        now = time.time()
        for facts in generation.inventory:
            self.expiry.labels(facts.label_id, facts.role.value, facts.info.subject).set(facts.info.not_after - now)
        self.snapshot_age.set(generation.built_at)

    def exposition(self) -> bytes:
        """The text format of every metric: this process's, and every worker's counts with workers."""
        if self.multiprocess_dir is None:
            return generate_latest(self.registry)
        registry = CollectorRegistry(auto_describe=False)
        registry.register(WorkerCounts(self.multiprocess_dir))
        registry.register(_Collected(self.registry))
        return generate_latest(registry)


class WorkerCounts:
    """Every process's counters and histograms, summed (prometheus-client's multiprocess files).

    Gauges whose ``multiprocess_mode`` says how processes combine (``livesum``,
    ``max`` ...) are read too; a gauge left in the default mode ``all`` is a
    fact of one process (the configuration it serves), which the process
    serving ``/metrics`` reports itself — not once per worker, and not after a
    worker stopped setting it.
    """

    def __init__(self, directory: str) -> None:
        self.directory = directory

    def collect(self) -> Iterable[Metric]:
        files = [path for path in glob.glob(os.path.join(self.directory, "*.db"))
                 if not os.path.basename(path).startswith("gauge_all_")]
        merged: Iterable[Metric] = MultiProcessCollector.merge(files, accumulate=True)  # type: ignore[no-untyped-call]
        return merged


class _Collected:
    """The collectors of a registry, as one collector of another registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def collect(self) -> Iterable[Metric]:
        return self.registry.collect()


class ConnectionLimitCollector:
    """Connections per listener group, and those shed or closed to make room (read at scrape time)."""

    def __init__(self, limits: Mapping[str, ConnectionLimit]) -> None:
        self.limits = limits

    def collect(self) -> Iterator[Metric]:
        active = GaugeMetricFamily("trio_gw_connections_active", "Client connections open, by listener group",
                                   labels=["listener"])
        limit = GaugeMetricFamily("trio_gw_connections_limit", "The connection limit of each listener group",
                                  labels=["listener"])
        shed = CounterMetricFamily("trio_gw_connections_shed", "Connections refused at the limit (503 or a close)",
                                   labels=["listener"])
        evicted = CounterMetricFamily("trio_gw_connections_idle_closed",
                                      "Idle keep-alive connections closed to admit a new one", labels=["listener"])
        for name, group in self.limits.items():
            active.add_metric([name], group.active)
            limit.add_metric([name], group.limit)
            shed.add_metric([name], group.shed)
            evicted.add_metric([name], group.evicted)
        yield from (active, limit, shed, evicted)
