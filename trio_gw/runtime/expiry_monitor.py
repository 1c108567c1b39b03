"""The certificate expiry monitor of a running node: warnings, Tyk's events, metrics and webhooks.

Theory of operation
-------------------
The decisions are pure (``model.expiry_monitor``, ``model.event_handlers``);
this module carries them out.  :func:`monitor_config` reads the settings once
(``certificate_expiry_monitor``, ``certificate_expiry_warning_days``,
``event_handlers``, ``event_webhook_*``).  The inventory it watches is the live
generation's, built off the event loop with the generation (every certificate
file the settings name is read there: ``runtime.certificate_files``).
:class:`ExpiryMonitor` keeps the record of fired events between checks:

* :meth:`ExpiryMonitor.warn` logs every warning line (the node calls it when a
  configuration is loaded: start-up, SIGHUP, a change seen in the datastore),
  and :meth:`ExpiryMonitor.run` repeats them daily;
* :meth:`ExpiryMonitor.check` runs one check over the live inventory: each
  event is logged (with the ``eh_log_handler`` prefixes), counted in
  ``trio_gw_certificate_events_total`` and handed to the webhooks, which never
  make it wait; :meth:`ExpiryMonitor.run` checks at start, then every
  ``check_cooldown_seconds``, and at once after :meth:`ExpiryMonitor.recheck`
  (the node calls it whenever a generation goes live, so a certificate an Admin
  API write adds gets its event at once — the cooldown still holds every other
  one back).

The record lives as long as the monitor (one per node): a reload does not
re-fire events, a renewed certificate starts afresh.
"""

from __future__ import annotations

import logging
import os
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import trio

from trio_gw.errors import ConfigError, Problem
from trio_gw.model.event_handlers import EventHandlers, WebhookDelivery, parse_event_handlers
from trio_gw.model.expiry_monitor import (
    ExpiryCheck,
    ExpiryMonitorPolicy,
    FiredRecord,
    check_expiry,
    expiry_warnings,
    parse_expiry_monitor,
)
from trio_gw.model.inventory import Inventory
from trio_gw.net.http_fetch import external_tls_context
from trio_gw.net.webhooks import DeliveryResult, WebhookSender
from trio_gw.runtime.kong_metrics import KongMetrics
from trio_gw.settings import Settings
from trio_gw.tls.external_services import ExternalServices, parse_external_services

__all__ = ["ExpiryMonitor", "MonitorConfig", "monitor_config"]

log = logging.getLogger("trio_gw.certificates")

#: Warning lines are repeated this often, independent of traffic (and of the events' cooldown).
WARNING_INTERVAL = 24 * 3600.0


@dataclass(frozen=True)
class MonitorConfig:
    """Everything the monitor reads from the settings, validated."""

    policy: ExpiryMonitorPolicy = ExpiryMonitorPolicy()
    handlers: EventHandlers = field(default_factory=EventHandlers)
    delivery: WebhookDelivery = WebhookDelivery()
    #: Tyk ``external_services``: the webhooks' proxy and TLS profile, the global proxy.
    external: ExternalServices = ExternalServices()

    @property
    def warn_days(self) -> int:
        """Warning lines use the events' threshold: one number, two outputs."""
        return self.policy.warning_threshold_days


def monitor_config(settings: Settings) -> MonitorConfig:
    """Read and validate the monitor's settings.

    Args:
        settings: the node settings.

    Returns:
        The configuration.

    Raises:
        ConfigError: every problem, under its setting's name.
    """
    explicit = settings.sources.get("certificate_expiry_warning_days", "default") != "default"
    problems: list[Problem] = []
    policy = ExpiryMonitorPolicy()
    try:
        policy = parse_expiry_monitor(settings.certificate_expiry_monitor,
                                      warning_days=settings.certificate_expiry_warning_days if explicit else None)
    except ConfigError as exc:
        problems.extend(exc.problems)
    handlers, delivery = EventHandlers(), WebhookDelivery()
    try:
        handlers = parse_event_handlers(settings.event_handlers,
                                        event_cooldown_seconds=policy.event_cooldown_seconds)
    except ConfigError as exc:
        problems.extend(exc.problems)
    try:
        delivery = WebhookDelivery(timeout=settings.event_webhook_timeout, retries=settings.event_webhook_retries)
    except ConfigError as exc:
        problems.extend(exc.problems)
    external = ExternalServices()
    try:
        external = parse_external_services(settings.external_services, environ=os.environ)
    except ConfigError as exc:
        problems.extend(exc.problems)
    if problems:
        raise ConfigError(problems)
    return MonitorConfig(policy, handlers, delivery, external)


def webhook_tls_context(config: MonitorConfig, settings: Settings) -> ssl.SSLContext:
    """The context the webhooks connect with (blocking: files are read; run it in a thread).

    Raises:
        ConfigError: a file of ``external_services.webhooks.mtls`` is unusable (named).
    """
    mtls = config.external.webhooks_mtls
    if mtls.enabled and mtls.insecure_skip_verify:
        log.warning("external_services.webhooks.mtls.insecure_skip_verify: webhook targets' certificates are "
                    "not verified; anyone on the path can read and answer the events")
    return external_tls_context(mtls, settings.lua_ssl_trusted_certificate, settings.lua_ssl_verify_depth,
                                setting="external_services.webhooks.mtls")


class ExpiryMonitor:
    """Warnings, events, metrics and webhooks over the live inventory (see the module docstring)."""

    def __init__(
        self,
        current: Callable[[], Inventory],
        config: MonitorConfig,
        *,
        metrics: KongMetrics | None = None,
        ssl_context: ssl.SSLContext | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Args:
            current: gives the live generation's inventory.
            config: from :func:`monitor_config`.
            metrics: counts events and webhook outcomes (``None``: not counted).
            ssl_context: verifies https webhooks (:func:`webhook_tls_context`: ``lua_ssl_trusted_certificate``,
                or ``external_services.webhooks.mtls``; ``None``: the system roots).
            clock: Unix time now.
        """
        self.current = current
        self.config = config
        self.metrics = metrics
        self.clock = clock
        self.fired: FiredRecord = {}
        has_webhooks = any(config.handlers.webhooks.values())
        #: Delivers the webhooks; started by :meth:`run` (``None`` when no webhook is configured).
        mtls = config.external.webhooks_mtls
        self.sender = WebhookSender(
            config.handlers, config.delivery, ssl_context=ssl_context, proxies=config.external.webhook_proxies,
            trust_setting="external_services.webhooks.mtls.ca_file" if mtls.enabled and mtls.ca_file
            else "lua_ssl_trusted_certificate",
            on_result=self._count_delivery) if has_webhooks else None
        self._recheck = trio.Event()

    def recheck(self) -> None:
        """Ask :meth:`run` to check now (a new generation went live); never waits."""
        self._recheck.set()

    def warn(self) -> int:
        """Log the warning line of every certificate expired, expiring or not yet valid; return how many."""
        lines = expiry_warnings(self.current(), now=int(self.clock()), warn_days=self.config.warn_days)
        for line in lines:
            log.warning("%s", line)
        return len(lines)

    def check(self) -> ExpiryCheck:
        """Run one check: fire, log, count and send what it decides."""
        outcome = check_expiry(self.current(), now=int(self.clock()), fired=self.fired, policy=self.config.policy)
        self.fired = outcome.fired
        for event in outcome.events:
            log.warning("%s", self.config.handlers.log_line(event))
            if self.metrics is not None:
                self.metrics.certificate_events.labels(event.kind, event.facts.role.value).inc()
            if self.sender is not None:
                dropped = len(self.config.handlers.webhooks_for(event.kind)) - self.sender.submit(event)
                if dropped and self.metrics is not None:
                    self.metrics.webhook_deliveries.labels(event.kind, "dropped").inc(dropped)
        return outcome

    def _count_delivery(self, result: DeliveryResult) -> None:
        if self.metrics is not None:
            self.metrics.webhook_deliveries.labels(result.kind, "delivered" if result.ok else "failed").inc()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Deliver webhooks in the background; check at once, every ``check_cooldown_seconds`` and after
        :meth:`recheck`; warn daily.

        Runs until cancelled; start it with ``nursery.start(monitor.run)`` once the first generation is live.
        """
        async with trio.open_nursery() as nursery:
            if self.sender is not None:
                await nursery.start(self.sender.run)
            task_status.started()
            next_warning = trio.current_time() + WARNING_INTERVAL
            while True:
                self._recheck = trio.Event()
                self.check()
                with trio.move_on_after(self.config.policy.check_cooldown_seconds):
                    await self._recheck.wait()
                if trio.current_time() >= next_warning:
                    self.warn()
                    next_warning = trio.current_time() + WARNING_INTERVAL
