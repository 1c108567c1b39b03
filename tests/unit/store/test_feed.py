"""store.feed without a server: backoff, once-per-outage reporting, resync after reconnect, coalescing."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg
import pytest

from trio_gw.store.feed import Backoff, Changed, Lost, PostgresChangeFeed, Resync


def test_backoff_grows_caps_and_jitters_downwards() -> None:
    b = Backoff(initial=0.1, factor=2, maximum=1.0, jitter=0.5)
    assert [b.delay(n, 0.0) for n in range(6)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    assert b.delay(3, 0.999) == pytest.approx(0.8 * (1 - 0.5 * 0.999))
    assert b.delay(10_000, 0.0) == 1.0  # no overflow


@pytest.mark.parametrize("kwargs", [{"initial": 0}, {"factor": 0.5}, {"maximum": 0.01}, {"jitter": 1.0}])
def test_backoff_is_validated(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Backoff(**kwargs)


@dataclass
class Notify:
    payload: str


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


CLOCK = Clock()


@dataclass
class FakeConn:
    """What the feed uses of a psycopg connection; an empty wait takes its whole timeout on ``CLOCK``."""

    pending: list[str] = field(default_factory=list)
    broken: bool = False
    executed: list[bytes] = field(default_factory=list)
    closed: bool = False

    def execute(self, sql: bytes) -> None:
        if self.broken:
            raise psycopg.OperationalError("server closed the connection unexpectedly")
        self.executed.append(sql)

    def notifies(self, *, timeout: float, stop_after: int | None = None) -> Iterator[Notify]:
        if self.broken:
            raise psycopg.OperationalError("consuming input failed: server closed the connection unexpectedly")
        take = self.pending[: stop_after or len(self.pending)]
        del self.pending[: len(take)]
        if not take:
            CLOCK.sleep(timeout)
        yield from (Notify(p) for p in take)

    def close(self) -> None:
        self.closed = True


def feed_with(connects: list[Any], clock: Clock) -> PostgresChangeFeed:
    def connect(conninfo: str, **_: object) -> FakeConn:
        item = connects.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    return PostgresChangeFeed("host=x", connect=connect, clock=clock, sleep=clock.sleep, draw=lambda: 0.0,
                              backoff=Backoff(initial=1, factor=2, maximum=8, jitter=0.2), heartbeat=30)  # fmt: skip


def test_first_listen_is_a_resync_then_notifications_are_coalesced_to_the_highest() -> None:
    clock, conn = CLOCK, FakeConn()
    feed = feed_with([conn], clock)
    assert feed.next_event(1) == Resync("listening for changes")
    assert conn.executed == [b"LISTEN trio_gw_changes"]
    conn.pending += ["7", "9", "8"]
    assert feed.next_event(1) == Changed(9)
    assert feed.next_event(1) is None
    conn.pending.append("not a number")
    assert feed.next_event(1) == Changed(None)  # still a change: reload


def test_an_outage_is_reported_once_retried_with_backoff_and_ends_with_a_resync() -> None:
    clock, first, second = CLOCK, FakeConn(), FakeConn()
    refused = psycopg.OperationalError('connection failed: connection to server at "x", port 1 failed: '
                                       "Connection refused\n\tIs the server running")  # fmt: skip
    feed = feed_with([first, refused, refused, refused, second], clock)
    assert isinstance(feed.next_event(1), Resync)
    first.broken = True
    lost = feed.next_event(1)
    assert lost == Lost("server closed the connection unexpectedly", 1.0)
    assert first.closed and not feed.connected
    started = clock.now
    events = [feed.next_event(10) for _ in range(4)]
    assert events[:3] == [None, None, None]  # refused three times: said once, not once per attempt
    assert events[3] == Resync("reconnected after 15.0 s")  # 1 + 2 + 4 + 8 s of backoff
    assert clock.now - started == pytest.approx(15.0) and feed.connected


def test_a_first_connection_failure_is_lost_then_the_first_success_is_listening() -> None:
    clock = CLOCK
    feed = feed_with([psycopg.OperationalError("timeout expired"), FakeConn()], clock)
    assert feed.next_event(0.5) == Lost("timeout expired", 1.0)
    assert feed.next_event(0.5) is None  # the retry is not due yet: waited out the timeout only
    assert feed.next_event(5) == Resync("listening for changes")


def test_a_silent_connection_is_probed_after_the_heartbeat() -> None:
    clock, conn, other = CLOCK, FakeConn(), FakeConn()
    feed = feed_with([conn, other], clock)
    feed.next_event(0)

    def silent(*, timeout: float, stop_after: int | None = None) -> Iterator[Notify]:
        clock.now += timeout  # waited the whole time, nothing came
        yield from ()

    conn.notifies = silent  # type: ignore[method-assign]
    assert feed.next_event(29) is None and conn.executed == [b"LISTEN trio_gw_changes"]
    conn.broken = True  # a partition: only a probe can tell
    assert isinstance(feed.next_event(5), Lost)


def test_a_closed_feed_refuses_to_wait() -> None:
    clock, conn = CLOCK, FakeConn()
    feed = feed_with([conn], clock)
    feed.next_event(0)
    feed.close()
    feed.close()
    assert conn.closed
    with pytest.raises(RuntimeError):
        feed.next_event(1)


def test_the_channel_must_be_an_identifier() -> None:
    with pytest.raises(ValueError):
        PostgresChangeFeed("host=x", channel="x; DROP TABLE")


def test_a_change_is_news_only_when_newer_than_what_is_served() -> None:
    assert Changed(5).wants_reload(4)
    assert not Changed(5).wants_reload(5)
    assert not Changed(4).wants_reload(5)  # arrived after a reload read past it
    assert Changed(None).wants_reload(5)  # no version in the notification: reload to be sure
    assert Changed(3).wants_reload(None)  # serving the declarative file or nothing known yet
