"""``trio-gw demo`` as a new user meets it: every command it prints works as printed.

The demo runs as a real process on free ports (``--set`` overrides, as a user
would give them); each printed ``curl``/``openssl`` line is run through the
shell exactly as printed, and what it shows is checked: the public route, HTTP/2
on the TLS listener, the mTLS route with and without a client certificate, the
Admin API's certificate list and ``/status``.  Nothing on stderr is something a
user would have to ignore.
"""

from __future__ import annotations

import json
import os
import re
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(
    subprocess.run(["sh", "-c", "command -v curl && command -v openssl"], capture_output=True).returncode != 0
    and os.environ.get("CI") is None,
    reason="curl and openssl are needed (make test installs them)",
)

FREE_PORTS = ["--set", "proxy_listen=127.0.0.1:0, 127.0.0.1:0 ssl http2",
              "--set", "admin_listen=127.0.0.1:0", "--set", "status_listen=127.0.0.1:0"]
BANNER_END = "Ctrl-C stops it."


class Demo:
    def __init__(self, prefix: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "trio_gw", "demo", "--set", f"prefix={prefix}", *FREE_PORTS],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=prefix.parent,
        )
        self.banner = self._read_banner(deadline=time.monotonic() + 60)

    def _read_banner(self, deadline: float) -> list[str]:
        stdout = self.proc.stdout
        assert stdout is not None
        lines: queue.Queue[str] = queue.Queue()

        def pump() -> None:
            for line in stdout:
                lines.put(line)

        threading.Thread(target=pump, daemon=True).start()
        banner: list[str] = []
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=0.5)
            except queue.Empty:
                assert self.proc.poll() is None, f"demo exited before its banner: {self.stop()}"
                continue
            banner.append(line.rstrip("\n"))
            if line.strip() == BANNER_END:
                return banner
        raise AssertionError(f"no banner within 60 s: {banner} {self.stop()}")

    def commands(self) -> list[str]:
        return [line.strip() for line in self.banner if re.match(r"^  (curl|openssl) ", line)]

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            _, err = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        return err


def run_printed(command: str) -> str:
    """Run a printed line through the shell; what a user sees on the terminal (stdout and stderr)."""
    done = subprocess.run(["bash", "-c", command], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=30)
    assert done.returncode == 0, f"{command}\n{done.stdout}"
    return done.stdout


def find(commands: list[str], *needles: str, without: str | None = None) -> str:
    found = [c for c in commands if all(n in c for n in needles) and (without is None or without not in c)]
    assert len(found) == 1, (needles, commands)
    return found[0]


def test_every_printed_command_works_as_printed(tmp_path: Path) -> None:
    demo = Demo(tmp_path / "data")
    try:
        commands = demo.commands()
        assert len(commands) == 8, demo.banner
        outputs = {c: run_printed(c) for c in commands}
        public = json.loads(outputs[find(commands, "http://localhost:", "hello=world")])
        assert public["query"] == "hello=world"
        tls = json.loads(outputs[find(commands, "https://localhost:", without="--http2")])
        assert tls["headers"]["x-forwarded-proto"] == "https"
        assert outputs[find(commands, "--http2")].strip() == "2 200"
        with_cert = json.loads(outputs[find(commands, "https://mtls.localhost:", "--cert")])
        assert with_cert["headers"]["x-consumer-username"] == "demo-client"
        without_cert = json.loads(outputs[find(commands, "https://mtls.localhost:", without="--cert")])
        assert without_cert["reason"] == "no_cert"
        handshake = outputs[find(commands, "openssl s_client")]
        assert "Verification: OK" in handshake and "CN = mtls.localhost" in handshake
        listing = outputs[find(commands, "/certificates")]
        assert [c["snis"] for c in json.loads(listing)["data"]] == [["mtls.localhost"]]
        assert "PRIVATE KEY" not in listing
        status = json.loads(outputs[find(commands, "/status")])
        database = status["database"]
        assert {k: database[k] for k in ("kind", "reachable", "version", "state")} == {
            "kind": "sqlite", "reachable": True, "version": 1, "state": "ok"}
        assert database["feed"]["listening"] is True and database["serving_cache"] is False

        # Only mtls.localhost asks for a client certificate: a browser on localhost is never prompted.
        port = re.search(r"https://localhost:(\d+)/", find(commands, "https://localhost:", without="--http2"))
        assert port is not None
        for name, asked in (("localhost", False), ("mtls.localhost", True)):
            done = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port.group(1)}", "-servername",
                                   name, "-msg"], stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
            assert ("CertificateRequest" in done.stdout) is asked, name
    finally:
        err = demo.stop()
    assert demo.proc.returncode == 0, err
    assert "Warning" not in err and "WARNING" not in err and "Traceback" not in err, err


def test_a_second_start_keeps_the_datastore_and_finds_the_new_upstream(tmp_path: Path) -> None:
    first = Demo(tmp_path / "data")
    listing = run_printed(find(first.commands(), "/certificates"))
    first.stop()
    second = Demo(tmp_path / "data")  # the echo upstream is on another port now
    try:
        assert run_printed(find(second.commands(), "/certificates")) == listing
        public = json.loads(run_printed(find(second.commands(), "http://localhost:", "hello=world")))
        assert public["query"] == "hello=world"
    finally:
        second.stop()
