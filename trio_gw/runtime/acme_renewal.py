"""The ACME task of a node: issue on request, renew before expiry, back off after failures.

Theory of operation
-------------------
:class:`AcmeRenewer` decides nothing itself: for each host
:func:`trio_gw.tls.acme.plan_certificate` says issue, renew, wait or nothing,
given the certificate held (``not_after``), the last failure and the time.
Issuance runs :class:`~trio_gw.net.acme_client.AcmeIssuer` in a worker
thread (``trio.to_thread``), so the event loop and every handshake go on;
the result is written through ``write`` -- the node's ordinary certificate
write path (compare-and-swap in the datastore, key sealed, every node and
worker notified) -- as :func:`trio_gw.admin.acme.acme_certificate_document`,
replacing the certificate it renews (same id).  A failure is remembered per
host (reason and detail, Kong's ``fail_backoff_minutes``) and logged; the
ACME account is registered once and handed to ``save_account`` to be kept.

:meth:`AcmeRenewer.serve` looks at the managed hosts (``managed()``, e.g.
:func:`trio_gw.admin.acme.acme_managed_hosts` over the current generation)
every ``interval`` seconds; ``POST /acme`` calls :meth:`AcmeRenewer.ensure`
with ``explicit=True``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import trio

from trio_gw.admin.acme import acme_certificate_document
from trio_gw.net.acme_results import HTTP_01, AcmeAccount, AcmeError, IssuedCertificate
from trio_gw.tls.acme import AcmeAction, AcmeFailure, AcmePlan, plan_certificate

__all__ = ["ACME_CHECK_INTERVAL", "AcmeOutcome", "AcmeRenewer"]

if TYPE_CHECKING:
    from trio_gw.net.acme_client import AcmeIssuer

log = logging.getLogger("trio_gw.acme")

#: How often managed certificates are looked at (renewal is planned days ahead; an hour is plenty).
ACME_CHECK_INTERVAL: Final = 3600.0


@dataclass(frozen=True)
class AcmeOutcome:
    """What happened for one host: the plan, and the certificate written or the failure."""

    host: str
    plan: AcmePlan
    issued: IssuedCertificate | None = None
    failure: AcmeFailure | None = None


class AcmeRenewer:
    """See the module docstring.

    Args:
        issuer: the client for the configured CA.
        write: stores a Certificate document (the Admin write path); raises
            :class:`~trio_gw.net.acme_client.AcmeError` (``store_failed``) when it cannot.
        account: the stored ACME account, if any.
        save_account: keeps a newly registered account (sealed).
        challenge: ``http-01`` or ``tls-alpn-01``.
        clock: Unix time.
    """

    def __init__(
        self, issuer: AcmeIssuer, write: Callable[[dict[str, Any]], Awaitable[None]], *,
        account: AcmeAccount | None = None, save_account: Callable[[AcmeAccount], Awaitable[None]] | None = None,
        challenge: str = HTTP_01, clock: Callable[[], float] = time.time,
    ) -> None:
        self.issuer = issuer
        self.write = write
        self.account = account
        self.save_account = save_account
        self.challenge = challenge
        self.clock = clock
        self.failures: dict[str, AcmeFailure] = {}
        self._lock = trio.Lock()  # one issuance at a time: one account, one challenge store

    async def ensure(self, host: str, *, not_after: int | None = None, certificate_id: str | None = None,
                     explicit: bool = False) -> AcmeOutcome:
        """Issue or renew ``host``'s certificate when the plan says so (always, when ``explicit``)."""
        plan = plan_certificate(self.issuer.config, host, not_after=not_after,
                                last_failure=self.failures.get(host), now=int(self.clock()))
        wanted = plan.action in (AcmeAction.ISSUE, AcmeAction.RENEW) or (
            explicit and plan.action is AcmeAction.NOTHING)
        if not wanted:
            return AcmeOutcome(host, plan)
        async with self._lock:
            try:
                issued = await trio.to_thread.run_sync(self._issue, host)
                await self.write(acme_certificate_document(issued.cert_pem, issued.key_pem, [host],
                                                           certificate_id=certificate_id))
            except AcmeError as exc:
                failure = AcmeFailure(host, int(self.clock()), exc.reason, exc.detail)
                self.failures[host] = failure
                log.warning("ACME certificate for %s not obtained (%s): %s", host, exc.reason, exc.detail)
                return AcmeOutcome(host, plan, failure=failure)
        self.failures.pop(host, None)
        log.info("ACME certificate for %s %s, valid until %s", host,
                 "renewed" if not_after is not None else "issued", issued.not_after)
        return AcmeOutcome(host, plan, issued=issued)

    def _issue(self, host: str) -> IssuedCertificate:
        """Blocking: register the account once, then order (runs in a worker thread)."""
        if self.account is None:
            self.account = self.issuer.register()
            if self.save_account is not None:
                trio.from_thread.run(self.save_account, self.account)
        return self.issuer.issue(self.account, [host], challenge=self.challenge)

    async def renew_due(self, managed: Mapping[str, tuple[str, int]]) -> list[AcmeOutcome]:
        """Renew every managed host whose plan says so (host -> (certificate id, not_after))."""
        outcomes = []
        for host, (certificate_id, not_after) in sorted(managed.items()):
            outcomes.append(await self.ensure(host, not_after=not_after, certificate_id=certificate_id))
        return outcomes

    async def serve(self, managed: Callable[[], Mapping[str, tuple[str, int]]], *,
                    interval: float = ACME_CHECK_INTERVAL,
                    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Renew forever (start it in the node's nursery; cancel to stop)."""
        task_status.started()
        while True:
            await self.renew_due(managed())
            await trio.sleep(interval)
