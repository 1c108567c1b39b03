"""The certificate lifecycle of one node: OCSP stapling, client-certificate revocation, ACME.

Theory of operation
-------------------
Everything here is long-lived state that outlives a generation, so each piece
has exactly one writer, the event loop:

* the **stapling cache** (``ssl_stapling``): the generation builder plans
  which certificates to staple (:class:`~trio_gw.tls.stapling_plan.StaplingPlan`)
  and installs status callbacks that only *read* this cache; when a generation
  is installed, :meth:`CertificateLifecycle.installed` makes the cache follow
  its plan (new certificates are due at once, dropped ones forgotten), and the
  refresher (:func:`~trio_gw.net.ocsp_fetch.serve_ocsp_refresh`) keeps every
  answer current -- fetched before ``nextUpdate``, backing off after failures;
* the **client revocation caches** -- CRLs and OCSP answers about client
  certificates, read by the plugins, ``ssl_ocsp`` and admin mTLS, filled by the
  :class:`~trio_gw.runtime.revocation_fetch.RevocationFetcher`, whose rounds a
  request refused ``revocation_unknown`` may wait for once
  (:meth:`CertificateLifecycle.settle_revocation`);
* the **ACME service** (:class:`~trio_gw.runtime.acme_service.AcmeService`) and
  the :class:`~trio_gw.net.acme_challenges.ChallengeStore` its issuer publishes
  challenge answers in (the issuer thread writes it under its own lock; the
  listeners read whole mappings).

``/metrics`` reads them at scrape time (:class:`_LifecycleCollector`): the
stapling status of every served certificate, ACME outcomes, admin refusals.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import trio
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from trio_gw.errors import ConfigError, Problem
from trio_gw.http.facts import ConnectionFacts
from trio_gw.net.acme_challenges import ChallengeStore
from trio_gw.net.ocsp_fetch import DEFAULT_OCSP_FETCH_TIMEOUT, OCSP_REFRESH_INTERVAL, serve_ocsp_refresh
from trio_gw.plugins.crl_cache import CrlCache
from trio_gw.plugins.ocsp_cache import OcspCache
from trio_gw.runtime.acme_service import AcmeService, DatastoreChallengeShare
from trio_gw.runtime.revocation_fetch import RevocationFetcher
from trio_gw.settings import Settings
from trio_gw.tls.stapling import decide_staple
from trio_gw.tls.truststore_revocation import (
    TruststoreRevocation,
    build_truststore_revocation,
    check_truststore_revocation,
)

if TYPE_CHECKING:
    from trio_gw.net.generation import Generation
    from trio_gw.runtime.gateway import Gateway

__all__ = ["CertificateLifecycle", "read_admin_revocation"]

log = logging.getLogger("trio_gw.lifecycle")


class CertificateLifecycle:
    """See the module docstring.

    Args:
        gateway: the node (settings, generation, datastore, outbound trust, metrics registry).
    """

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        settings = gateway.settings
        self.crls = CrlCache()
        self.client_ocsp = OcspCache()
        #: The stapling cache; ``None`` with ``ssl_stapling off``.
        self.staples = OcspCache(check_signer=settings.ssl_stapling_verify) if settings.ssl_stapling else None
        self.challenges = ChallengeStore(share=DatastoreChallengeShare(gateway))
        self.fetcher = RevocationFetcher(self.crls, self.client_ocsp,
                                         limits=lambda: gateway.generation.snapshot.crl_fetch,
                                         ssl_context=lambda: gateway.fetch_tls,
                                         proxies=gateway.expiry_config.external.proxy)
        self.acme = AcmeService(gateway, self.challenges)
        #: ``admin_ssl_ocsp`` over the admin mTLS truststore (read by :meth:`prepare`).
        self.admin_revocation = TruststoreRevocation("admin_ssl_ocsp")
        #: Admin requests refused for revocation, by reason (``/metrics``).
        self.admin_refusals: dict[str, int] = {}
        gateway.metrics.registry.register(_LifecycleCollector(self))

    async def prepare(self) -> None:
        """Read what the admin revocation check needs (blocking reads in a thread; at start).

        Raises:
            ConfigError: a CA or CRL file cannot be read, naming the setting.
        """
        self.admin_revocation = await trio.to_thread.run_sync(read_admin_revocation, self.gateway.settings)

    def installed(self, generation: Generation) -> None:
        """A generation went live (on the loop): the caches follow it."""
        if self.staples is not None:
            self.staples.follow(generation.snapshot.stapling.fetched())
        self.client_ocsp.ttl = generation.snapshot.crl_fetch[0]  # the plugins' cert_cache_ttl

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the refreshers and the ACME service until cancelled."""
        async with trio.open_nursery() as nursery:
            await nursery.start(self.fetcher.serve)
            await nursery.start(self.acme.serve)
            if self.staples is not None:
                await nursery.start(functools.partial(
                    serve_ocsp_refresh, self.staples, interval=OCSP_REFRESH_INTERVAL,
                    timeout=DEFAULT_OCSP_FETCH_TIMEOUT, ssl_context=self.gateway.fetch_tls,
                    proxies=self.gateway.expiry_config.external.proxy))
            task_status.started()

    async def settle_revocation(self) -> None:
        """Wait (bounded by the plugins' ``http_timeout``) for a fetch round that includes the misses noted so far."""
        await self.fetcher.wait_fetched(self.gateway.generation.snapshot.crl_fetch[1])

    async def admin_refusal(self, info: ConnectionFacts) -> tuple[str, str] | None:
        """``admin_ssl_ocsp``: why the admin client certificate of this connection is refused, or ``None``."""
        policy = self.admin_revocation
        if not policy.active or info.peer_certificate_der is None:
            return None
        refusal = self._check(policy, info)
        if refusal is not None and refusal[0] == "revocation_unknown":
            await self.settle_revocation()
            refusal = self._check(policy, info)
        if refusal is not None:
            self.admin_refusals[refusal[0]] = self.admin_refusals.get(refusal[0], 0) + 1
        return refusal

    def _check(self, policy: TruststoreRevocation, info: ConnectionFacts) -> tuple[str, str] | None:
        return check_truststore_revocation(policy, info.peer_certificate_der, info.peer_chain_der,
                                           crl_for=self.crls.crl_for, ocsp=self.client_ocsp, now=time.time())


def read_admin_revocation(settings: Settings) -> TruststoreRevocation:
    """``admin_ssl_ocsp`` compiled from its settings' files (blocking).

    Raises:
        ConfigError: a CA or CRL file cannot be read, naming the setting.
    """
    if settings.admin_ssl_ocsp == "off":
        return TruststoreRevocation("admin_ssl_ocsp")
    anchors: list[bytes] = []
    crls: list[bytes] = []
    problems: list[Problem] = []
    for key, paths, out in (("admin_mtls_ca_certificates", settings.admin_mtls_ca_certificates, anchors),
                            ("admin_ssl_crl", settings.admin_ssl_crl, crls)):
        for i, path in enumerate(paths):
            try:
                data = Path(path).read_bytes()
            except OSError as exc:
                problems.append(Problem(f"{key}[{i}]", f"cannot read {path}: {exc.strerror}"))
                continue
            out.append(data)
    if problems:
        raise ConfigError(problems)
    return build_truststore_revocation("admin_ssl_ocsp", settings.admin_ssl_ocsp,
                                       [a.decode("ascii", "replace") for a in anchors], crls,
                                       crl_setting="admin_ssl_crl")


class _LifecycleCollector(Collector):
    """``/metrics`` families read at scrape time (on the loop) from the lifecycle's state."""

    def __init__(self, lifecycle: CertificateLifecycle) -> None:
        self.lifecycle = lifecycle

    def collect(self) -> Iterator[Metric]:
        staple = GaugeMetricFamily(
            "trio_gw_ocsp_staple", "OCSP stapling of each served certificate: 1 for its current status and action "
            "(status: good, revoked, unknown, stale, no_response ...; action: staple, omit, refuse)",
            labels=["certificate", "status", "action"])
        lifecycle = self.lifecycle
        staples = lifecycle.staples
        if staples is not None and lifecycle.gateway.holder.ready:
            plan = lifecycle.gateway.generation.snapshot.stapling
            now = time.time()
            for certificate_id, targets in sorted(plan.targets.items()):
                for target in targets:
                    decision = decide_staple(plan.policy, plan.answer(target, staples.current),
                                             must_staple=target.must_staple, now=now)
                    staple.add_metric([certificate_id, decision.reason, decision.action.value], 1.0)
        yield staple
        acme = CounterMetricFamily("trio_gw_acme_certificates", "ACME issuances and renewals, by result and reason",
                                   labels=["result", "reason"])
        for (result, reason), count in sorted(lifecycle.acme.stats.outcomes.items()):
            acme.add_metric([result, reason], float(count))
        yield acme
        admin = CounterMetricFamily("trio_gw_admin_revocation_refusals",
                                    "Admin API requests refused by admin_ssl_ocsp, by reason", labels=["reason"])
        for reason, count in sorted(lifecycle.admin_refusals.items()):
            admin.add_metric([reason], float(count))
        yield admin
