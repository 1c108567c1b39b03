"""Fetching what client-certificate revocation checks asked for: CRLs and OCSP answers, off the request path.

Theory of operation
-------------------
The revocation checks (``mtls-auth``, ``mtls-allowlist``, ``header-cert-auth``,
``ssl_ocsp``, admin mTLS) are pure and never block: they read the node's
:class:`~trio_gw.plugins.crl_cache.CrlCache` and client
:class:`~trio_gw.plugins.ocsp_cache.OcspCache`, and a miss notes the URL or the
certificate as wanted.  :class:`RevocationFetcher` is the one task that fills
them -- the event loop is their only writer: every :data:`FETCH_INTERVAL`
seconds, or at once when woken, it runs a *round*: every wanted CRL, then
every due OCSP target (responders asked in order, GET then POST), each with
the deadline of the current generation (the plugins' ``http_timeout``, Kong's
30 s by default), trusting ``lua_ssl_trusted_certificate`` for https.

A request refused only because the status could not be learned yet
(``revocation_unknown``, ``STRICT`` with nothing at hand) may wait for the
next round with :meth:`RevocationFetcher.wait_fetched` and be decided again:
the round that wait sees starts *after* the miss was noted, so it includes
it.  That is how the first request of a certificate under ``STRICT`` gets an
answer instead of a refusal, without a handshake or a decision ever doing IO
itself; the wait is bounded by the same deadline.
"""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Callable

import trio

from trio_gw.errors import CertificateError
from trio_gw.net.http_fetch import NO_PROXIES, FetchError, fetch
from trio_gw.net.ocsp_fetch import DEFAULT_OCSP_FETCH_TIMEOUT, refresh_ocsp_once
from trio_gw.plugins.crl_cache import CrlCache
from trio_gw.plugins.ocsp_cache import OcspCache
from trio_gw.tls.external_services import ProxySettings

__all__ = ["FETCH_INTERVAL", "RevocationFetcher"]

log = logging.getLogger("trio_gw.revocation")

#: How often wanted CRLs and OCSP answers are fetched when nothing wakes the fetcher.
FETCH_INTERVAL = 2.0


class RevocationFetcher:
    """See the module docstring.

    Args:
        crls: the node's CRL cache.
        ocsp: the node's client OCSP cache.
        limits: ``(ttl, timeout)`` of the current generation (``snapshot.crl_fetch``).
        ssl_context: trust for https CRL and OCSP URLs (``lua_ssl_trusted_certificate``), read per round.
        proxies: Tyk ``external_services.proxy``, for the same URLs.
    """

    def __init__(
        self, crls: CrlCache, ocsp: OcspCache, *, limits: Callable[[], tuple[float, float]],
        ssl_context: Callable[[], ssl.SSLContext | None], proxies: ProxySettings = NO_PROXIES,
    ) -> None:
        self.crls = crls
        self.ocsp = ocsp
        self.limits = limits
        self.ssl_context = ssl_context
        self.proxies = proxies
        self.rounds = 0
        self._wake = trio.Event()
        self._next_round = trio.Event()  # set when the round that has not started yet ends

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Fetch forever (start it in the node's nursery; cancel to stop)."""
        task_status.started()
        while True:
            with trio.move_on_after(FETCH_INTERVAL):
                await self._wake.wait()
            self._wake = trio.Event()
            ending, self._next_round = self._next_round, trio.Event()
            try:
                await self.fetch_once()
            except Exception:  # a bug must cost one round, never the node
                log.exception("revocation fetch round failed")
            finally:
                self.rounds += 1
                ending.set()

    async def wait_fetched(self, timeout: float) -> None:
        """Wake the fetcher and wait (at most ``timeout`` seconds) for a round that starts after this call."""
        ending = self._next_round
        self._wake.set()
        with trio.move_on_after(timeout):
            await ending.wait()

    async def fetch_once(self) -> None:
        """One round: every wanted CRL, then every due OCSP answer."""
        ttl, timeout = self.limits()
        context = self.ssl_context()
        for url in self.crls.wanted():
            try:
                body = await fetch(url, timeout=timeout, ssl_context=context, proxies=self.proxies)
            except FetchError as exc:
                log.warning("CRL %s could not be fetched: %s", url, exc)
                self.crls.failed(url)
                continue
            try:
                self.crls.store(url, body, time.time(), ttl)
            except CertificateError as exc:
                log.warning("CRL %s is not usable: %s", url, exc)
                self.crls.failed(url)
        await refresh_ocsp_once(self.ocsp, timeout=min(timeout, DEFAULT_OCSP_FETCH_TIMEOUT), ssl_context=context,
                                proxies=self.proxies)
