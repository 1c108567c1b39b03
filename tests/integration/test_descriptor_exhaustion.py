"""A node out of file descriptors keeps running, says so without flooding its log, and serves again.

The gateway runs as a process whose descriptor limit (``RLIMIT_NOFILE``) is
lowered, once it is ready, to a few dozen above what it holds (``prlimit``).
Idle client connections take the rest: ``accept`` then fails with ``EMFILE``
while the kernel keeps completing new connections into the listen queue.  The
node must not exit or spin, must log the condition at most once per interval
(not once per retry), must answer a request on a connection it had accepted
before with 502 when that request needs an upstream connection it cannot open,
and once the idle clients leave it accepts what queued meanwhile and serves.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import trio
import yaml

from .conftest import Upstream

HEADROOM = 40  # descriptors above what the node holds once it is ready
HOLD = 3.0  # seconds the node stays out of descriptors


def _get(port: int, path: str = "/anything", timeout: float = 5.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data


def _open_descriptors(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def test_a_node_out_of_descriptors_recovers_and_logs_once_per_interval(tmp_path: Path, upstream: Upstream) -> None:
    # The echo upstream runs on this test's event loop; the node and its clients block, in a thread.
    await trio.to_thread.run_sync(_out_of_descriptors, tmp_path, upstream.url)


def _out_of_descriptors(tmp_path: Path, upstream_url: str) -> None:
    # Two services on the same echo server: "fresh" is never used before the node runs out, so no
    # pooled upstream connection can serve it then.
    fresh_url = upstream_url.replace("127.0.0.1", "localhost")
    declarative = {"_format_version": "3.0",
                   "services": [{"name": "s", "url": upstream_url, "routes": [{"name": "r", "paths": ["/"]}]},
                                {"name": "fresh", "url": fresh_url, "routes": [{"name": "f", "paths": ["/fresh"]}]}]}
    (tmp_path / "kong.yaml").write_text(yaml.safe_dump(declarative))
    settings = {"prefix": str(tmp_path / "data"), "proxy_listen": "127.0.0.1:0", "admin_listen": "off",
                "status_listen": "off", "database": "off", "declarative_config": str(tmp_path / "kong.yaml"),
                "proxy_access_log": "off"}
    (tmp_path / "gw.yaml").write_text(yaml.safe_dump(settings))
    stderr = open(tmp_path / "stderr.log", "w+")
    proc = subprocess.Popen([sys.executable, "-m", "trio_gw", "run", "-c", str(tmp_path / "gw.yaml")],
                            stdout=subprocess.DEVNULL, stderr=stderr)
    clients: list[socket.socket] = []
    try:
        ready = tmp_path / "data" / "trio-gw.ready.json"
        deadline = time.monotonic() + 30
        while not ready.exists():
            assert proc.poll() is None, (tmp_path / "stderr.log").read_text()
            assert time.monotonic() < deadline, "not ready"
            time.sleep(0.05)
        port = json.loads(ready.read_text())["listeners"]["proxy"][0]["port"]
        assert b" 200 " in _get(port)
        # Lower the node's limit to what it holds plus some headroom (prlimit(2) on the running process).
        established = socket.create_connection(("127.0.0.1", port), timeout=10)
        clients.append(established)
        held = _open_descriptors(proc.pid) + 1  # with the established one's descriptor in the node
        subprocess.run(["prlimit", f"--pid={proc.pid}", f"--nofile={held + HEADROOM}:{held + HEADROOM}"], check=True)
        for _ in range(HEADROOM + 30):  # the last 30 or so wait in the listen queue
            clients.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        time.sleep(HOLD)
        assert proc.poll() is None, "the node exited when it ran out of descriptors"
        # A connection accepted before still gets an answer when its request needs a new upstream
        # connection, for which there is no descriptor.
        established.sendall(b"GET /fresh HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = established.recv(65536)
        assert answer.startswith(b"HTTP/1.1 502 ") and b"upstream_connect_failed" in answer, answer
        cpu = _cpu_seconds(proc.pid)
        time.sleep(1.0)
        assert _cpu_seconds(proc.pid) - cpu < 0.5, "the node spins while it cannot accept"
        for sock in clients:
            sock.close()
        clients.clear()
        assert b" 200 " in _get(port, timeout=10)  # accepting and serving again
        assert b" 200 " in _get(port, "/fresh")  # the service that had no descriptor works
        assert proc.poll() is None
    finally:
        for sock in clients:
            sock.close()
        proc.terminate()
        proc.wait(timeout=20)
        stderr.close()
    log = (tmp_path / "stderr.log").read_text()
    failed = [line for line in log.splitlines() if "accept failed" in line]
    assert len(failed) == 1, failed  # once per interval, not once per retry (every 50 ms: ~80 lines)
    assert "Too many open files" in failed[0] and "(1 failed accept(s) since the last report" in failed[0]
    again = [line for line in log.splitlines() if "accepting again" in line]
    assert len(again) == 1 and "not reported" in again[0], again
    # the 502's cause is in the error log (out of descriptors, even resolving localhost fails)
    assert "[WARNING] trio_gw.proxy: upstream connection failed: reason=upstream_connect_failed upstream=localhost:" in log


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="prlimit(2) and /proc are Linux's")
