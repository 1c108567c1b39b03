"""Prometheus metrics, served on the status listener at ``/metrics``: the node's one registry.

Theory of operation
-------------------
:class:`Metrics` builds the node's :class:`~prometheus_client.CollectorRegistry`
and everything registered in it — this is the one place it is built:

* Kong's series (``kong_http_requests_total``, ``kong_request_latency_ms`` ...)
  and trio-gw's TLS series (handshakes by version and cipher, failures by
  reason, held-back log lines, certificate events), all in
  :class:`~trio_gw.runtime.kong_metrics.KongMetrics`;
* ``trio_gw_certificate_expiry_seconds{certificate,role,subject,key}`` for every
  certificate of the live generation's inventory, computed at scrape time
  (:class:`~trio_gw.runtime.kong_metrics.CertificateExpiryCollector`), so expiry
  is visible independent of traffic and a removed certificate disappears;
* ``trio_gw_connections_*{listener}`` for each listener group's connection
  limit (:class:`ConnectionLimitCollector`, at scrape time);
* two series of its own: ``trio_gw_requests_total{status,reason}`` (status class
  and the stable reason code of every answer, Kong's series having no reason) and
  ``trio_gw_snapshot_created_timestamp_seconds``.

No metric name is registered twice.  The data plane hands in facts: one call per
finished request (:meth:`Metrics.record_request`, which turns the exchange into
Kong's labels, latencies and bandwidth) and per completed handshake; the
connection and datastore gauges are set just before each scrape by the
``before_scrape`` function the node gives (Kong reads nginx's counters at scrape
time too).  Every collector works with prometheus-client's multiprocess mode
(gauges declare how processes combine).

**Workers** (``multiprocess_dir``): every process of a node records into
prometheus-client's files (``PROMETHEUS_MULTIPROC_DIR``, set before the library
is imported); the values are not registered in the process's own registry too.
The process serving ``/metrics`` (the supervisor) exposes :class:`WorkerCounts`
— every process's counters and histograms summed, and the gauges that declare
how processes combine — with its own scrape-time collectors (expiry from its
inventory, its connection limits).  Each worker sets its ``before_scrape``
gauges every report interval, so ``livesum`` gauges add up the live workers.
"""

from __future__ import annotations

import glob
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from trio_gw.model.inventory import Inventory
from trio_gw.net.limits import ConnectionLimit
from trio_gw.runtime.kong_metrics import (
    CertificateExpiryCollector,
    KongMetrics,
    RequestFacts,
    kong_consumer_label,
)

if TYPE_CHECKING:
    from trio_gw.http.facts import ConnectionFacts
    from trio_gw.net.exchange import Exchange
    from trio_gw.net.generation import Generation

__all__ = ["CLIENT_CLOSED_STATUS", "ConnectionLimitCollector", "Metrics", "WorkerCounts", "request_facts"]

#: The ``code`` of a request whose client went away before an answer was sent (nginx's 499).
CLIENT_CLOSED_STATUS = 499


def _ms(start: float | None, end: float | None) -> float | None:
    return None if start is None or end is None else round((end - start) * 1000, 3)


def request_facts(ex: Exchange, now: float) -> RequestFacts:
    """One finished exchange in Kong's terms.

    ``service``/``route`` are the names the decision gave (a service's name, else
    its id; a route's name, else its id); ``source`` is ``service`` when the
    upstream's answer was relayed, ``kong`` when the gateway answered (a route's
    refusal, an upstream failure). Latencies, from the monotonic clock: ``request``
    from the head read to now; ``upstream`` from the start of the upstream exchange
    (connect and TLS included, as Kong's waiting time after the balancer) to the
    answer's head; ``kong`` the gateway's own time before the upstream exchange
    (routing, plugins), or the whole request when it answered itself. Bandwidth is
    body bytes.

    Args:
        ex: the request's access-log record.
        now: ``time.monotonic()`` at its end.

    Returns:
        The facts.
    """
    forwarded = ex.upstream is not None and ex.reason is None and ex.upstream_answered is not None
    request_ms = _ms(ex.started, now)
    consumer = ex.consumer
    return RequestFacts(
        service=ex.service,
        route=ex.route or "",
        status=ex.status or CLIENT_CLOSED_STATUS,
        source="service" if forwarded else "kong",
        consumer=kong_consumer_label(consumer.username, consumer.custom_id) if consumer is not None else "",
        request_ms=request_ms,
        upstream_ms=_ms(ex.upstream_started, ex.upstream_answered),
        kong_ms=_ms(ex.started, ex.upstream_started) if ex.upstream_started is not None else request_ms,
        bytes_in=ex.bytes_in,
        bytes_out=ex.bytes_out,
    )


class Metrics:
    """The node's registry and every collector in it (see the module docstring)."""

    def __init__(
        self,
        *,
        node_id: str,
        inventory: Callable[[], Inventory] = Inventory,
        limits: Mapping[str, ConnectionLimit] | None = None,
        before_scrape: Callable[[Metrics], None] | None = None,
        multiprocess_dir: str | None = None,
    ) -> None:
        """Build the registry.

        Args:
            node_id: Kong's ``node_id`` label.
            inventory: gives the live generation's inventory (the expiry gauges, at scrape time).
            limits: the connection limit of each listener group, read at scrape time (filled as listeners bind).
            before_scrape: sets the gauges read at scrape time (connections, datastore).
            multiprocess_dir: with worker processes, prometheus-client's multiprocess directory
                (see the module docstring).
        """
        self.registry = CollectorRegistry()
        self.multiprocess_dir = multiprocess_dir
        # With workers, values go to the multiprocess files and are read back from there, not from here too.
        values = None if multiprocess_dir is not None else self.registry
        self.kong = KongMetrics(values, node_id=node_id)
        self.registry.register(CertificateExpiryCollector(inventory))
        self.registry.register(ConnectionLimitCollector(limits if limits is not None else {}))
        self.requests = Counter("trio_gw_requests", "Requests answered, by status class and reason code",
                                ["status", "reason"], registry=values)
        self.snapshot_age = Gauge("trio_gw_snapshot_created_timestamp_seconds",
                                  "When the live configuration snapshot was built", registry=values,
                                  multiprocess_mode="livemax")
        self._requests: dict[tuple[int, str], Counter] = {}  # labelled children, looked up once
        self._pending_requests: dict[tuple[int, str], int] = {}  # counted since the last flush
        self.before_scrape = before_scrape
        #: Requests finished since start (Kong's ``kong_nginx_requests_total``).
        self.requests_served = 0

    def record_request(self, info: ConnectionFacts, ex: Exchange) -> None:
        """Count one finished request (called once per request, after its access-log line).

        Counted in plain Python; the collectors get the counts at :meth:`flush`.
        """
        self.requests_served += 1
        key = (ex.status // 100, ex.reason or "")
        self._pending_requests[key] = self._pending_requests.get(key, 0) + 1
        self.kong.count(request_facts(ex, time.monotonic()))

    def flush(self) -> None:
        """Add the requests counted since the last flush to the collectors.

        Called before every scrape (:meth:`exposition`), and by a worker every report
        interval (its counts go to the multiprocess files its supervisor reads).
        """
        pending, self._pending_requests = self._pending_requests, {}
        for key, n in pending.items():
            child = self._requests.get(key)
            if child is None:
                child = self._requests[key] = self.requests.labels(f"{key[0]}xx" if key[0] else "none", key[1])
            child.inc(n)
        self.kong.flush()

    def record_handshake(self, listener: str, version: str | None, cipher: str | None) -> None:
        """Count one completed inbound handshake."""
        self.kong.record_handshake(listener, version or "unknown", cipher or "unknown")

    def observe_generation(self, generation: Generation) -> None:
        """Note a generation going live (the expiry gauges follow it by themselves)."""
        self.snapshot_age.set(generation.built_at)

    def exposition(self) -> bytes:
        """The text exposition of the registry, the scrape-time gauges set first (with workers: of every worker)."""
        self.flush()
        if self.before_scrape is not None:
            self.before_scrape(self)
        if self.multiprocess_dir is None:
            return generate_latest(self.registry)
        registry = CollectorRegistry(auto_describe=False)
        registry.register(WorkerCounts(self.multiprocess_dir))
        registry.register(_Collected(self.registry))
        return generate_latest(registry)


class WorkerCounts:
    """Every process's counters and histograms, summed (prometheus-client's multiprocess files).

    Gauges whose ``multiprocess_mode`` says how processes combine (``livesum``,
    ``livemax`` ...) are read too; a gauge left in the default mode ``all`` is a
    fact of one process, which the process serving ``/metrics`` reports itself,
    not once per worker.
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
