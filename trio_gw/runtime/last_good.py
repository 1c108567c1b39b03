"""Opening the datastore at start, or serving the last good configuration when PostgreSQL is away.

A node of a PostgreSQL cluster writes every configuration it built a
generation from to ``<prefix>/last-good-config`` (``runtime/config_cache.py``:
atomic, owner-only, private keys sealed as in the datastore).  When it *starts*
while PostgreSQL cannot be reached (``DatastoreUnreachable``: the settings may
well be right), it serves that configuration instead of refusing to start,
says ``stale`` in ``/status`` with the cache's age, and reconnects in the
background (``runtime/watch.py``).  A misconfiguration (wrong CA, missing
client certificate, wrong secret) still stops start-up: the cache covers an
outage, not a mistake.  Without a cache, an unreachable datastore stops
start-up as before.
"""

from __future__ import annotations

import logging
import time

import trio

from trio_gw.errors import ConfigError
from trio_gw.model.entities import Entities
from trio_gw.runtime.config_cache import ConfigCache, cache_source
from trio_gw.runtime.datastore import DatastoreUnreachable, open_store
from trio_gw.settings import Settings
from trio_gw.store import SealedKeyError, Store, StoreError
from trio_gw.store.config_cache import CachedConfig

__all__ = ["LastGood"]

log = logging.getLogger("trio_gw")


class LastGood:
    """The node's cache of its last good configuration (PostgreSQL only; blocking methods: worker thread).

    Args:
        settings: the node settings.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.cache: ConfigCache | None = None
        if settings.database == "postgres":
            self.cache = ConfigCache(settings.prefix, source=cache_source(settings.as_mapping()),
                                     secret=settings.private_key_encryption_secret)
        #: The cached configuration the node started from (``None``: it started from the datastore).
        self.started_from: CachedConfig | None = None
        self.written_at: int | None = None
        self._pending: tuple[Entities, int] | None = None
        self._wake = trio.Event()

    def open(self) -> tuple[Store | None, CachedConfig | None]:
        """The datastore, or — PostgreSQL unreachable — the cached configuration to serve meanwhile.

        Returns:
            ``(store, None)``; ``(None, cached)``; ``(None, None)`` for ``database: off``.

        Raises:
            ConfigError: the datastore cannot be used (naming the setting), or it is
                unreachable and there is no usable cache (both reasons given).
        """
        try:
            return open_store(self.settings), None
        except DatastoreUnreachable as exc:
            if self.cache is None:
                raise
            try:
                cached = self.cache.read()
            except (StoreError, SealedKeyError) as cache_exc:
                raise ConfigError(f"{exc.problems[0].message}; the cached configuration cannot be used either: "
                                  f"{cache_exc}", path=exc.problems[0].path) from exc
            if cached is None:
                raise ConfigError(f"{exc.problems[0].message}; and there is no cached configuration under "
                                  f"prefix to start from", path=exc.problems[0].path) from exc
            age = max(0, int(time.time()) - cached.written_at)
            log.warning("datastore unreachable at start (%s): serving the configuration cached %d s ago "
                        "(datastore version %d) until it returns", exc, age, cached.version)
            self.started_from = cached
            return None, cached

    def offer(self, entities: Entities, version: int | None) -> None:
        """Cache this configuration soon (:meth:`serve` writes the latest offered, off the write path)."""
        if self.cache is None or version is None:
            return
        self._pending = (entities, version)
        self._wake.set()

    async def serve(self) -> None:
        """Write each configuration offered (the latest one when several came meanwhile) until cancelled.

        A write is two ``fsync`` calls (``runtime/files.py``): tens of milliseconds
        that no Admin answer or reload waits for.  On cancellation the last one
        offered is still written.
        """
        try:
            while True:
                await self._wake.wait()
                self._wake = trio.Event()
                pending, self._pending = self._pending, None
                if pending is not None:
                    await trio.to_thread.run_sync(self.remember, *pending)
        finally:
            pending, self._pending = self._pending, None
            if pending is not None:
                with trio.CancelScope(shield=True):
                    await trio.to_thread.run_sync(self.remember, *pending)

    def remember(self, entities: Entities, version: int | None) -> None:
        """Cache a configuration a good generation was built from (never raises: a cache is best effort)."""
        if self.cache is None or version is None:
            return
        now = int(time.time())
        try:
            self.cache.write(entities, version=version, now=now)
        except (OSError, StoreError) as exc:
            log.warning("the last good configuration could not be cached under prefix: %s", exc)
            return
        self.written_at = now
