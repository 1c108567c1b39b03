"""Worker processes (``workers: 2``): a supervisor, two Trio loops, one node to the outside.

Real processes (``python -m trio_gw run``): the supervisor binds the proxy
listeners and serves the Admin API and status once; each worker builds its own
generation.  Checked here: both workers serve and are listed in ``/status``;
counts in ``/metrics`` are the sum of both; SIGHUP reloads every worker; a
killed worker is restarted while the other serves; SIGTERM drains every worker
and the node exits 0; a worker never outlives its supervisor; the access log's
lines arrive whole from both workers.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import yaml

from .cluster_tools import Load, call, status, upstream, wait_for
from .processes import Node, nodes  # noqa: F401  (fixture)


def declarative(path: Path, url: str, *routes: str) -> None:
    path.write_text(yaml.safe_dump({"_format_version": "3.0", "services": [
        {"name": "echo", "url": url, "routes": [{"name": r.strip("/"), "paths": [r]} for r in routes]}]}))


def workers_of(node: Node) -> list[dict[str, Any]]:
    return list(status(node)["workers"]["list"])


def ready_workers(node: Node, count: int = 2) -> list[dict[str, Any]]:
    def ready() -> list[dict[str, Any]] | None:
        listed = [w for w in workers_of(node) if w["state"] == "ready"]
        return listed if len(listed) == count else None

    return list(wait_for(ready, "workers ready"))


def test_two_workers_serve_one_node_listed_in_status_and_counted_together(tmp_path: Path, nodes: list[Node]) -> None:
    with upstream() as url:
        kong = tmp_path / "kong.yaml"
        declarative(kong, url, "/api")
        node = Node(tmp_path / "n", {"database": "off", "declarative_config": str(kong), "workers": 2,
                                     "proxy_listen": "127.0.0.1:0 reuseport"})
        nodes.append(node)
        listed = ready_workers(node)
        pids = {w["pid"] for w in listed}
        assert len(pids) == 2 and node.proc.pid not in pids
        assert {w["configuration_hash"] for w in listed} == {status(node)["configuration_hash"]}
        assert all(w["restarts"] == 0 for w in listed)
        for i in range(60):  # a new connection each: SO_REUSEPORT spreads them by a hash of the client port
            assert call(node.proxy_port, "GET", f"/api/{i}")[0] == 200
        counts = wait_for(lambda: [w["connections_accepted"] for w in workers_of(node)]
                          if sum(w["connections_accepted"] for w in workers_of(node)) >= 60 else None, "reports")
        assert all(c > 0 for c in counts), counts  # both workers served

        def scraped() -> tuple[str, list[str]] | None:
            # A worker flushes its request counts when it reports; a report can fall between the 60th
            # connection's accept (counted above) and the end of its request, so poll for the sum.
            code, text = call(node.status_port, "GET", "/metrics")
            assert code == 200
            lines = text.splitlines()
            return (text, lines) if 'trio_gw_requests_total{reason="",status="2xx"} 60.0' in lines else None

        text, lines = wait_for(scraped, "both workers' 60 requests in /metrics")  # the sum of both workers
        assert any(line.startswith("kong_http_requests_total{") and line.endswith(" 60.0") for line in lines), text
        handled = [line for line in lines if line.startswith("kong_nginx_connections_total{")
                   and 'state="handled"' in line]
        assert handled and float(handled[0].split()[-1]) >= 60  # both workers' connections (and the scrapes')
        assert 'trio_gw_workers{state="ready"} 2.0' in lines
        assert any(line.startswith('trio_gw_worker_restarts_total{worker="1"} 0.0') for line in lines)


def test_sighup_reloads_every_worker(tmp_path: Path, nodes: list[Node]) -> None:
    with upstream() as url:
        kong = tmp_path / "kong.yaml"
        declarative(kong, url, "/old")
        node = Node(tmp_path / "n", {"database": "off", "declarative_config": str(kong), "workers": 2})
        nodes.append(node)
        before = {w["configuration_hash"] for w in ready_workers(node)}
        declarative(kong, url, "/old", "/new")
        node.proc.send_signal(signal.SIGHUP)
        def reloaded() -> set[str] | None:
            hashes = {w.get("configuration_hash") for w in workers_of(node)}
            return hashes if len(hashes) == 1 and not hashes & before else None  # type: ignore[return-value]

        after = wait_for(reloaded, "every worker reloaded")
        assert after == {status(node)["configuration_hash"]}  # the supervisor reloaded too
        for i in range(10):
            assert call(node.proxy_port, "GET", f"/new/{i}")[0] == 200


def test_a_killed_worker_is_restarted_while_the_other_serves(tmp_path: Path, nodes: list[Node]) -> None:
    with upstream() as url:
        kong = tmp_path / "kong.yaml"
        declarative(kong, url, "/api")
        node = Node(tmp_path / "n", {"database": "off", "declarative_config": str(kong), "workers": 2})
        nodes.append(node)
        victim = ready_workers(node)[0]
        with Load(node.proxy_port, "/api/load") as load:
            load.wait_for_more(20)
            os.kill(victim["pid"], signal.SIGKILL)
            for i in range(30):  # new connections while the slot is empty: the other worker takes them
                assert call(node.proxy_port, "GET", f"/api/during/{i}")[0] == 200
            slot = wait_for(lambda: next((w for w in workers_of(node) if w["index"] == victim["index"]
                                          and w["state"] == "ready" and w["pid"] != victim["pid"]), None),
                            "the slot's new worker")
            load.wait_for_more(20)
        assert slot["restarts"] == 1 and slot["last_exit"] == "killed by SIGKILL"
        # Only requests in flight on the killed worker can have failed (its connections died with it).
        assert len(load.failures) <= 2, load.failures
        assert "worker 0 exited (killed by SIGKILL); restarting it" in node.log() or \
            "worker 1 exited (killed by SIGKILL); restarting it" in node.log()


def test_sigterm_drains_every_worker_and_the_node_exits_0(tmp_path: Path, nodes: list[Node]) -> None:
    with upstream() as url:
        kong = tmp_path / "kong.yaml"
        declarative(kong, url, "/api")
        node = Node(tmp_path / "n", {"database": "off", "declarative_config": str(kong), "workers": 2})
        nodes.append(node)
        pids = [w["pid"] for w in ready_workers(node)]
        answers: list[int] = []
        slow = threading.Thread(target=lambda: answers.append(call(node.proxy_port, "GET", "/api/slow?delay=1")[0]))
        slow.start()
        time.sleep(0.3)  # the slow request is in flight
        assert node.stop() == 0
        slow.join(timeout=30)
        assert answers == [200]  # drained, not cut
        for pid in pids:
            assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()


def test_workers_stop_when_their_supervisor_is_killed(tmp_path: Path, nodes: list[Node]) -> None:
    with upstream() as url:
        kong = tmp_path / "kong.yaml"
        declarative(kong, url, "/api")
        node = Node(tmp_path / "n", {"database": "off", "declarative_config": str(kong), "workers": 2})
        nodes.append(node)
        pids = [w["pid"] for w in ready_workers(node)]
        node.proc.kill()
        node.proc.wait()
        wait_for(lambda: all(not Path(f"/proc/{pid}").exists() for pid in pids), "workers gone", timeout=30)


def test_access_log_lines_of_both_workers_arrive_whole(tmp_path: Path, nodes: list[Node]) -> None:
    with upstream() as url:
        kong = tmp_path / "kong.yaml"
        declarative(kong, url, "/api")
        log_file = tmp_path / "access.log"
        settings = {"database": "off", "declarative_config": str(kong), "workers": 2, "access_log_format": "json",
                    "proxy_listen": "127.0.0.1:0 reuseport"}
        to_file = Node(tmp_path / "f", {**settings, "proxy_access_log": str(log_file)})
        nodes.append(to_file)
        ready_workers(to_file)
        long_path = "/api/" + "x" * 6000  # longer than PIPE_BUF: a pipe may split it, a line must not be
        sent = _hammer(to_file.proxy_port, long_path, 200)
        lines = wait_for(lambda: log_file.read_text().splitlines() if
                         len(log_file.read_text().splitlines()) >= sent else None, "log lines")
        assert all(json.loads(line)["path"] == long_path for line in lines)

    stdout_node = tmp_path / "s"
    stdout_node.mkdir()
    conf = stdout_node / "gw.yaml"
    with upstream() as url:
        declarative(kong, url, "/api")
        conf.write_text(yaml.safe_dump({**settings, "prefix": str(stdout_node / "data"), "proxy_access_log": "stdout",
                                        "admin_listen": "off", "status_listen": "127.0.0.1:0"}))
        out_path = stdout_node / "stdout"
        with open(out_path, "wb") as out:  # a file: the workers' pipes are relayed into it by the supervisor
            proc = subprocess.Popen([sys.executable, "-m", "trio_gw", "run", "-c", str(conf)], stdout=out,
                                    stderr=subprocess.DEVNULL)
        try:
            ready = stdout_node / "data" / "trio-gw.ready.json"
            wait_for(ready.exists, "ready file")
            port = json.loads(ready.read_text())["listeners"]["proxy"][0]["port"]
            sent = _hammer(port, long_path, 200)
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=60) == 0
        written = out_path.read_bytes()
        lines = written.decode().splitlines()
        assert len(lines) == sent and all(json.loads(line)["path"] == long_path for line in lines)


def _hammer(port: int, path: str, count: int) -> int:
    """``count`` requests from 8 threads at once; every answer must be 200."""
    codes: list[int] = []
    threads = [threading.Thread(target=lambda: codes.extend(call(port, "GET", path)[0] for _ in range(count // 8)))
               for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert codes == [200] * (count // 8 * 8)
    return len(codes)
