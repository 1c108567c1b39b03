"""Every process of a node settles its cyclic collector once it serves (``runtime/heap.py``).

A real ``trio-gw run``: the supervisor and both workers say so at debug level, as does a
single-process node.
"""

from __future__ import annotations

from pathlib import Path

from trio_gw.runtime.heap import YOUNG_THRESHOLD

from .processes import Node

SETTINGS = {"admin_listen": "off", "status_listen": "off", "database": "off", "log_level": "debug"}


def _settled(directory: Path, **settings: object) -> list[str]:
    """Start a node, wait for its ready file, stop it: its log lines about the collector."""
    node = Node(directory, {**SETTINGS, **settings})
    returncode = node.stop()
    log = (directory / "stderr.log").read_text()
    assert returncode == 0, log
    return [line for line in log.splitlines() if "cyclic collector settled" in line]


def test_the_supervisor_and_each_worker_settle(tmp_path: Path) -> None:
    settled = _settled(tmp_path, workers=2)
    assert len(settled) == 3, settled
    assert all(f"young threshold {YOUNG_THRESHOLD}" in line for line in settled)
    assert sum("worker" in line for line in settled) == 2, settled


def test_a_single_process_node_settles(tmp_path: Path) -> None:
    assert len(_settled(tmp_path)) == 1
