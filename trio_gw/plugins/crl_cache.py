"""A pure CRL cache: the plugins read it per request, the IO layer fills it.

Theory of operation
-------------------
``mtls-auth`` and ``header-cert-auth`` with ``revocation_check_mode`` other
than ``SKIP`` need the CRLs named by the client certificate's
``cRLDistributionPoints``.  Fetching is IO, and ``decide`` is synchronous and
pure, so the two meet in a :class:`CrlCache`:

* ``decide`` calls :meth:`CrlCache.crl_for` (the
  :class:`~trio_gw.plugins.base.CrlSource` protocol): a fresh cached CRL, or
  ``None`` — a miss is remembered in :meth:`CrlCache.wanted`;
* the IO layer periodically takes :meth:`CrlCache.wanted`, fetches each URL
  (``http_timeout``), and calls :meth:`CrlCache.store` with the bytes, or
  :meth:`CrlCache.failed`.

An entry is fresh for ``ttl`` seconds (the plugins' ``cert_cache_ttl``) and
never past the CRL's ``nextUpdate``.  With a miss, ``IGNORE_CA_ERROR`` lets
the request through while ``STRICT`` refuses it (Kong: an undeterminable
status is a revoked status), so the first request of a STRICT route may be
refused until the CRL arrives.

The cache mutates (dicts assigned from one thread at a time: the Trio loop),
but it decides nothing; it is passed in ``RequestContext.crl_source``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from cryptography import x509

from trio_gw.model.entities import Entities
from trio_gw.pki.info import unix_seconds
from trio_gw.tls.revocation import parse_crl

__all__ = ["DEFAULT_CRL_TTL", "MAX_WANTED", "CrlCache"]

#: Kong's ``cert_cache_ttl`` default (60000 ms).
DEFAULT_CRL_TTL: Final = 60.0
#: Most URLs remembered as wanted: a client cannot make the gateway fetch without bound.
MAX_WANTED: Final = 256


@dataclass(frozen=True)
class _Entry:
    crl: x509.CertificateRevocationList
    fresh_until: float


class CrlCache:
    """CRLs by URL (see the module docstring)."""

    def __init__(self, ttl: float = DEFAULT_CRL_TTL) -> None:
        self.ttl = ttl
        self._entries: dict[str, _Entry] = {}
        self._wanted: dict[str, None] = {}

    def crl_for(self, url: str, now: float) -> x509.CertificateRevocationList | None:
        """The fresh CRL at ``url``, or ``None`` (then ``url`` is wanted)."""
        entry = self._entries.get(url)
        if entry is not None and now <= entry.fresh_until:
            return entry.crl
        if len(self._wanted) < MAX_WANTED:
            self._wanted[url] = None
        return None

    def wanted(self) -> tuple[str, ...]:
        """URLs asked for and missing or stale, oldest first (the IO layer fetches them)."""
        return tuple(self._wanted)

    def store(self, url: str, data: bytes, now: float, ttl: float | None = None) -> None:
        """Keep the CRL fetched from ``url``.

        Args:
            url: where it was fetched.
            data: the response body (DER or PEM).
            now: the fetch time, Unix seconds.
            ttl: how long it is used (the plugins' ``cert_cache_ttl`` of the current
                configuration); the cache's own default when ``None``.

        Raises:
            CertificateError: ``data`` is not a CRL (the URL stays wanted).
        """
        crl = parse_crl(data)
        next_update = crl.next_update_utc
        fresh_until = now + (self.ttl if ttl is None else ttl)
        if next_update is not None:
            fresh_until = min(fresh_until, float(unix_seconds(next_update)))
        self._entries[url] = _Entry(crl, fresh_until)
        self._wanted.pop(url, None)

    def failed(self, url: str) -> None:
        """Forget that ``url`` is wanted after a failed fetch (asked again on the next miss)."""
        self._wanted.pop(url, None)



#: Plugins whose config carries Kong's ``cert_cache_ttl`` / ``http_timeout`` (milliseconds).
CRL_PLUGINS = frozenset({"mtls-auth", "header-cert-auth"})
#: Kong's ``http_timeout`` default (30000 ms).
DEFAULT_CRL_HTTP_TIMEOUT = 30.0


def crl_fetch_settings(entities: Entities) -> tuple[float, float]:
    """``(ttl, timeout)`` in seconds for the node's one CRL cache and fetcher.

    The node keeps one cache for every route, so the strictest configuration
    wins: the smallest ``cert_cache_ttl`` and the smallest ``http_timeout`` of
    the enabled plugins that check revocation; Kong's defaults otherwise.
    """
    ttls, timeouts = [], []
    for plugin in entities.plugins.values():
        if plugin.enabled and plugin.name in CRL_PLUGINS:
            ttls.append(float(plugin.config.get("cert_cache_ttl", DEFAULT_CRL_TTL * 1000)) / 1000)
            timeouts.append(float(plugin.config.get("http_timeout", DEFAULT_CRL_HTTP_TIMEOUT * 1000)) / 1000)
    return (min(ttls) if ttls else DEFAULT_CRL_TTL, min(timeouts) if timeouts else DEFAULT_CRL_HTTP_TIMEOUT)
