"""Worker processes of one node: how many, when a crashed one comes back, what ``/status`` says of them.

Theory of operation
-------------------
With ``workers`` above 1 a node is a supervisor and N worker processes, each
with its own Trio loop and its own generation (``runtime/supervisor.py`` is
the IO).  The decisions are here:

* **How many** (:func:`resolve_worker_count`): a number, or ``auto`` — the
  cores this process may run on (its CPU affinity, as nginx's ``auto``).
* **When a crashed worker comes back** (:class:`RestartPolicy`,
  :func:`after_exit`): at once the first time, then after a delay that doubles
  with every crash in a row, up to a cap; a worker that had served for
  ``stable_after`` seconds before it died starts the count again.  So a worker
  that dies of one bad request is back in ~0.1 s, and one that cannot start
  (a port taken, a file gone) does not spin a core.  The other workers serve
  meanwhile: nothing waits for a restart.
* **What is reported** (:class:`WorkerState`, :func:`workers_summary`): each
  worker's pid, the generation it serves (number and configuration hash), the
  datastore version it was built from, its open client connections and
  requests in flight, how many times its slot was restarted and why it last
  exited.  Workers report their own facts; the supervisor adds the slot's.

Time is a parameter; nothing here does IO.
"""

from __future__ import annotations

import signal
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final

__all__ = [
    "RestartPolicy",
    "SlotState",
    "WorkerState",
    "after_exit",
    "describe_exit",
    "resolve_worker_count",
    "workers_summary",
]

SECONDS: Final = 1.0


def resolve_worker_count(setting: int | None, usable_cores: int) -> int:
    """The number of worker processes.

    Args:
        setting: ``workers`` (``None``: ``auto``).
        usable_cores: the cores this process may run on (``len(os.sched_getaffinity(0))``).

    Returns:
        ``setting``, or ``usable_cores`` (at least 1) for ``auto``.
    """
    if setting is not None:
        return setting
    return max(1, usable_cores)


@dataclass(frozen=True)
class RestartPolicy:
    """Delays before a crashed worker is started again (all seconds).

    Attributes:
        initial: the delay after the second crash in a row (the first restarts at once).
        factor: growth per further crash in a row.
        maximum: the cap.
        stable_after: a worker that ran this long before it died was healthy: its crash
            counts as the first in a row.
    """

    initial: float = 0.1 * SECONDS
    factor: float = 2.0
    maximum: float = 10 * SECONDS
    stable_after: float = 10 * SECONDS

    def __post_init__(self) -> None:
        if self.initial <= 0 or self.factor < 1 or self.maximum < self.initial or self.stable_after <= 0:
            raise ValueError("restart policy: need 0 < initial <= maximum, factor >= 1, stable_after > 0")

    def delay(self, crashes_in_a_row: int) -> float:
        """The wait before starting a worker whose slot crashed ``crashes_in_a_row`` times in a row (>= 1)."""
        if crashes_in_a_row <= 1:
            return 0.0
        return min(self.maximum, self.initial * self.factor ** min(crashes_in_a_row - 2, 64))


@dataclass(frozen=True)
class SlotState:
    """One worker slot as the supervisor sees it.

    Attributes:
        index: the slot (0 … N-1); a restarted worker keeps its slot and its sockets.
        pid: the running worker's pid, or ``None`` between two workers.
        started_at: when the running worker was started (Unix seconds).
        restarts: how many times the slot was started again after its worker exited.
        crashes_in_a_row: exits without a healthy run in between (see :class:`RestartPolicy`).
        last_exit: how the previous worker ended (``exit code 1``, ``killed by SIGKILL``), or ``None``.
    """

    index: int
    pid: int | None = None
    started_at: float | None = None
    restarts: int = 0
    crashes_in_a_row: int = 0
    last_exit: str | None = None

    def started(self, pid: int, now: float) -> SlotState:
        """The slot once a worker process runs in it."""
        return replace(self, pid=pid, started_at=now)


def after_exit(state: SlotState, returncode: int, now: float, policy: RestartPolicy) -> tuple[SlotState, float]:
    """A worker exited without being asked to: the slot's new state and the delay before its restart.

    Args:
        state: the slot, with the worker that exited.
        returncode: its exit status (negative: the signal that killed it).
        now: Unix seconds.
        policy: the restart delays.

    Returns:
        The slot (no pid, one more restart, the exit described) and the seconds to wait.
    """
    ran = now - state.started_at if state.started_at is not None else 0.0
    in_a_row = 1 if ran >= policy.stable_after else state.crashes_in_a_row + 1
    after = replace(state, pid=None, started_at=None, restarts=state.restarts + 1, crashes_in_a_row=in_a_row,
                    last_exit=describe_exit(returncode))
    return after, policy.delay(in_a_row)


def describe_exit(returncode: int) -> str:
    """``exit code N`` or ``killed by SIGNAME``, from a process's return code."""
    if returncode >= 0:
        return f"exit code {returncode}"
    try:
        return f"killed by {signal.Signals(-returncode).name}"
    except ValueError:
        return f"killed by signal {-returncode}"


@dataclass(frozen=True)
class WorkerState:
    """What one worker reports about itself (over its control channel), plus its slot.

    Attributes:
        index: the slot.
        pid: the worker's pid.
        generation: the number of the generation it serves (its own count).
        configuration_hash: that generation's configuration hash (equal on every worker
            serving the same configuration).
        store_version: the datastore version it was built from (``None``: no datastore).
        installed_at: when it was installed (Unix seconds).
        connections: open client connections.
        requests_in_flight: requests being answered.
        datastore: ``ok``, ``stale`` or ``None`` (no datastore).
        reported_at: when the worker sent this (Unix seconds).
    """

    index: int
    pid: int
    generation: int | None = None
    configuration_hash: str | None = None
    store_version: int | None = None
    installed_at: float | None = None
    connections: int = 0
    requests_in_flight: int = 0
    datastore: str | None = None
    reported_at: float = 0.0
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def as_message(self) -> dict[str, Any]:
        """The JSON object a worker sends (``extra`` merged in)."""
        body = {k: getattr(self, k) for k in sorted(_FIELDS)}
        return {**dict(self.extra), **body}

    @classmethod
    def from_message(cls, message: Mapping[str, Any]) -> WorkerState:
        """Read :meth:`as_message`'s object back (unknown keys kept in ``extra``).

        Raises:
            ValueError: a missing or mistyped field.
        """
        try:
            state = cls(
                index=int(message["index"]), pid=int(message["pid"]),
                generation=_opt_int(message.get("generation")),
                configuration_hash=_opt_str(message.get("configuration_hash")),
                store_version=_opt_int(message.get("store_version")),
                installed_at=_opt_float(message.get("installed_at")),
                connections=int(message.get("connections", 0)),
                requests_in_flight=int(message.get("requests_in_flight", 0)),
                datastore=_opt_str(message.get("datastore")),
                reported_at=float(message.get("reported_at", 0.0)),
            )  # fmt: skip
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"malformed worker state: {exc!r}") from None
        return replace(state, extra={k: v for k, v in message.items() if k not in _FIELDS and k != "type"})


_FIELDS: Final = frozenset({"index", "pid", "generation", "configuration_hash", "store_version", "installed_at",
                            "connections", "requests_in_flight", "datastore", "reported_at"})


def workers_summary(slots: Iterable[SlotState], reports: Mapping[int, WorkerState], now: float) -> dict[str, Any]:
    """The ``workers`` part of ``/status``.

    Args:
        slots: every slot of the node.
        reports: the latest report of each slot's running worker, by slot.
        now: Unix seconds.

    Returns:
        ``{"count", "ready", "connections", "requests_in_flight", "same_configuration", "list": [...]}``.
    """
    listed = []
    hashes = set()
    for slot in slots:
        report = reports.get(slot.index)
        if report is not None and report.pid != slot.pid:
            report = None  # the previous worker's last word
        entry: dict[str, Any] = {"index": slot.index, "pid": slot.pid, "restarts": slot.restarts,
                                 "last_exit": slot.last_exit,
                                 "state": "ready" if report is not None else "starting" if slot.pid else "restarting"}
        if report is not None:
            hashes.add(report.configuration_hash)
            entry.update({k: v for k, v in report.as_message().items() if k not in ("index", "pid")})
            entry["report_age_seconds"] = round(max(0.0, now - report.reported_at), 3)
        listed.append(entry)
    ready = [e for e in listed if e["state"] == "ready"]
    return {
        "count": len(listed),
        "ready": len(ready),
        "connections": sum(int(e.get("connections", 0)) for e in ready),
        "requests_in_flight": sum(int(e.get("requests_in_flight", 0)) for e in ready),
        "same_configuration": len(hashes) <= 1,
        "list": listed,
    }


def _opt_int(value: object) -> int | None:
    return None if value is None else int(value)  # type: ignore[call-overload]  # ValueError/TypeError caught


def _opt_float(value: object) -> float | None:
    return None if value is None else float(value)  # type: ignore[arg-type]  # ValueError/TypeError caught


def _opt_str(value: object) -> str | None:
    return None if value is None else str(value)
