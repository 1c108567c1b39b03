"""Every process of a node settles its cyclic collector once it serves (``runtime/heap.py``).

A real ``trio-gw run`` with two workers: the supervisor and both workers say so, at debug level.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from trio_gw.runtime.heap import YOUNG_THRESHOLD


def _run_until_ready(tmp_path: Path, **settings: object) -> str:
    """Start ``trio-gw run``, wait for its ready file, stop it with SIGTERM; its stderr."""
    conf = tmp_path / "gw.yaml"
    conf.write_text(yaml.safe_dump({"prefix": str(tmp_path / "data"), "proxy_listen": "127.0.0.1:0",
                                    "admin_listen": "off", "status_listen": "off", "database": "off",
                                    "log_level": "debug", **settings}))
    proc = subprocess.Popen([sys.executable, "-m", "trio_gw", "run", "-c", str(conf)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    ready = tmp_path / "data" / "trio-gw.ready.json"
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the node did not become ready"
            time.sleep(0.05)
        assert json.loads(ready.read_text())["pid"] == proc.pid
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    return err


def test_the_supervisor_and_each_worker_settle(tmp_path: Path) -> None:
    err = _run_until_ready(tmp_path, workers=2)
    settled = [line for line in err.splitlines() if "cyclic collector settled" in line]
    assert len(settled) == 3, err
    assert all(f"young threshold {YOUNG_THRESHOLD}" in line for line in settled)
    assert sum("worker" in line for line in settled) == 2, settled


def test_a_single_process_node_settles(tmp_path: Path) -> None:
    err = _run_until_ready(tmp_path)
    assert err.count("cyclic collector settled") == 1, err
