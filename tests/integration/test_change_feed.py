"""Change feeds against real datastores: a private PostgreSQL killed and restarted, SQLite across processes."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from trio_gw.model.entities import Entities, Service
from trio_gw.runtime.datastore import conninfo_string
from trio_gw.store.feed import Backoff, Changed, FeedEvent, Lost, PostgresChangeFeed, Resync, SqliteChangeFeed
from trio_gw.store.postgres import PostgresStore
from trio_gw.store.sqlite import SqliteStore
from trio_gw.testing.postgres import PostgresServer

from .conftest_postgres import PgPki

pytestmark = pytest.mark.postgres

FAST = Backoff(initial=0.05, factor=2, maximum=0.5, jitter=0.2)


def services(n: int) -> Entities:
    return Entities(services={f"s{i}": Service(id=f"s{i}", name=f"s{i}", host="up.example") for i in range(n)})


def wait_for(feed: PostgresChangeFeed | SqliteChangeFeed, kind: type, budget: float = 15.0) -> list[FeedEvent]:
    """Events until one of ``kind`` (bounded by the feed's own timeouts: 0.5 s at a time, ``budget`` in all)."""
    seen: list[FeedEvent] = []
    for _ in range(int(budget / 0.5)):
        event = feed.next_event(0.5)
        if event is not None:
            seen.append(event)
            if isinstance(event, kind):
                return seen
    pytest.fail(f"no {kind.__name__} event; saw {seen}")


@pytest.fixture
def schema() -> str:
    return f"feed_{uuid.uuid4().hex[:10]}"


@pytest.fixture
def feed_on() -> Iterator[list[PostgresChangeFeed]]:
    """The test's feeds, closed afterwards."""
    feeds: list[PostgresChangeFeed] = []
    yield feeds
    for f in feeds:
        f.close()


def test_notifications_arrive_as_versions(private_postgres: PostgresServer, schema: str,
                                          feed_on: list[PostgresChangeFeed]) -> None:  # fmt: skip
    store = PostgresStore.open(private_postgres.conninfo(), secret=None, schema=schema)
    feed = PostgresChangeFeed(private_postgres.conninfo(), backoff=FAST)
    feed_on.append(feed)
    try:
        assert wait_for(feed, Resync) == [Resync("listening for changes")]
        version = store.commit(store.load(), services(1))
        assert wait_for(feed, Changed)[-1] == Changed(version)
        state = store.load()
        last = 0
        for n in range(2, 7):  # a burst: coalesced, never lost
            state_new = services(n)
            last = store.commit(state, state_new)
            state = state_new
        got: list[FeedEvent] = []
        while not got or got[-1] != Changed(last):
            got += wait_for(feed, Changed)
        assert all(isinstance(e, Changed) for e in got) and len(got) <= 5
    finally:
        store.close()


def test_a_killed_server_is_reported_once_and_the_feed_resyncs_after_the_restart(
    fresh_postgres: PostgresServer, schema: str, feed_on: list[PostgresChangeFeed]
) -> None:
    pg = fresh_postgres
    feed = PostgresChangeFeed(pg.conninfo(connect_timeout=2), backoff=FAST, heartbeat=1.0)
    feed_on.append(feed)
    wait_for(feed, Resync)
    pg.kill()  # kill -9: the connection drops without a goodbye
    lost = wait_for(feed, Lost)
    assert len(lost) == 1 and isinstance(lost[0], Lost)
    for _ in range(6):  # down for a while: retries with backoff, silently
        assert feed.next_event(0.5) is None
    pg.start()  # same port
    after = wait_for(feed, Resync)
    assert [type(e) for e in after] == [Resync]
    resync = after[0]
    assert isinstance(resync, Resync) and resync.reason.startswith("reconnected after ")
    store = PostgresStore.open(pg.conninfo(), secret=None, schema=schema)
    try:
        version = store.commit(store.load(), services(1))
        assert wait_for(feed, Changed)[-1] == Changed(version)  # and it goes on
    finally:
        store.close()


def test_a_cleanly_stopped_server_is_the_same_story(
    fresh_postgres: PostgresServer, feed_on: list[PostgresChangeFeed]
) -> None:
    feed = PostgresChangeFeed(fresh_postgres.conninfo(connect_timeout=2), backoff=FAST)
    feed_on.append(feed)
    wait_for(feed, Resync)
    fresh_postgres.stop()
    assert isinstance(wait_for(feed, Lost)[-1], Lost)
    fresh_postgres.start()
    assert isinstance(wait_for(feed, Resync)[-1], Resync)


def test_the_feed_listens_over_mutual_tls(tls_postgres: PostgresServer, pg_pki: PgPki, schema: str,
                                          feed_on: list[PostgresChangeFeed]) -> None:  # fmt: skip
    info = conninfo_string({
        "host": tls_postgres.host, "port": str(tls_postgres.port), "dbname": "test", "user": "test",
        "sslmode": "verify-full", "sslrootcert": str(pg_pki.ca_file), "sslcert": str(pg_pki.client_cert),
        "sslkey": str(pg_pki.client_key),
    })  # fmt: skip
    feed = PostgresChangeFeed(info, backoff=FAST)
    feed_on.append(feed)
    wait_for(feed, Resync)
    store = PostgresStore.open(info, secret=None, schema=schema)
    try:
        version = store.commit(store.load(), services(1))
        assert wait_for(feed, Changed)[-1] == Changed(version)
    finally:
        store.close()


# -- SQLite ------------------------------------------------------------------------------

_WRITER = """
import sys
from trio_gw.model.entities import Entities, Service
from trio_gw.store.sqlite import SqliteStore
store = SqliteStore.open(sys.argv[1], secret=None)
print(store.commit(store.load(), Entities(services={"s": Service(id="s", name="s", host="h")})))
"""


def test_sqlite_changes_by_another_process_are_noticed(tmp_path: Path) -> None:
    path = tmp_path / "trio-gw.db"
    SqliteStore.open(path, secret=None).close()
    feed = SqliteChangeFeed(path, interval=0.02)
    try:
        assert feed.next_event(0) == Resync("watching the datastore")
        assert feed.next_event(0.1) is None  # nothing changed: nothing reported
        version = int(subprocess.run([sys.executable, "-c", _WRITER, str(path)], capture_output=True, text=True,
                                     check=True, timeout=60).stdout)  # fmt: skip
        assert feed.next_event(2.0) == Changed(version)  # bounded by the feed's own timeout, polled every 20 ms
        assert feed.next_event(0.1) is None
    finally:
        feed.close()


def test_an_unreadable_sqlite_file_is_lost_once_then_resynced(tmp_path: Path) -> None:
    path = tmp_path / "trio-gw.db"
    feed = SqliteChangeFeed(path, interval=0.01)
    try:
        event = feed.next_event(0.05)
        assert isinstance(event, Lost) and "unable to open" in event.error
        assert feed.next_event(0.05) is None  # said once
        SqliteStore.open(path, secret=None).close()
        assert feed.next_event(0.5) == Resync("the datastore is readable again")
    finally:
        feed.close()
