"""Measure how fast worker processes notice a SQLite datastore change, and what the watching costs.

    .venv/bin/python tools/measure_sqlite_feed.py [--changes 50] [--interval 0.02]

A writer process commits ``--changes`` changes to a fresh datastore at random
moments; this process watches with ``trio_gw.store.feed.SqliteChangeFeed`` and
prints the detection latency (commit → event, p50/p99) and the CPU cost of one
poll when nothing changes.  A few seconds on one core; not part of the tests.
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import tempfile
import time
from pathlib import Path

from trio_gw.model.entities import Entities, Service
from trio_gw.store.feed import Changed, SqliteChangeFeed
from trio_gw.store.sqlite import SqliteStore


def writer(path: str, changes: int, commits: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    import random

    store = SqliteStore.open(path, secret=None)
    state = store.load()
    for i in range(changes):
        time.sleep(random.uniform(0.03, 0.12))
        new = Entities(services={f"s{i}": Service(id=f"s{i}", name=f"s{i}", host="up.example")})
        version = store.commit(state, new)
        commits.put((version, time.time()))
        state = new
    store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--changes", type=int, default=50)
    parser.add_argument("--interval", type=float, default=0.02)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as d:
        path = str(Path(d) / "trio-gw.db")
        SqliteStore.open(path, secret=None).close()
        feed = SqliteChangeFeed(path, interval=args.interval)
        feed.next_event(0)  # Resync: start watching
        polls, cpu = 200, time.process_time()
        for _ in range(polls):
            feed.next_event(0)
        per_poll = (time.process_time() - cpu) / polls
        commits: multiprocessing.Queue = multiprocessing.Queue()  # type: ignore[type-arg]
        proc = multiprocessing.Process(target=writer, args=(path, args.changes, commits))
        proc.start()
        seen: dict[int, float] = {}
        while len(seen) < args.changes and (proc.is_alive() or len(seen) < args.changes):
            event = feed.next_event(1.0)
            if isinstance(event, Changed) and event.version is not None:
                seen[event.version] = time.time()
            if not proc.is_alive() and event is None:
                break
        proc.join()
        committed = dict(commits.get() for _ in range(args.changes))
        # a change is noticed when its version or a later one is (changes within one poll coalesce)
        noticed = {v: min((at for w, at in seen.items() if w >= v), default=None) for v in committed}
        latencies = sorted((at - committed[v]) * 1000 for v, at in noticed.items() if at is not None)
        feed.close()
    p99 = latencies[max(0, round(0.99 * len(latencies)) - 1)]
    print(f"interval {args.interval * 1000:.0f} ms: {len(latencies)}/{args.changes} changes noticed; latency "
          f"p50 {statistics.median(latencies):.1f} ms, p99 {p99:.1f} ms, max {latencies[-1]:.1f} ms; "
          f"one idle poll {per_poll * 1e6:.1f} µs CPU ({per_poll / args.interval * 100:.3f} % of a core)")


if __name__ == "__main__":
    main()
