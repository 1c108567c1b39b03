"""Blocking helpers for tests of nodes as processes: an upstream in a thread, Admin/status calls, a load loop.

Everything binds 127.0.0.1 port 0 and stops by itself (``with`` blocks, bounded waits).
"""

from __future__ import annotations

import http.client
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .processes import Node


class _Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
        if "delay=" in self.path:
            time.sleep(float(self.path.rsplit("delay=", 1)[1].split("&")[0]))
        body = json.dumps({"path": self.path}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the stdlib's name)
        return None


@contextmanager
def upstream() -> Iterator[str]:
    """An HTTP/1.1 echo on 127.0.0.1:0 in threads (``?delay=S`` waits S seconds); yields its URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def call(port: int, method: str, path: str, body: Any = None, *, timeout: float = 30) -> tuple[int, Any]:
    """One request (Admin API, status, proxy) from this thread; the status and the JSON body (or text)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method,
                                     headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            return reply.status, _decoded(reply.read())
    except urllib.error.HTTPError as exc:
        return exc.code, _decoded(exc.read())


def _decoded(raw: bytes) -> Any:
    try:
        return json.loads(raw or b"null")
    except ValueError:
        return raw.decode(errors="replace")


def status(node: Node) -> dict[str, Any]:
    code, body = call(node.status_port, "GET", "/status")
    assert code == 200, body
    return dict(body)


def wait_for(check: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    """Poll ``check`` every 20 ms until it returns something true (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what}: not within {timeout:.0f} s"
        time.sleep(0.02)


def add_route(admin_port: int, service: str, url: str, path: str) -> None:
    code, body = call(admin_port, "POST", "/services", {"name": service, "url": url})
    assert code == 201, body
    code, body = call(admin_port, "POST", f"/services/{service}/routes", {"name": service, "paths": [path]})
    assert code == 201, body


class Load:
    """Proxied requests in threads until stopped: some on keep-alive connections, some on new ones.

    Every answer other than a 200 from the upstream, and every connection error, is a failure.
    """

    def __init__(self, port: int, path: str, *, threads: int = 2) -> None:
        self.port = port
        self.path = path
        self.ok = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i % 2 == 0,), daemon=True) for i in range(threads)]

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=60)

    def _run(self, keep_alive: bool) -> None:
        conn: http.client.HTTPConnection | None = None
        while not self._stop.is_set():
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                conn.request("GET", self.path)
                reply = conn.getresponse()
                reply.read()
                if reply.status == 200:
                    self.ok += 1
                else:
                    self.failures.append(f"{reply.status} {reply.getheader('content-type')}")
                if not keep_alive or reply.getheader("connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as exc:
                self.failures.append(repr(exc))
                if conn is not None:
                    conn.close()
                conn = None
            time.sleep(0.002)
        if conn is not None:
            conn.close()

    def wait_for_more(self, count: int, timeout: float = 30.0) -> None:
        """Block until ``count`` more requests succeeded (bounded)."""
        target = self.ok + count
        wait_for(lambda: self.ok >= target, f"{count} more proxied requests", timeout)
