"""The node's registry: one exchange in Kong's terms, no name twice, scrape-time gauges, the expiry collector."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from trio_gw.http.facts import ConnectionFacts
from trio_gw.model.entities import Consumer
from trio_gw.net.exchange import Exchange
from trio_gw.runtime.kong_metrics import ConnectionCounts
from trio_gw.runtime.metrics import CLIENT_CLOSED_STATUS, Metrics, request_facts
from trio_gw.testing.inventory import sample_view

CONN = ConnectionFacts("198.51.100.7", 40000, 8443, tls=True)


def _forwarded() -> Exchange:
    return Exchange(started=100.0, method="GET", target="/orders", status=201, route="orders-api", service="orders",
                    upstream="10.0.0.5:443", upstream_started=100.004, upstream_answered=100.054, bytes_in=10,
                    bytes_out=2048, consumer=Consumer(id="c1", username="alice"))


def test_a_relayed_answer_is_the_service_s_with_kong_s_three_latencies() -> None:
    facts = request_facts(_forwarded(), now=100.1)
    assert (facts.service, facts.route, facts.status, facts.source, facts.consumer) == (
        "orders", "orders-api", 201, "service", "alice")
    assert (facts.request_ms, facts.upstream_ms, facts.kong_ms) == (100.0, 50.0, 4.0)
    assert (facts.bytes_in, facts.bytes_out) == (10, 2048)


def test_the_gateway_s_own_answers_are_kong_s() -> None:
    refused = Exchange(started=5.0, status=401, reason="no_cert", route="r", service="s")
    facts = request_facts(refused, now=5.002)
    assert (facts.source, facts.consumer, facts.upstream_ms, facts.kong_ms) == ("kong", "", None, 2.0)
    failed = Exchange(started=5.0, status=502, reason="upstream_connect_failed", route="r", service="s",
                      upstream="10.0.0.5:443", upstream_started=5.001)
    assert request_facts(failed, now=5.01).source == "kong"  # the upstream never answered
    gone = Exchange(started=5.0, route="r", service="s")
    assert request_facts(gone, now=5.01).status == CLIENT_CLOSED_STATUS
    by_custom_id = Exchange(started=5.0, status=200, consumer=Consumer(id="c2", custom_id="acct-9"))
    assert request_facts(by_custom_id, now=5.0).consumer == "acct-9"
    anonymous_id = Exchange(started=5.0, status=200, consumer=Consumer(id="c3"))
    assert request_facts(anonymous_id, now=5.0).consumer == ""  # Kong: username, else custom id, else nothing


def test_one_registry_scrape_time_gauges_and_the_expiry_of_the_live_inventory() -> None:
    sample = sample_view(1_900_000_000)
    scraped: list[int] = []

    def before_scrape(metrics: Metrics) -> None:
        scraped.append(1)
        metrics.kong.observe_connections(ConnectionCounts(accepted=7, handled=6, active=2, reading=1, writing=1,
                                                          waiting=0, requests=metrics.requests_served))
        metrics.kong.observe_datastore(False)

    metrics = Metrics(node_id="n-1", inventory=lambda: sample.view.inventory, before_scrape=before_scrape)
    metrics.record_request(CONN, _forwarded())
    metrics.record_handshake("proxy", "TLSv1.3", "TLS_AES_128_GCM_SHA256")
    metrics.record_handshake("admin", None, None)
    text = metrics.exposition().decode()
    assert scraped == [1]
    families = {f.name: f for f in text_string_to_metric_families(text)}
    types = [line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")]
    assert len(types) == len(set(types))
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families.values() for s in f.samples}
    assert samples[("kong_http_requests_total", (("code", "201"), ("consumer", "alice"), ("route", "orders-api"),
                                                  ("service", "orders"), ("source", "service")))] == 1
    assert samples[("kong_nginx_requests_total", (("node_id", "n-1"), ("subsystem", "http")))] == 1
    assert samples[("kong_datastore_reachable", ())] == 0
    assert samples[("trio_gw_tls_handshakes_total", (("cipher", "unknown"), ("listener", "admin"),
                                                     ("version", "unknown")))] == 1
    assert samples[("trio_gw_requests_total", (("reason", ""), ("status", "2xx")))] == 1
    expiry = {s.labels["key"] for s in families["trio_gw_certificate_expiry_seconds"].samples}
    assert expiry == set(sample.view.inventory.facts)
    # an empty inventory (before the first generation) is no error
    assert b"trio_gw_certificate_expiry_seconds" in Metrics(node_id="n-2").exposition()
