"""Who made a request, in the access log; Kong's metric names next to trio-gw's TLS metrics — through a real gateway.

An in-process gateway (listeners on 127.0.0.1:0) with an mtls-auth route and a consumer whose credential is a
client certificate, an echo upstream, and the access log in a file.  A request with the certificate and one
without: the log names the certificate's fingerprint and subject and the consumer for the first, nothing for
the second; ``/metrics`` counts both under Kong's names and labels, with the handshakes by version and cipher,
the connections, the datastore and the node — and registers no name twice.
"""

from __future__ import annotations

import hashlib
import json
import ssl
from pathlib import Path
from typing import Any

import trio
import trustme
from cryptography import x509
from prometheus_client.parser import text_string_to_metric_families

from trio_gw.runtime.gateway import Gateway
from trio_gw.testing.http_client import Client

from .conftest import StartGateway, Upstream, port_of

CA_ID = "00000000-0000-4000-8000-000000000001"


async def _gateway(start_gateway: StartGateway, upstream: Upstream, ca: trustme.CA, alice: trustme.LeafCert,
                   server_pair: tuple[Path, Path], log: Path, fmt: str) -> Gateway:
    cert, key = server_pair
    declarative = {
        "_format_version": "3.0",
        "ca_certificates": [{"id": CA_ID, "cert": ca.cert_pem.bytes().decode()}],
        "consumers": [{"username": "alice", "mtls_auth_credentials": [
            {"certificate": alice.cert_chain_pems[0].bytes().decode()}]}],
        "services": [{"name": "echo", "url": upstream.url, "routes": [
            {"name": "api", "paths": ["/api"],
             "plugins": [{"name": "mtls-auth", "config": {"ca_certificates": [CA_ID]}}]}]}],
    }
    return await start_gateway(declarative, ssl_cert=str(cert), ssl_cert_key=str(key), proxy_access_log=str(log),
                               access_log_format=fmt)


def _context(ca: trustme.CA, leaf: trustme.LeafCert | None) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    if leaf is not None:
        leaf.configure_cert(context)
    return context


async def _get(gw: Gateway, ca: trustme.CA, leaf: trustme.LeafCert | None) -> int:
    client = await Client.connect(port_of(gw, ssl=True), tls=_context(ca, leaf), server_hostname="localhost")
    reply = await client.request("GET", "/api/orders?x=1")
    await client.stream.aclose()
    return reply.status


async def _lines(log: Path, count: int) -> list[str]:
    """The access log's lines once ``count`` are written (after the answer: a bounded wait)."""
    with trio.move_on_after(10):
        while len(log.read_text().splitlines()) < count:
            await trio.sleep(0.02)
    return log.read_text().splitlines()


async def test_json_access_lines_name_the_certificate_and_the_consumer(
    start_gateway: StartGateway, upstream: Upstream, ca: trustme.CA, server_pair: tuple[Path, Path], tmp_path: Path,
) -> None:
    alice = ca.issue_cert("alice@example.test", common_name="alice")
    log = tmp_path / "access.json.log"
    gw = await _gateway(start_gateway, upstream, ca, alice, server_pair, log, "json")
    assert await _get(gw, ca, alice) == 200
    assert await _get(gw, ca, None) == 401
    with_cert, without = (json.loads(line) for line in await _lines(log, 2))
    der = ssl.PEM_cert_to_DER_cert(alice.cert_chain_pems[0].bytes().decode())
    assert with_cert["client_cert_fingerprint"] == hashlib.sha256(der).hexdigest()
    assert with_cert["client_cert_subject"] == x509.load_der_x509_certificate(der).subject.rfc4514_string()
    assert with_cert["client_cert_subject"].startswith("CN=alice,")
    assert (with_cert["consumer"], with_cert["status"], with_cert["route"], with_cert["service"]) == (
        "alice", 200, "api", "echo")
    assert (without["client_cert_fingerprint"], without["client_cert_subject"], without["consumer"]) == (
        None, None, None)
    assert (without["status"], without["reason"]) == (401, "no_cert")
    assert "PRIVATE KEY" not in log.read_text()


async def test_text_access_lines_name_them_too(
    start_gateway: StartGateway, upstream: Upstream, ca: trustme.CA, server_pair: tuple[Path, Path], tmp_path: Path,
) -> None:
    alice = ca.issue_cert("alice@example.test", common_name="alice")
    log = tmp_path / "access.log"
    gw = await _gateway(start_gateway, upstream, ca, alice, server_pair, log, "text")
    assert await _get(gw, ca, alice) == 200
    (line,) = await _lines(log, 1)
    der = ssl.PEM_cert_to_DER_cert(alice.cert_chain_pems[0].bytes().decode())
    subject = x509.load_der_x509_certificate(der).subject.rfc4514_string()
    assert line.endswith(f' client_cert={hashlib.sha256(der).hexdigest()} client_subject="{subject}" consumer="alice"')


def _samples(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return found


def _value(samples: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str) -> float:
    matching = [v for found, v in samples.get(name, []) if all(found.get(k) == w for k, w in labels.items())]
    assert len(matching) == 1, (name, labels, samples.get(name))
    return matching[0]


async def test_kong_metric_names_and_tls_metrics_on_one_registry(
    start_gateway: StartGateway, upstream: Upstream, ca: trustme.CA, server_pair: tuple[Path, Path], tmp_path: Path,
) -> None:
    alice = ca.issue_cert("alice@example.test", common_name="alice")
    gw = await _gateway(start_gateway, upstream, ca, alice, server_pair, tmp_path / "access.log", "json")
    assert await _get(gw, ca, alice) == 200
    assert await _get(gw, ca, None) == 401
    client = await Client.connect(port_of(gw, kind="status"))
    text = (await client.request("GET", "/metrics")).body.decode()
    types = [line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")]
    assert len(types) == len(set(types)), types  # no metric name twice in the registry
    samples = _samples(text)
    kong: dict[str, Any] = {"service": "echo", "route": "api"}
    assert _value(samples, "kong_http_requests_total", **kong, code="200", source="service", consumer="alice") == 1
    assert _value(samples, "kong_http_requests_total", **kong, code="401", source="kong", consumer="") == 1
    assert _value(samples, "kong_request_latency_ms_count", **kong) == 2
    assert _value(samples, "kong_upstream_latency_ms_count", **kong) == 1  # the refusal never reached it
    assert _value(samples, "kong_kong_latency_ms_count", **kong) == 2
    assert _value(samples, "kong_bandwidth_bytes", **kong, direction="egress", consumer="alice") > 0
    assert _value(samples, "kong_datastore_reachable") == 1
    assert _value(samples, "kong_node_info", node_id=gw.metrics.kong.node_id) == 1
    assert _value(samples, "kong_nginx_connections_total", state="accepted") >= 3  # two requests, this scrape
    assert _value(samples, "kong_nginx_connections_total", state="active") >= 1  # this scrape's own connection
    assert _value(samples, "kong_nginx_requests_total") == 2
    handshakes = [(labels, v) for labels, v in samples["trio_gw_tls_handshakes_total"]]
    assert sum(v for labels, v in handshakes if labels["listener"] == "proxy" and labels["version"] == "TLSv1.3"
               and labels["cipher"].startswith("TLS_")) == 2, handshakes
    assert _value(samples, "trio_gw_requests_total", status="4xx", reason="no_cert") == 1
    assert {labels["role"] for labels, _ in samples["trio_gw_certificate_expiry_seconds"]} == {"server", "ca",
                                                                                             "consumer"}
