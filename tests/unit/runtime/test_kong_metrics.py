"""Kong's metric names, labels and buckets in the exposition text, and the certificate gauges at scrape time."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest

from trio_gw.model.inventory import Inventory
from trio_gw.runtime.kong_metrics import (
    KONG_LATENCY_BUCKETS,
    UPSTREAM_LATENCY_BUCKETS,
    CertificateExpiryCollector,
    ConnectionCounts,
    KongMetrics,
    RequestFacts,
    kong_consumer_label,
    kong_route_label,
    kong_service_label,
)
from trio_gw.testing.inventory import EXPIRES_IN_DAYS, sample_view

NODE = "849373c5-45c1-4c1d-b595-fdeaea6daed8"


def _metrics() -> tuple[KongMetrics, CollectorRegistry]:
    registry = CollectorRegistry()
    return KongMetrics(registry, node_id=NODE, version="0.1.0"), registry


def _text(registry: CollectorRegistry) -> str:
    return generate_latest(registry).decode()


def _sample(text: str, name: str, **labels: str) -> float | None:
    """The value of the series ``name{labels}`` (labels in any order), or None."""
    for line in text.splitlines():
        match = re.fullmatch(rf"{re.escape(name)}(?:\{{(.*)\}})? (\S+)", line)
        if match and dict(re.findall(r'(\w+)="([^"]*)"', match.group(1) or "")) == labels:
            return float(match.group(2))
    return None


def test_a_request_is_counted_in_kongs_series_with_kongs_labels() -> None:
    metrics, registry = _metrics()
    metrics.record_request(RequestFacts("orders", "orders-api", 200, "service", "alice", request_ms=6,
                                        upstream_ms=2, kong_ms=4, bytes_in=93, bytes_out=264))
    metrics.record_request(RequestFacts("orders", "orders-api", 401, "kong", "", request_ms=1, kong_ms=1,
                                        bytes_in=80, bytes_out=40))
    text = _text(registry)
    assert "# TYPE kong_http_requests_total counter" in text
    assert ('kong_http_requests_total{code="200",consumer="alice",route="orders-api",service="orders",'
            'source="service"} 1.0') in _sorted_labels(text)
    assert _sample(text, "kong_http_requests_total", service="orders", route="orders-api", code="401",
                   source="kong", consumer="") == 1
    assert _sample(text, "kong_bandwidth_bytes", service="orders", route="orders-api", direction="egress",
                   consumer="alice") == 264  # Kong's name, without _total
    assert "kong_bandwidth_bytes_total" not in text
    assert _sample(text, "kong_kong_latency_ms_bucket", service="orders", route="orders-api", le="5.0") == 2
    assert _sample(text, "kong_upstream_latency_ms_count", service="orders", route="orders-api") == 1
    assert _sample(text, "kong_request_latency_ms_sum", service="orders", route="orders-api") == 7


def test_buckets_are_kongs() -> None:
    metrics, registry = _metrics()
    metrics.record_request(RequestFacts("s", "r", 200, "service", request_ms=1, upstream_ms=1, kong_ms=1))
    text = _text(registry)
    for name, buckets in (("kong_kong_latency_ms", KONG_LATENCY_BUCKETS),
                          ("kong_upstream_latency_ms", UPSTREAM_LATENCY_BUCKETS),
                          ("kong_request_latency_ms", UPSTREAM_LATENCY_BUCKETS)):
        found = re.findall(rf'{name}_bucket\{{[^}}]*le="([^"]+)"', text)
        assert found == [f"{float(b)}" for b in buckets] + ["+Inf"]
    assert KONG_LATENCY_BUCKETS == (1, 2, 5, 7, 10, 15, 20, 30, 50, 75, 100, 200, 500, 750, 1000)
    assert UPSTREAM_LATENCY_BUCKETS == (25, 50, 80, 100, 250, 400, 700, 1000, 2000, 5000, 10000, 30000, 60000)


def test_a_request_without_service_and_missing_latencies_are_not_counted() -> None:
    metrics, registry = _metrics()
    metrics.record_request(RequestFacts(None, "", 404, "kong"))  # no route matched: Kong records nothing
    metrics.record_request(RequestFacts("s", "r", 502, "kong", request_ms=3, upstream_ms=None, kong_ms=-1))
    text = _text(registry)
    assert _sample(text, "kong_http_requests_total", service="", route="", code="404", source="kong",
                   consumer="") is None
    assert _sample(text, "kong_upstream_latency_ms_count", service="s", route="r") is None
    assert _sample(text, "kong_kong_latency_ms_count", service="s", route="r") is None
    assert _sample(text, "kong_request_latency_ms_count", service="s", route="r") == 1
    assert _sample(text, "kong_bandwidth_bytes", service="s", route="r", direction="ingress", consumer="") is None


def test_node_connection_and_datastore_gauges() -> None:
    metrics, registry = _metrics()
    metrics.observe_connections(ConnectionCounts(accepted=296, handled=296, active=9, reading=0, writing=9,
                                                 waiting=0, requests=1200))
    metrics.observe_datastore(False)
    text = _text(registry)
    assert "# TYPE kong_nginx_connections_total gauge" in text
    assert _sample(text, "kong_nginx_connections_total", node_id=NODE, subsystem="http", state="total") == 1200
    assert _sample(text, "kong_nginx_connections_total", node_id=NODE, subsystem="http", state="active") == 9
    assert _sample(text, "kong_nginx_requests_total", node_id=NODE, subsystem="http") == 1200
    assert _sample(text, "kong_datastore_reachable") == 0
    assert _sample(text, "kong_node_info", node_id=NODE, version="0.1.0") == 1
    metrics.observe_datastore(True)
    assert _sample(_text(registry), "kong_datastore_reachable") == 1


def test_trio_gw_tls_series() -> None:
    metrics, registry = _metrics()
    metrics.record_handshake("proxy", "TLSv1.3", "TLS_AES_128_GCM_SHA256")
    metrics.record_handshake_failure("proxy", "unknown_ca")
    metrics.record_handshake_failure("proxy", "unknown_ca")
    metrics.suppressed_log_lines.labels("unknown_ca").inc(5)
    text = _text(registry)
    assert _sample(text, "trio_gw_tls_handshakes_total", listener="proxy", version="TLSv1.3",
                   cipher="TLS_AES_128_GCM_SHA256") == 1
    assert _sample(text, "trio_gw_tls_handshake_failures_total", listener="proxy", reason="unknown_ca") == 2
    assert _sample(text, "trio_gw_log_lines_suppressed_total", reason="unknown_ca") == 5


def test_certificate_gauges_come_from_the_live_inventory_at_scrape_time() -> None:
    now = 1_900_000_000
    inventories = [sample_view(now).view.inventory]
    registry = CollectorRegistry()
    registry.register(CertificateExpiryCollector(lambda: inventories[-1], clock=lambda: now + 0.5))
    text = _text(registry)
    srv = {"certificate": "srv", "role": "server", "subject": "O=trio-gw tests", "key": "certificate:srv"}
    assert _sample(text, "trio_gw_certificate_expiry_seconds", **srv) == 5 * 86_400 - 0.5
    assert _sample(text, "trio_gw_certificate_expiry_timestamp_seconds", **srv) == now + 5 * 86_400
    keys = set(re.findall(r'trio_gw_certificate_expiry_seconds\{.*key="([^"]+)"', text))
    assert keys == set(EXPIRES_IN_DAYS)
    bob = re.search(r'trio_gw_certificate_expiry_seconds\{[^}]*key="credential:bob"[^}]*\} (\S+)', text)
    assert bob is not None and float(bob.group(1)) < 0  # expired: negative
    inventories.append(Inventory())  # a new generation without certificates: the series are gone
    assert "trio_gw_certificate_expiry_seconds{" not in _text(registry)


def test_kong_label_rules() -> None:
    assert kong_service_label("orders", "orders.internal") == "orders"
    assert kong_service_label(None, "orders.internal") == "orders.internal"
    assert kong_route_label(None, "3f1d") == "3f1d" and kong_route_label("api", "3f1d") == "api"
    assert kong_consumer_label("alice", "c-1") == "alice" and kong_consumer_label(None, "c-1") == "c-1"
    assert kong_consumer_label(None, None) == ""


def _sorted_labels(text: str) -> str:
    """The exposition with each sample's labels sorted by name (prometheus-client keeps declaration order)."""
    def sort(match: re.Match[str]) -> str:
        pairs = sorted(re.findall(r'(\w+="[^"]*")', match.group(2)))
        return f"{match.group(1)}{{{','.join(pairs)}}}"
    return re.sub(r"^(\w+)\{([^}]*)\}", sort, text, flags=re.M)


def _observed_one_by_one(facts: list[RequestFacts]) -> str:
    """What prometheus-client's own calls give: inc and observe per request, value by value."""
    metrics, registry = _metrics()
    for f in facts:
        if f.service is None:
            continue
        labels = (f.service, f.route, str(f.status), f.source, f.consumer)
        metrics.http_requests.labels(*labels).inc()
        if f.bytes_in:
            metrics.bandwidth.labels(f.service, f.route, "ingress", f.consumer).inc(f.bytes_in)
        if f.bytes_out:
            metrics.bandwidth.labels(f.service, f.route, "egress", f.consumer).inc(f.bytes_out)
        for histogram, value in ((metrics.request_latency, f.request_ms), (metrics.upstream_latency, f.upstream_ms),
                                 (metrics.kong_latency, f.kong_ms)):
            if value is not None and value >= 0:
                histogram.labels(f.service, f.route).observe(value)
    return _text(registry)


_latencies = st.one_of(st.none(), st.floats(min_value=-1, max_value=70000, allow_nan=False),
                       st.sampled_from([0.0, 1.0, 25.0, 50.0, 1000.0, 60000.0]))  # on the bucket bounds too
_facts = st.builds(
    RequestFacts, service=st.sampled_from([None, "orders", "users"]), route=st.sampled_from(["a", "b"]),
    status=st.sampled_from([200, 401, 502]), source=st.sampled_from(["service", "kong"]),
    consumer=st.sampled_from(["", "alice"]), request_ms=_latencies, upstream_ms=_latencies, kong_ms=_latencies,
    bytes_in=st.integers(0, 5000), bytes_out=st.integers(0, 5000),
)


@given(st.lists(_facts, max_size=30), st.integers(1, 4))
def test_counted_and_flushed_is_what_observing_one_by_one_gives(facts: list[RequestFacts], flushes: int) -> None:
    """count() keeps requests in plain Python and flush() adds them to prometheus-client's histograms
    through its internals: the exposition must be exactly what inc/observe per request gives,
    whatever the flush points (the bucket sums compared to 1e-6)."""
    metrics, registry = _metrics()
    for i, f in enumerate(facts):
        metrics.count(f)
        if i % flushes == 0:
            metrics.flush()
    metrics.flush()
    ours, theirs = _text(registry), _observed_one_by_one(facts)

    def values(text: str) -> dict[str, float]:
        return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                if line and not line.startswith("#") and "_created" not in line}

    a, b = values(ours), values(theirs)
    assert a.keys() == b.keys()
    for series, value in a.items():
        assert abs(value - b[series]) <= 1e-6 * max(1.0, abs(value)), series


def test_counts_wait_for_the_flush() -> None:
    metrics, registry = _metrics()
    metrics.count(RequestFacts("s", "r", 200, "service", request_ms=3, upstream_ms=2, kong_ms=1))
    assert _sample(_text(registry), "kong_http_requests_total", service="s", route="r", code="200",
                   source="service", consumer="") is None
    metrics.flush()
    assert _sample(_text(registry), "kong_http_requests_total", service="s", route="r", code="200",
                   source="service", consumer="") == 1
