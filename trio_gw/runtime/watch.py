"""The reload loop of a node with a datastore: change feeds first, polling as the fallback, never dying.

Theory of operation
-------------------
A write made by another node or process must be served by every worker of
every node within 100 ms (issue 14).  Each process follows the datastore's
**change feed** (``trio_gw.store.feed``) in a worker thread:

* PostgreSQL: ``LISTEN`` on a connection of its own — every commit notifies
  its version, so a change arrives in about a millisecond;
* SQLite: ``PRAGMA data_version`` polled every 20 ms on a read-only
  connection (p99 20 ms, measured in ``tools/measure_sqlite_feed.py``).

What each event means: a newer version reloads (``Changed.wants_reload``);
listening again after a reconnect always reloads — NOTIFY has no replay, and
a reload also re-reads the session-ticket ring — while the first listen
reloads only if something was committed since the start-up load; a lost feed
marks the node ``stale`` and it keeps serving its last generation while the
feed reconnects with backoff.

**Polling stays as the fallback**: every ``db_update_frequency`` the version is
read; a difference reloads, a failure is counted (backing off up to
:data:`MAX_STORE_BACKOFF`).  It catches what a feed could miss (a notification
swallowed by a connection pooler, a feed that cannot listen) and is how a node
notices that a failing datastore works again.  Neither path raises: a node
never exits because of its datastore (``tests/integration/test_datastore_faults.py``).

A node that **started from its local cache** (the datastore was unreachable)
first reconnects here, with :class:`~trio_gw.store.feed.Backoff`; once the
datastore answers it reloads from it (the version decides) and follows it as
any other node.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from typing import TYPE_CHECKING, Final, Protocol

import trio

from trio_gw.errors import ConfigError
from trio_gw.runtime.datastore import DatastoreUnreachable, open_store, postgres_conninfo, sqlite_path
from trio_gw.runtime.logs import NOTICE
from trio_gw.store import StoreError
from trio_gw.store.feed import Backoff, FeedEvent, Lost, PostgresChangeFeed, Resync, SqliteChangeFeed

if TYPE_CHECKING:
    from trio_gw.runtime.gateway import Gateway

__all__ = ["MAX_STORE_BACKOFF", "keep_datastore"]

log = logging.getLogger("trio_gw")

#: While the datastore fails, fallback polls back off up to this (seconds).
MAX_STORE_BACKOFF: Final = 30.0
#: How long one wait for a feed event lasts in its thread (seconds): bounds how late a stop is seen.
FEED_WAIT: Final = 0.5
#: Reconnection of a node that started without its datastore.
RECONNECT = Backoff(initial=0.2, factor=2.0, maximum=10.0, jitter=0.2)


class ChangeFeed(Protocol):
    """What :mod:`trio_gw.store.feed`'s feeds offer."""

    def next_event(self, timeout: float) -> FeedEvent | None: ...

    def close(self) -> None: ...


class FeedState:
    """How the feed is doing, for ``/status``."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.listening = False
        self.events = 0
        self.reconnects = 0
        self.last_event_at: float | None = None

    def describe(self) -> dict[str, object]:
        return {"kind": self.kind, "listening": self.listening, "events": self.events,
                "reconnects": self.reconnects}


async def keep_datastore(gw: Gateway) -> None:
    """Follow the node's datastore until cancelled (reconnecting first if the node started without it).

    Never raises because of the datastore.
    """
    if gw.store is None:
        if not await _reconnect(gw):
            return
        await gw.reload()
    feed = await trio.to_thread.run_sync(_open_feed, gw)
    gw.feed = FeedState("postgres" if gw.settings.database == "postgres" else "sqlite")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_follow, gw, feed)
        nursery.start_soon(_poll, gw)


def _open_feed(gw: Gateway) -> ChangeFeed:
    if gw.settings.database == "postgres":
        from trio_gw.store.postgres import CHANNEL

        return PostgresChangeFeed(postgres_conninfo(gw.settings), channel=CHANNEL)
    return SqliteChangeFeed(sqlite_path(gw.settings))


async def _reconnect(gw: Gateway) -> bool:
    """Open the datastore of a node that started from its cache; whether it is open (False: misconfigured)."""
    attempt = 0
    while True:
        await trio.sleep(RECONNECT.delay(attempt, random.random()))
        attempt += 1
        try:
            store = await trio.to_thread.run_sync(open_store, gw.settings)
        except DatastoreUnreachable as exc:
            gw.datastore.failed(exc, time.time())
            continue
        except ConfigError as exc:
            # reachable now, but refusing this node (a rotated secret, a changed certificate): say so, keep serving
            log.error("the datastore answers but cannot be used, still serving the cached configuration: %s", exc)
            gw.datastore.failed(exc, time.time())
            continue
        gw.store = store
        log.log(NOTICE, "datastore reachable: leaving the cached configuration")
        await gw.tickets.try_sync(store)
        return True


async def _follow(gw: Gateway, feed: ChangeFeed) -> None:
    lock = threading.Lock()
    try:
        while True:
            event = await trio.to_thread.run_sync(_next_event, feed, lock, abandon_on_cancel=True)
            if event is None:
                continue
            gw.feed.events += 1
            gw.feed.last_event_at = time.time()
            if isinstance(event, Lost):
                gw.feed.listening = False
                gw.datastore.failed(StoreError(f"the change feed lost the datastore: {event.error}"), time.time())
                continue
            if isinstance(event, Resync):
                reconnected = gw.feed.events > 1
                if reconnected:
                    gw.feed.reconnects += 1
                gw.feed.listening = True
                # NOTIFY has no replay: every reconnect reloads (and re-reads the ticket ring); the first
                # listen only if something was committed between the start-up load and now.
                await _reload_if_moved(gw, force=reconnected or not gw.datastore.reachable)
                continue
            if event.wants_reload(gw.generation.store_version):
                await gw.reload()
    finally:
        # The thread may still be waiting in next_event: close the feed once it returns.
        threading.Thread(target=_close_when_idle, args=(feed, lock), name="trio-gw feed close", daemon=True).start()


def _next_event(feed: ChangeFeed, lock: threading.Lock) -> FeedEvent | None:
    with lock:
        return feed.next_event(FEED_WAIT)


def _close_when_idle(feed: ChangeFeed, lock: threading.Lock) -> None:
    with lock:
        feed.close()


async def _reload_if_moved(gw: Gateway, *, force: bool) -> None:
    store = gw.store
    assert store is not None
    try:
        version = await trio.to_thread.run_sync(store.version)
    except StoreError as exc:
        gw.datastore.failed(exc, time.time())
        return
    if force or version != gw.generation.store_version:
        await gw.reload()


async def _poll(gw: Gateway) -> None:
    """Kong's ``db_update_frequency``: the fallback that notices anything the feed missed, and recoveries."""
    store = gw.store
    assert store is not None
    while True:
        health = gw.datastore
        delay = max(gw.settings.db_update_frequency, 0.01)
        if health.failures:
            delay = min(MAX_STORE_BACKOFF, delay * 2 ** min(health.failures, 16))
        await trio.sleep(delay)
        try:
            version = await trio.to_thread.run_sync(store.version)
        except StoreError as exc:
            health.failed(exc, time.time())
            continue
        if version != gw.generation.store_version or not health.reachable:
            await gw.reload()
        else:
            health.recovered(time.time())
