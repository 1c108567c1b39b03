#!/usr/bin/env python3
"""How evenly two worker processes share new connections: one inherited socket, or SO_REUSEPORT.

    python tools/measure_accept_spread.py                  2 workers, 5 s per run
    python tools/measure_accept_spread.py --workers 2 --seconds 10 --concurrency 1,8,32

For each listener kind — one socket every worker accepts on (``127.0.0.1:0``),
or a socket per worker (``127.0.0.1:0 reuseport``) — and each concurrency, a
node with ``workers`` processes runs (``database: off``, no route: every request
is answered by the gateway itself with 404, so only the gateway works), clients
in threads open a connection per request (``Connection: close``) for the
duration, and each worker's count of accepted connections is read from
``/status`` (``workers.list[].connections_accepted``).  The figure is the
busiest worker's share: 1/N is a perfect spread, 1.0 means one worker took all.

Nothing here is a test; no figure is asserted.  On a shared machine, run it
when the machine is quiet and say it was shared.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any


def start_node(directory: Path, listen: str, workers: int) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    prefix = directory / "data"
    settings = {"prefix": str(prefix), "proxy_listen": listen, "admin_listen": "off",
                "status_listen": "127.0.0.1:0", "database": "off", "workers": workers,
                "declarative_config": str(directory / "kong.yaml"), "proxy_access_log": "off", "log_level": "error"}
    (directory / "kong.yaml").write_text('_format_version: "3.0"\n')
    (directory / "gw.yaml").write_text(json.dumps(settings))
    proc = subprocess.Popen([sys.executable, "-m", "trio_gw", "run", "-c", str(directory / "gw.yaml")],
                            stdout=subprocess.DEVNULL, stderr=open(directory / "stderr.log", "wb"))
    ready = prefix / "trio-gw.ready.json"
    deadline = time.monotonic() + 60
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError((directory / "stderr.log").read_text())
        time.sleep(0.05)
    return proc, json.loads(ready.read_text())


def load(port: int, concurrency: int, seconds: float) -> int:
    done = [0] * concurrency
    stop = time.monotonic() + seconds
    request = b"GET /spread HTTP/1.1\r\nHost: spread.test\r\nConnection: close\r\n\r\n"

    def client(i: int) -> None:
        while time.monotonic() < stop:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                sock.sendall(request)
                while sock.recv(65536):
                    pass
            done[i] += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(done)


def accepted(status_port: int) -> list[int]:
    with urllib.request.urlopen(f"http://127.0.0.1:{status_port}/status", timeout=10) as answer:
        status = json.load(answer)
    return [int(w.get("connections_accepted", 0)) for w in status["workers"]["list"]]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--concurrency", default="1,8,32", help="comma-separated client thread counts")
    args = p.parse_args(argv)
    results = []
    for kind, listen in (("one inherited socket", "127.0.0.1:0"), ("SO_REUSEPORT", "127.0.0.1:0 reuseport")):
        for concurrency in (int(c) for c in args.concurrency.split(",")):
            with tempfile.TemporaryDirectory(prefix="trio-gw-spread-") as tmp:
                proc, ready = start_node(Path(tmp), listen, args.workers)
                try:
                    port = ready["listeners"]["proxy"][0]["port"]
                    status_port = ready["listeners"]["status"][0]["port"]
                    before = accepted(status_port)
                    started = time.monotonic()
                    total = load(port, concurrency, args.seconds)
                    elapsed = time.monotonic() - started
                    time.sleep(1.2)  # one report interval: the counts are the workers' own
                    counts = [a - b for a, b in zip(accepted(status_port), before, strict=True)]
                finally:
                    proc.send_signal(signal.SIGTERM)
                    proc.wait(30)
            share = max(counts) / max(1, sum(counts))
            results.append({"listener": kind, "concurrency": concurrency, "per_worker": counts,
                            "busiest_share": round(share, 3), "connections_per_s": round(total / elapsed)})
            print(f"{kind:22} concurrency {concurrency:3}: per worker {counts}  busiest {share:.0%}  "
                  f"{total / elapsed:.0f} conn/s", flush=True)
    print(json.dumps({"cpus": os.cpu_count(), "results": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
