"""move_deadline: a phase's deadline is re-registered only when it really moves."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from trio_gw.net.deadlines import DEADLINE_SLACK, move_deadline


@pytest.fixture
def clock() -> trio.testing.MockClock:
    return trio.testing.MockClock()


async def test_the_same_timeout_a_moment_later_keeps_the_deadline(clock: trio.testing.MockClock) -> None:
    with trio.CancelScope(deadline=trio.current_time() + 60) as scope:
        first = scope.deadline
        clock.jump(0.001)
        move_deadline(scope, 60)
        assert scope.deadline == first  # within the slack: not re-registered
        clock.jump(DEADLINE_SLACK * 2)
        move_deadline(scope, 60)
        assert scope.deadline == pytest.approx(trio.current_time() + 60)  # beyond it: moved


async def test_another_timeout_moves_the_deadline(clock: trio.testing.MockClock) -> None:
    with trio.CancelScope(deadline=trio.current_time() + 60) as scope:
        move_deadline(scope, 5)
        assert scope.deadline == pytest.approx(trio.current_time() + 5)


async def test_short_timeouts_get_at_most_one_percent(clock: trio.testing.MockClock) -> None:
    """A 0.2 s timeout is never off by more than 2 ms (tests use such timeouts)."""
    with trio.CancelScope(deadline=trio.current_time() + 0.2) as scope:
        clock.jump(0.0015)
        move_deadline(scope, 0.2)
        assert scope.deadline == pytest.approx(trio.current_time() + 0.2 - 0.0015)  # kept: 1.5 ms < 2 ms
        clock.jump(0.003)
        move_deadline(scope, 0.2)
        assert scope.deadline == pytest.approx(trio.current_time() + 0.2)  # moved: 4.5 ms > 2 ms


async def test_the_deadline_still_fires(clock: trio.testing.MockClock) -> None:
    clock.autojump_threshold = 0
    with trio.CancelScope(deadline=trio.current_time() + 1) as scope:
        move_deadline(scope, 1)
        await trio.sleep(10)
    assert scope.cancelled_caught
    assert trio.current_time() == pytest.approx(1, abs=0.02)
