"""Fetch OCSP responses off the request path and feed the :class:`~trio_gw.plugins.ocsp_cache.OcspCache`.

Theory of operation
-------------------
One background task per node (:func:`serve_ocsp_refresh`) wakes every
``interval`` seconds, takes the cache's due targets -- tracked server
certificates on their refresh schedule, client certificates a request missed
-- and asks each target's responders in order with an RFC 6960 appendix A.1
GET (the SHA-1 CertID request is ~110 bytes encoded, far under the 255-byte
limit; a GET is what responders and CDNs cache, and what nginx and browsers
send), falling back to a POST -- the method every responder must support --
when the responder answers the GET with an HTTP error.  The first response the
cache accepts (verified: CertID, signer, freshness) wins; when none does, the
target is marked failed and backs off.  The gateway's own outbound trust
(``lua_ssl_trusted_certificate``) verifies https responders.

Nothing here decides: the cache verifies, :func:`~trio_gw.tls.ocsp.plan_next_fetch`
schedules, :func:`~trio_gw.tls.stapling.decide_staple` and the revocation
check use the answers.  A handshake never waits for a responder.
"""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Callable

import trio

from trio_gw.net.http_fetch import NO_PROXIES, FetchError, fetch
from trio_gw.plugins.ocsp_cache import OcspCache, OcspTarget
from trio_gw.tls.external_services import ProxySettings
from trio_gw.tls.ocsp import MAX_OCSP_RESPONSE_SIZE, OcspError, ocsp_get_url

__all__ = ["DEFAULT_OCSP_FETCH_TIMEOUT", "OCSP_REFRESH_INTERVAL", "fetch_ocsp_response", "refresh_ocsp_once",
           "serve_ocsp_refresh"]

log = logging.getLogger("trio_gw.ocsp")

_OCSP_REQUEST = "application/ocsp-request"
#: How often the cache is asked for due targets (a client certificate's first miss waits at most this).
OCSP_REFRESH_INTERVAL = 1.0
#: Per responder exchange.  Kong's ``http_timeout`` default is 30 s; targets are refreshed one after
#: another, so 10 s keeps one dead responder from holding every other refresh for long.
DEFAULT_OCSP_FETCH_TIMEOUT = 10.0


async def fetch_ocsp_response(url: str, request_der: bytes, *, timeout: float,
                              ssl_context: ssl.SSLContext | None = None, proxies: ProxySettings = NO_PROXIES) -> bytes:
    """Fetch one OCSP response: GET (RFC 6960 appendix A.1), POST when the GET is refused or too long.

    Args:
        url: the responder.
        request_der: from :func:`~trio_gw.tls.ocsp.build_ocsp_request`.
        timeout: the deadline for the whole exchange.
        ssl_context: trust for https responders (``None``: system roots).
        proxies: Tyk ``external_services.proxy``.

    Raises:
        FetchError: unreachable, timed out, not 200 (to either method), or too large.
    """
    get_url = ocsp_get_url(url, request_der)
    if get_url is not None:
        try:
            return await fetch(get_url, timeout=timeout, max_bytes=MAX_OCSP_RESPONSE_SIZE, ssl_context=ssl_context,
                               proxies=proxies)
        except FetchError as exc:
            if not str(exc).startswith("HTTP "):  # unreachable or slow: a POST would fare no better
                raise
    return await fetch(url, timeout=timeout, max_bytes=MAX_OCSP_RESPONSE_SIZE, ssl_context=ssl_context,
                       post=(_OCSP_REQUEST, request_der), proxies=proxies)


async def refresh_ocsp_once(
    cache: OcspCache, *, timeout: float = DEFAULT_OCSP_FETCH_TIMEOUT, ssl_context: ssl.SSLContext | None = None,
    clock: Callable[[], float] = time.time, proxies: ProxySettings = NO_PROXIES,
) -> int:
    """Fetch every due target once.

    Returns:
        How many targets got a verified answer.
    """
    stored = 0
    for target in cache.due(clock()):
        if await _refresh(cache, target, timeout, ssl_context, clock, proxies):
            stored += 1
    return stored


async def _refresh(cache: OcspCache, target: OcspTarget, timeout: float, ssl_context: ssl.SSLContext | None,
                   clock: Callable[[], float], proxies: ProxySettings) -> bool:
    problems = []
    for url in target.urls:
        try:
            body = await fetch_ocsp_response(url, target.request_der, timeout=timeout, ssl_context=ssl_context,
                                             proxies=proxies)
            answer = cache.store(target.key, body, clock())
        except (FetchError, OcspError) as exc:
            problems.append(f"{url}: {exc}")
            continue
        except KeyError:  # the target was dropped (certificate no longer served) while fetching
            return False
        log.debug("OCSP %s serial %x: %s until %s", url, answer.serial_number, answer.status.value,
                  answer.fresh_until)
        return True
    cache.failed(target.key, clock())
    log.warning("OCSP status of serial %x not refreshed (%d failures): %s", target.leaf.serial_number,
                cache.failures(target.key), "; ".join(problems))
    return False


async def serve_ocsp_refresh(
    cache: OcspCache, *, interval: float = OCSP_REFRESH_INTERVAL, timeout: float = DEFAULT_OCSP_FETCH_TIMEOUT,
    ssl_context: ssl.SSLContext | None = None, clock: Callable[[], float] = time.time,
    proxies: ProxySettings = NO_PROXIES,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Refresh the cache forever (start it in the node's nursery; cancel to stop)."""
    task_status.started()
    while True:
        await refresh_ocsp_once(cache, timeout=timeout, ssl_context=ssl_context, clock=clock, proxies=proxies)
        await trio.sleep(interval)
