"""Event webhooks: POST each certificate event to its configured URLs, in the background.

Theory of operation
-------------------
:meth:`WebhookSender.submit` is synchronous and never waits: it puts one
delivery per configured webhook (``model.event_handlers``) on a bounded
queue, or counts it as dropped when the queue is full (a webhook down for
hours must not grow memory nor hold back the expiry monitor).
:meth:`WebhookSender.run`, started in a nursery, takes deliveries off the
queue and runs each one in its own task (at most :data:`MAX_CONCURRENT`
at once, so one slow URL does not delay the others): every attempt runs
under ``event_webhook_timeout`` (connect, TLS, request, answer), and a
connection failure, a timeout, 408, 429 or 5xx is retried after
:attr:`WebhookDelivery.delays`.  https targets are verified against the
context of the node's own outbound TLS (``lua_ssl_trusted_certificate``,
``net.http_fetch.outbound_tls_context``), or with Tyk's
``external_services.webhooks`` against its own TLS profile
(``net.http_fetch.external_tls_context``: a client certificate, a CA file) and
through its forward proxy (``ProxySettings``); an untrusted certificate, or
one of ours the target refuses, is not retried.  Each finished delivery is logged and reported to ``on_result``
(metrics, tests).  What to send and when to retry is decided by the pure
layer; this module only carries it out.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

import trio

from trio_gw.model.event_handlers import (
    EventHandlers,
    WebhookDelivery,
    WebhookTarget,
    is_retryable_status,
    webhook_body,
)
from trio_gw.model.expiry_monitor import ExpiryEvent
from trio_gw.net.http_fetch import FetchError, request
from trio_gw.tls.external_services import ProxySettings

__all__ = ["DeliveryResult", "WebhookSender"]

log = logging.getLogger("trio_gw.events")

#: Deliveries waiting to start; more are dropped (and counted).
QUEUE_SIZE: Final = 1024
#: Deliveries in flight at once.
MAX_CONCURRENT: Final = 8
#: A webhook's answer body is read and discarded up to this size.
MAX_ANSWER_BYTES: Final = 64 * 1024


@dataclass(frozen=True)
class DeliveryResult:
    """How one delivery ended: ``ok`` after a 2xx, else the last status or error."""

    kind: str
    certificate: str
    target: WebhookTarget
    ok: bool
    attempts: int
    status: int | None = None
    error: str | None = None


@dataclass(frozen=True)
class _Delivery:
    kind: str
    certificate: str
    target: WebhookTarget
    body: bytes


class WebhookSender:
    """Delivers events to their webhooks in the background (see the module docstring)."""

    def __init__(
        self,
        handlers: EventHandlers,
        delivery: WebhookDelivery = WebhookDelivery(),
        *,
        ssl_context: ssl.SSLContext | None = None,
        proxies: ProxySettings = ProxySettings(),
        trust_setting: str = "lua_ssl_trusted_certificate",
        on_result: Callable[[DeliveryResult], None] | None = None,
        queue_size: int = QUEUE_SIZE,
        sleep: Callable[[float], Awaitable[None]] = trio.sleep,
    ) -> None:
        self.handlers = handlers
        self.delivery = delivery
        self.ssl_context = ssl_context
        self.proxies = proxies
        self.trust_setting = trust_setting
        self.on_result = on_result
        self.dropped = 0
        self._sleep = sleep
        self._send, self._receive = trio.open_memory_channel[_Delivery](queue_size)
        self._limit = trio.CapacityLimiter(MAX_CONCURRENT)

    def submit(self, event: ExpiryEvent) -> int:
        """Queue ``event`` for every webhook registered for its kind; never waits.

        Args:
            event: a fired certificate event.

        Returns:
            How many deliveries were queued (the rest, if the queue was full, are dropped and logged).
        """
        body = webhook_body(event)
        queued = 0
        for target in self.handlers.webhooks_for(event.kind):
            try:
                self._send.send_nowait(_Delivery(event.kind, event.facts.label_id, target, body))
                queued += 1
            except trio.WouldBlock:
                self.dropped += 1
                log.error("%s for %s not sent to %s: %d deliveries already waiting", event.kind,
                          event.facts.label_id, target.url, self._send.statistics().current_buffer_used)
        return queued

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Deliver queued events until cancelled (start it with ``nursery.start``)."""
        async with trio.open_nursery() as nursery:
            task_status.started()
            async for item in self._receive:
                await self._limit.acquire_on_behalf_of(item)
                nursery.start_soon(self._deliver_and_release, item)

    async def _deliver_and_release(self, item: _Delivery) -> None:
        try:
            result = await self._deliver(item)
        finally:
            self._limit.release_on_behalf_of(item)
        if result.ok:
            log.info("%s for %s delivered to %s (%d attempt(s))", result.kind, result.certificate,
                     result.target.url, result.attempts)
        else:
            log.error("%s for %s not delivered to %s after %d attempt(s): %s", result.kind, result.certificate,
                      result.target.url, result.attempts,
                      f"HTTP {result.status}" if result.error is None else result.error)
        if self.on_result is not None:
            self.on_result(result)

    async def deliver(self, event: ExpiryEvent, target: WebhookTarget) -> DeliveryResult:
        """Deliver ``event`` to ``target`` now, with retries, and wait for the outcome (tests, one-off sends).

        Args:
            event: the event.
            target: one of its webhooks.

        Returns:
            How the delivery ended.
        """
        return await self._deliver(_Delivery(event.kind, event.facts.label_id, target, webhook_body(event)))

    async def _deliver(self, item: _Delivery) -> DeliveryResult:
        target, delays = item.target, self.delivery.delays
        headers = (("content-type", "application/json"), *target.headers)
        status: int | None = None
        error: str | None = None
        proxy = self.proxies.proxy_for_url(target.url)
        for attempt in range(1, len(delays) + 2):
            try:
                status, _ = await request(target.method, target.url, timeout=self.delivery.timeout, body=item.body,
                                          headers=headers, max_bytes=MAX_ANSWER_BYTES, ssl_context=self.ssl_context,
                                          proxy=proxy, trust_setting=self.trust_setting)
                error = None
            except FetchError as exc:
                status, error = None, str(exc)
                if exc.permanent:
                    return DeliveryResult(item.kind, item.certificate, target, False, attempt, None, error)
            if status is not None and 200 <= status <= 299:
                return DeliveryResult(item.kind, item.certificate, target, True, attempt, status)
            if status is not None and not is_retryable_status(status):
                return DeliveryResult(item.kind, item.certificate, target, False, attempt, status)
            if attempt <= len(delays):
                await self._sleep(delays[attempt - 1])
        return DeliveryResult(item.kind, item.certificate, target, False, len(delays) + 1, status, error)
