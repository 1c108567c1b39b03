"""Prometheus metrics, served on the status listener at ``/metrics``.

Everything the data plane counts has a stable, low-cardinality label set:
status class and reason code for requests, reason code for handshakes, and one
expiry gauge per certificate and role — updated whenever a snapshot goes live,
so expiry is visible independent of traffic.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

from trio_gw.model.entities import CACertificate, Certificate
from trio_gw.pki.info import describe_certificate
from trio_gw.pki.parse import parse_certificates

if TYPE_CHECKING:
    from trio_gw.net.proxy import ConnectionInfo, Exchange
    from trio_gw.snapshot import Snapshot


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("trio_gw_requests", "Requests answered, by status class and reason code",
                                ["status", "reason"], registry=self.registry)
        self.handshake_failures = Counter("trio_gw_tls_handshake_failures",
                                          "Failed inbound TLS handshakes, by listener and reason code",
                                          ["listener", "reason"], registry=self.registry)
        self.handshakes = Counter("trio_gw_tls_handshakes", "Completed inbound TLS handshakes, by version",
                                  ["version"], registry=self.registry)
        self.expiry = Gauge("trio_gw_certificate_expiry_seconds",
                            "Seconds until each configured certificate expires (negative: expired)",
                            ["certificate", "role", "subject"], registry=self.registry)
        self.snapshot_age = Gauge("trio_gw_snapshot_created_timestamp_seconds",
                                  "When the live configuration snapshot was built", registry=self.registry)

    def record_request(self, info: ConnectionInfo, ex: Exchange) -> None:
        status = f"{ex.status // 100}xx" if ex.status else "none"
        self.requests.labels(status, ex.reason or "").inc()

    def record_handshake(self, listener: str, reason: str | None, version: str | None = None) -> None:
        if reason is None:
            self.handshakes.labels(version or "unknown").inc()
        else:
            self.handshake_failures.labels(listener, reason).inc()

    def observe_snapshot(self, snapshot: Snapshot) -> None:
        """Refresh the expiry gauges for every certificate of every role."""
        self.expiry.clear()
        now = time.time()
        roles: list[tuple[str, Certificate | CACertificate]] = [("server", c) for c in snapshot.certificates.values()]
        roles += [("ca", c) for c in snapshot.entities.ca_certificates.values()]
        for role, cert in roles:
            info = describe_certificate(parse_certificates(cert.cert)[0])
            self.expiry.labels(cert.id, role, info.subject).set(info.not_after - now)
        self.snapshot_age.set(snapshot.created_at)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
