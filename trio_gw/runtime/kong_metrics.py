"""Prometheus metrics under Kong's names, next to trio-gw's TLS and certificate metrics.

Theory of operation
-------------------
Existing Kong dashboards (Grafana 7424 "Kong (official)") and alerts query the
Prometheus plugin's series; trio-gw exposes the same names, labels and buckets
(Kong 3.x ``kong/plugins/prometheus/exporter.lua``) wherever it has the fact:

===============================================  =========  ================================================
series                                           type       labels
===============================================  =========  ================================================
``kong_http_requests_total``                     counter    service, route, code, source, consumer
``kong_kong_latency_ms``                         histogram  service, route (:data:`KONG_LATENCY_BUCKETS`)
``kong_upstream_latency_ms``                     histogram  service, route (:data:`UPSTREAM_LATENCY_BUCKETS`)
``kong_request_latency_ms``                      histogram  service, route (:data:`UPSTREAM_LATENCY_BUCKETS`)
``kong_bandwidth_bytes``                         counter¹   service, route, direction, consumer
``kong_nginx_connections_total``                 gauge      node_id, subsystem, state
``kong_nginx_requests_total``                    gauge      node_id, subsystem
``kong_datastore_reachable``                     gauge      —
``kong_node_info``                               gauge      node_id, version
``trio_gw_tls_handshakes_total``                 counter    listener, version, cipher
``trio_gw_tls_handshake_failures_total``         counter    listener, reason
``trio_gw_log_lines_suppressed_total``           counter    reason
``trio_gw_certificate_events_total``             counter    event, role
``trio_gw_event_webhook_deliveries_total``       counter    event, outcome
``trio_gw_certificate_expiry_seconds``           gauge      certificate, role, subject, key
``trio_gw_certificate_expiry_timestamp_seconds`` gauge      certificate, role, subject, key
===============================================  =========  ================================================

¹ Kong's ``kong_bandwidth_bytes`` is a counter *without* ``_total``;
prometheus-client appends ``_total`` to every counter, so it is a gauge that
only ever grows (``inc``), summed across processes: the series name is Kong's
and ``rate()`` works as on Kong.

Label values follow Kong: ``service`` is the service's name, else its host;
``route`` the route's name, else its id; ``consumer`` the username, else the
custom id, else ``""``; ``source`` is ``service`` when the upstream answered
and ``kong`` when the gateway did; ``code`` is the status sent.  Like Kong, a
request without a service is not counted in the ``kong_*`` series.

Workers: every counter and histogram works with prometheus-client's
multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``), and every gauge declares how
processes combine (``multiprocess_mode``).  The certificate gauges are not
stored per process at all: :class:`CertificateExpiryCollector` computes them at
scrape time from the live inventory, so they are always current and a removed
certificate disappears; register it in the process that serves ``/metrics``.

Nothing here does IO or reads a clock on its own: the data plane hands in
facts (:class:`RequestFacts`, :class:`ConnectionCounts`), the collector gets a
clock function.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from trio_gw._version import __version__
from trio_gw.model.inventory import Inventory

__all__ = [
    "CONNECTION_STATES",
    "KONG_LATENCY_BUCKETS",
    "UPSTREAM_LATENCY_BUCKETS",
    "CertificateExpiryCollector",
    "ConnectionCounts",
    "KongMetrics",
    "RequestFacts",
    "kong_consumer_label",
    "kong_route_label",
    "kong_service_label",
]

#: Kong's ``KONG_LATENCY_BUCKETS`` (ms).
KONG_LATENCY_BUCKETS: Final = (1, 2, 5, 7, 10, 15, 20, 30, 50, 75, 100, 200, 500, 750, 1000)
#: Kong's ``UPSTREAM_LATENCY_BUCKETS`` (ms), also used for the total request latency.
UPSTREAM_LATENCY_BUCKETS: Final = (25, 50, 80, 100, 250, 400, 700, 1000, 2000, 5000, 10000, 30000, 60000)
#: The ``state`` values of ``kong_nginx_connections_total`` (nginx's stub_status words, as Kong sets them).
CONNECTION_STATES: Final = ("accepted", "active", "handled", "reading", "total", "waiting", "writing")
#: trio-gw serves HTTP only: Kong's ``subsystem`` label is always ``http``.
SUBSYSTEM: Final = "http"


def kong_service_label(name: str | None, host: str) -> str:
    """Kong's ``service`` label: the service's name, else its host."""
    return name or host


def kong_route_label(name: str | None, route_id: str) -> str:
    """Kong's ``route`` label: the route's name, else its id."""
    return name or route_id


def kong_consumer_label(username: str | None, custom_id: str | None) -> str:
    """Kong's ``consumer`` label: the username, else the custom id (Kong 3.12), else ``""``."""
    return username or custom_id or ""


@dataclass(frozen=True)
class RequestFacts:
    """One finished request as the Kong series count it (labels already in Kong's form)."""

    service: str | None
    route: str
    status: int
    #: ``service`` when the upstream's answer was relayed, ``kong`` when the gateway answered itself.
    source: str
    consumer: str = ""
    #: Kong's ``latencies.request``: first byte read to last byte sent (ms).
    request_ms: float | None = None
    #: Kong's ``latencies.proxy``: upstream connect to the upstream's answer head (ms).
    upstream_ms: float | None = None
    #: Kong's ``latencies.kong``: the gateway's own time (routing, plugins, TLS to the upstream) (ms).
    kong_ms: float | None = None
    bytes_in: int = 0
    bytes_out: int = 0


#: The finite bucket bounds of the three latency histograms, in :class:`_Tally` order (request, upstream, kong).
_BOUNDS: Final = (UPSTREAM_LATENCY_BUCKETS, UPSTREAM_LATENCY_BUCKETS, KONG_LATENCY_BUCKETS)


class _Tally:
    """One request kind's counts between two flushes: requests, bytes, and per latency histogram the
    observations per bucket (prometheus-client's own non-cumulative layout, ``+Inf`` last) and their sum."""

    __slots__ = ("count", "bytes_in", "bytes_out", "buckets", "sums", "observed")

    def __init__(self) -> None:
        self.count = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.buckets = [[0] * (len(bounds) + 1) for bounds in _BOUNDS]
        self.sums = [0.0, 0.0, 0.0]
        self.observed = [False, False, False]


def _add_observations(child: Any, counts: list[int], total: float) -> None:
    """What ``counts`` observations (per bucket) summing to ``total`` would have done to a histogram child.

    ``Histogram.observe`` adds the value to ``_sum`` and 1 to the first bucket whose
    upper bound holds it (``_buckets`` is not cumulative; the exposition sums it up).
    These are prometheus-client's internals (pinned in the lock); the unit tests compare
    the exposition with ``observe`` called value by value.
    """
    if len(child._buckets) != len(counts):  # pragma: no cover - a prometheus-client whose layout changed
        raise RuntimeError("prometheus-client's histogram layout changed: update _add_observations")
    child._sum.inc(total)
    for bucket, n in zip(child._buckets, counts):
        if n:
            bucket.inc(n)


@dataclass(frozen=True)
class ConnectionCounts:
    """The node's client connections, nginx style (what Kong reads from ``ngx.var.connections_*``)."""

    accepted: int
    handled: int
    active: int
    reading: int
    writing: int
    waiting: int
    #: Requests served since start (Kong puts it in both ``state="total"`` and ``kong_nginx_requests_total``).
    requests: int


class KongMetrics:
    """Every collector of the module table but the certificate gauges (:class:`CertificateExpiryCollector`)."""

    def __init__(self, registry: CollectorRegistry | None, *, node_id: str, version: str = __version__) -> None:
        """Create the collectors.

        Args:
            registry: where to register them; ``None`` in multiprocess mode (the
                ``/metrics`` handler then reads every process's files with a
                ``MultiProcessCollector``).
            node_id: Kong's ``node_id`` label (stable for the node).
            version: Kong's ``kong_node_info`` version label.
        """
        self.node_id = node_id
        self.http_requests = Counter("kong_http_requests", "HTTP status codes per consumer/service/route in Kong",
                                     ["service", "route", "code", "source", "consumer"], registry=registry)
        self.kong_latency = Histogram("kong_kong_latency_ms", "Latency added by Kong and enabled plugins for each "
                                      "service/route in Kong", ["service", "route"], buckets=KONG_LATENCY_BUCKETS,
                                      registry=registry)
        self.upstream_latency = Histogram("kong_upstream_latency_ms", "Latency added by upstream response for each "
                                          "service/route in Kong", ["service", "route"],
                                          buckets=UPSTREAM_LATENCY_BUCKETS, registry=registry)
        self.request_latency = Histogram("kong_request_latency_ms", "Total latency incurred during requests for "
                                         "each service/route in Kong", ["service", "route"],
                                         buckets=UPSTREAM_LATENCY_BUCKETS, registry=registry)
        self.bandwidth = Gauge("kong_bandwidth_bytes", "Total bandwidth (ingress/egress) throughput in bytes",
                               ["service", "route", "direction", "consumer"], registry=registry,
                               multiprocess_mode="sum")
        self.connections = Gauge("kong_nginx_connections_total", "Number of connections by subsystem",
                                 ["node_id", "subsystem", "state"], registry=registry, multiprocess_mode="livesum")
        self.nginx_requests = Gauge("kong_nginx_requests_total", "Number of requests total",
                                    ["node_id", "subsystem"], registry=registry, multiprocess_mode="livesum")
        self.datastore_reachable = Gauge("kong_datastore_reachable", "Datastore reachable from Kong, 0 is unreachable",
                                         registry=registry, multiprocess_mode="livemostrecent")
        self.node_info = Gauge("kong_node_info", "Kong Node metadata information", ["node_id", "version"],
                               registry=registry, multiprocess_mode="livemax")
        self.node_info.labels(node_id, version).set(1)
        self.handshakes = Counter("trio_gw_tls_handshakes", "Completed inbound TLS handshakes by version and cipher",
                                  ["listener", "version", "cipher"], registry=registry)
        self.handshake_failures = Counter("trio_gw_tls_handshake_failures", "Failed inbound TLS handshakes by "
                                          "reason code", ["listener", "reason"], registry=registry)
        self.suppressed_log_lines = Counter("trio_gw_log_lines_suppressed", "Rejection log lines held back by the "
                                            "rate limit (rejection_log_interval), by reason", ["reason"],
                                            registry=registry)
        self.certificate_events = Counter("trio_gw_certificate_events", "CertificateExpiringSoon and "
                                          "CertificateExpired events fired, by role", ["event", "role"],
                                          registry=registry)
        self.webhook_deliveries = Counter("trio_gw_event_webhook_deliveries", "Event webhook deliveries by outcome "
                                          "(delivered, failed, dropped)", ["event", "outcome"], registry=registry)
        #: The labelled series of each (service, route, status, source, consumer) seen, as prometheus-client
        #: keeps them (bounded by the same label values).
        self._series: dict[tuple[str, str, int, str, str], list[Any]] = {}
        self._handshake_children: dict[tuple[str, str, str], Any] = {}
        #: Requests counted since the last :meth:`flush`.
        self._pending: dict[tuple[str, str, int, str, str], _Tally] = {}

    def record_request(self, facts: RequestFacts) -> None:
        """Count one finished request in Kong's series now (:meth:`count` then :meth:`flush`)."""
        self.count(facts)
        self.flush()

    def count(self, facts: RequestFacts) -> None:
        """Count one finished request in Kong's series (not when it reached no service, as Kong).

        The count is kept in plain Python until :meth:`flush`: prometheus-client takes a lock
        per ``inc`` and walks the buckets per ``observe`` — seven calls, about 7 µs, per
        request — and in multiprocess mode each is a write to a memory-mapped file.
        """
        if facts.service is None:
            return
        key = (facts.service, facts.route, facts.status, facts.source, facts.consumer)
        tally = self._pending.get(key)
        if tally is None:
            tally = self._pending[key] = _Tally()
        tally.count += 1
        tally.bytes_in += facts.bytes_in
        tally.bytes_out += facts.bytes_out
        for i, value in enumerate((facts.request_ms, facts.upstream_ms, facts.kong_ms)):
            if value is not None and value >= 0:
                tally.buckets[i][bisect_left(_BOUNDS[i], value)] += 1
                tally.sums[i] += value
                tally.observed[i] = True

    def flush(self) -> None:
        """Add what :meth:`count` kept to the collectors (before a scrape, and every second in a worker).

        A series appears with its first value, as on Kong (a route whose requests never reached the
        upstream has no ``kong_upstream_latency_ms``); each labelled child is looked up once.
        """
        pending, self._pending = self._pending, {}
        for key, tally in pending.items():
            series = self._series.get(key)
            if series is None:
                series = self._series[key] = [None] * 6
            self._child(series, 0, key).inc(tally.count)
            for slot, amount in ((1, tally.bytes_in), (2, tally.bytes_out)):
                if amount > 0:
                    self._child(series, slot, key).inc(amount)
            for i in range(3):
                if tally.observed[i]:
                    _add_observations(self._child(series, 3 + i, key), tally.buckets[i], tally.sums[i])

    def _child(self, series: list[Any], slot: int, key: tuple[str, str, int, str, str]) -> Any:
        """Slot ``slot`` of one request kind's children (requests, ingress, egress, three latencies)."""
        child = series[slot]
        if child is None:
            service, route, status, source, consumer = key
            if slot == 0:
                child = self.http_requests.labels(service, route, str(status), source, consumer)
            elif slot in (1, 2):
                child = self.bandwidth.labels(service, route, "ingress" if slot == 1 else "egress", consumer)
            else:
                histogram = (self.request_latency, self.upstream_latency, self.kong_latency)[slot - 3]
                child = histogram.labels(service, route)
            series[slot] = child
        return child

    def observe_connections(self, counts: ConnectionCounts) -> None:
        """Set Kong's connection gauges (call it when ``/metrics`` is scraped, as Kong does)."""
        for state in CONNECTION_STATES:
            value = counts.requests if state == "total" else getattr(counts, state)
            self.connections.labels(self.node_id, SUBSYSTEM, state).set(value)
        self.nginx_requests.labels(self.node_id, SUBSYSTEM).set(counts.requests)

    def observe_datastore(self, reachable: bool) -> None:
        """``kong_datastore_reachable``: 1 when the datastore answered its last check, else 0."""
        self.datastore_reachable.set(1 if reachable else 0)

    def record_handshake(self, listener: str, version: str, cipher: str) -> None:
        """One completed inbound handshake."""
        key = (listener, version, cipher)
        child = self._handshake_children.get(key)
        if child is None:  # labels() costs a lock and a tuple build: once per (listener, version, cipher)
            child = self._handshake_children[key] = self.handshakes.labels(listener, version, cipher)
        child.inc()

    def record_handshake_failure(self, listener: str, reason: str) -> None:
        """One failed inbound handshake, by its reason code (``tls.handshake_errors``)."""
        self.handshake_failures.labels(listener, reason).inc()


class CertificateExpiryCollector(Collector):
    """The expiry of every certificate of the live inventory, computed at scrape time.

    ``trio_gw_certificate_expiry_seconds`` is ``not_after - now`` (negative
    once expired); ``trio_gw_certificate_expiry_timestamp_seconds`` is
    ``not_after`` itself (alert with ``- time()``).  ``certificate`` is the
    entity id or the setting key, ``key`` the inventory key (unique: an
    entity's ``cert_alt`` shares its id and role).
    """

    def __init__(self, current: Callable[[], Inventory], clock: Callable[[], float] = time.time) -> None:
        """Args:
            current: gives the inventory of the live generation.
            clock: Unix time now.
        """
        self._current = current
        self._clock = clock

    def collect(self) -> Iterable[Metric]:
        """Yield both gauges for every fact of the current inventory."""
        labels = ["certificate", "role", "subject", "key"]
        left = GaugeMetricFamily("trio_gw_certificate_expiry_seconds",
                                 "Seconds until each certificate the node depends on expires (negative: expired), "
                                 "by role", labels=labels)
        at = GaugeMetricFamily("trio_gw_certificate_expiry_timestamp_seconds",
                               "When each certificate the node depends on expires (Unix time), by role",
                               labels=labels)
        now = self._clock()
        for facts in self._current():
            values = [facts.label_id, facts.role.value, facts.info.subject, facts.key]
            left.add_metric(values, facts.info.not_after - now)
            at.add_metric(values, facts.info.not_after)
        yield left
        yield at
