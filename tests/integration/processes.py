"""Gateway nodes as real processes (``python -m trio_gw run``), for tests of several nodes or of faults.

Each node gets its own prefix (its ready file and logs) and a settings file; the
ready file gives its ports.  Nodes always stop: ``stop()`` sends SIGTERM and
waits, and the ``nodes`` fixture kills what a failed test left running.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

READY = "trio-gw.ready.json"


class Node:
    """One gateway process."""

    def __init__(self, directory: Path, settings: dict[str, Any]) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.prefix = directory / "data"
        base = {"prefix": str(self.prefix), "proxy_listen": "127.0.0.1:0", "admin_listen": "127.0.0.1:0",
                "status_listen": "127.0.0.1:0", "proxy_access_log": "off", "db_update_frequency": "0.2s"}
        self.conf = directory / "gw.yaml"
        self.conf.write_text(yaml.safe_dump({**base, **settings}))
        self.stderr = open(directory / "stderr.log", "w+")
        self.proc = subprocess.Popen([sys.executable, "-m", "trio_gw", "run", "-c", str(self.conf)],
                                     stdout=subprocess.DEVNULL, stderr=self.stderr)
        try:
            self.ports = self._wait_ready()
        except BaseException:  # not ready: nobody holds this node to stop it later
            self.proc.kill()
            self.proc.wait()
            self.stderr.close()
            raise

    def _wait_ready(self, timeout: float = 30.0) -> dict[str, list[int]]:
        ready = self.prefix / READY
        deadline = time.monotonic() + timeout
        while True:
            if ready.exists():
                data = json.loads(ready.read_text())
                if data["pid"] == self.proc.pid:
                    return {kind: [li["port"] for li in items] for kind, items in data["listeners"].items()}
            if self.proc.poll() is not None:
                raise AssertionError(f"node exited {self.proc.returncode}: {self.log()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"node not ready within {timeout} s: {self.log()}")
            time.sleep(0.05)

    @property
    def admin_port(self) -> int:
        return self.ports["admin"][0]

    @property
    def proxy_port(self) -> int:
        return self.ports["proxy"][0]

    @property
    def status_port(self) -> int:
        return self.ports["status"][0]

    def log(self) -> str:
        self.stderr.flush()
        return (self.directory / "stderr.log").read_text()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.stderr.close()
        return self.proc.returncode


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[list[Node]]:
    """Start nodes with ``nodes.append(Node(tmp_path / "a", settings))``; all are stopped afterwards."""
    started: list[Node] = []
    yield started
    for node in started:
        node.stop()


def postgres_conninfo() -> str | None:
    """A reachable PostgreSQL test database (the machine's server), or ``None``."""
    try:
        import psycopg
    except ImportError:
        return None
    for user in ("postgres", "root"):
        conninfo = f"host=127.0.0.1 port=5432 dbname=test user={user}"
        try:
            psycopg.connect(conninfo, connect_timeout=3).close()
        except psycopg.Error:
            continue
        return conninfo
    return None


@pytest.fixture
def pg_settings() -> Iterator[dict[str, Any]]:
    """Settings for nodes sharing the machine's PostgreSQL in a fresh schema (dropped afterwards).

    Fails under ``CI=true`` when PostgreSQL is not there (the cluster datastore must be tested in CI).
    """
    conninfo = postgres_conninfo()
    if conninfo is None:
        message = "PostgreSQL is not reachable at 127.0.0.1:5432 (database 'test')"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    import psycopg

    schema = f"trio_gw_test_{uuid.uuid4().hex[:12]}"
    user = conninfo.rsplit("user=", 1)[1]
    yield {"database": "postgres", "pg_host": "127.0.0.1", "pg_port": 5432, "pg_database": "test",
           "pg_user": user, "pg_schema": schema}
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'.encode())
