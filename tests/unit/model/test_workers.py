"""Worker processes: how many, when a crashed one restarts, what /status lists."""

from __future__ import annotations

import signal

import pytest

from trio_gw.model.workers import (
    RestartPolicy,
    SlotState,
    WorkerState,
    after_exit,
    describe_exit,
    resolve_worker_count,
    workers_summary,
)


def test_auto_is_the_usable_cores_and_a_number_is_kept() -> None:
    assert resolve_worker_count(None, 2) == 2
    assert resolve_worker_count(None, 0) == 1
    assert resolve_worker_count(3, 64) == 3


def test_the_first_crash_restarts_at_once_then_backs_off_to_a_cap() -> None:
    policy = RestartPolicy(initial=0.1, factor=2, maximum=1.0)
    assert [policy.delay(n) for n in range(1, 7)] == [0.0, 0.1, 0.2, 0.4, 0.8, 1.0]
    with pytest.raises(ValueError):
        RestartPolicy(initial=2.0, maximum=1.0)


def test_a_worker_that_served_a_while_counts_as_a_first_crash() -> None:
    policy = RestartPolicy(stable_after=10)
    slot = SlotState(1).started(100, now=1000.0)
    slot, delay = after_exit(slot, -signal.SIGKILL, now=1001.0, policy=policy)
    assert (slot.pid, slot.restarts, slot.crashes_in_a_row, slot.last_exit, delay) == (
        None, 1, 1, "killed by SIGKILL", 0.0)
    slot, delay = after_exit(slot.started(101, now=1001.0), 1, now=1001.5, policy=policy)
    assert (slot.crashes_in_a_row, delay, slot.last_exit) == (2, policy.initial, "exit code 1")
    slot, delay = after_exit(slot.started(102, now=1002.0), 1, now=1100.0, policy=policy)  # ran 98 s
    assert (slot.restarts, slot.crashes_in_a_row, delay) == (3, 1, 0.0)


def test_exits_are_described_by_code_or_signal() -> None:
    assert describe_exit(0) == "exit code 0"
    assert describe_exit(-15) == "killed by SIGTERM"
    assert describe_exit(-200) == "killed by signal 200"


def test_a_state_goes_over_the_channel_and_back() -> None:
    state = WorkerState(index=1, pid=42, generation=3, configuration_hash="abc", store_version=7, installed_at=1.5,
                        connections=2, requests_in_flight=1, datastore="ok", reported_at=2.0,
                        extra={"connections_accepted": 9})
    back = WorkerState.from_message({"type": "state", **state.as_message()})
    assert back == state and back.extra == {"connections_accepted": 9}
    with pytest.raises(ValueError, match="malformed worker state"):
        WorkerState.from_message({"index": 1})
    with pytest.raises(ValueError, match="malformed worker state"):
        WorkerState.from_message({"index": 1, "pid": 2, "generation": "three"})


def test_the_summary_lists_every_slot_and_ignores_a_dead_workers_last_report() -> None:
    slots = [SlotState(0, pid=10, restarts=0), SlotState(1, pid=None, restarts=2, last_exit="exit code 1"),
             SlotState(2, pid=12)]
    reports = {0: WorkerState(0, 10, generation=1, configuration_hash="h", connections=3, requests_in_flight=1,
                              reported_at=99.0),
               2: WorkerState(2, 11, generation=1, configuration_hash="old")}  # pid 11 is gone; 12 starts
    summary = workers_summary(slots, reports, now=100.0)
    assert [w["state"] for w in summary["list"]] == ["ready", "restarting", "starting"]
    assert (summary["count"], summary["ready"], summary["connections"], summary["requests_in_flight"]) == (3, 1, 3, 1)
    assert summary["same_configuration"] is True and summary["list"][0]["report_age_seconds"] == 1.0
    assert summary["list"][1]["restarts"] == 2 and summary["list"][1]["last_exit"] == "exit code 1"
    split = workers_summary([SlotState(0, pid=1), SlotState(1, pid=2)],
                            {0: WorkerState(0, 1, configuration_hash="a"), 1: WorkerState(1, 2, configuration_hash="b")},
                            now=0.0)
    assert split["same_configuration"] is False
