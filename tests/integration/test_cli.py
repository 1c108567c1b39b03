"""The trio-gw command line as a user runs it: a real process, real exit codes and messages."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

GW = [sys.executable, "-m", "trio_gw"]


def run(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*GW, *args], capture_output=True, text=True, timeout=timeout)


def settings_file(tmp_path: Path, **values: object) -> Path:
    base = {"prefix": str(tmp_path / "data"), "proxy_listen": "127.0.0.1:0", "admin_listen": "off",
            "status_listen": "off", "database": "off"}
    path = tmp_path / "gw.yaml"
    path.write_text(yaml.safe_dump({**base, **values}))
    return path


def test_unknown_setting_stops_startup_with_a_suggestion(tmp_path: Path) -> None:
    result = run("run", "-c", str(settings_file(tmp_path, proxy_lisen="127.0.0.1:0")))
    assert result.returncode == 2
    assert "proxy_lisen: unknown setting" in result.stderr
    assert "did you mean 'proxy_listen'?" in result.stderr


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"ssl_ciphers": "ECDHE-RSA-AES128-GCM-SHA256:NOT-A-CIPHER"}, "NOT-A-CIPHER"),
        ({"ssl_min_version": "1.3", "ssl_max_version": "1.2"}, "ssl_min_version"),
        ({"ssl_max_version": "1.9"}, "ssl_max_version"),
        ({"keepalive_timeout": "soon"}, "keepalive_timeout: expected a duration"),
        ({"ssl_cert": "/nonexistent.pem", "ssl_cert_key": "/nonexistent.key"}, "ssl_cert[0]: cannot read"),
    ],
)
def test_bad_settings_name_the_problem(tmp_path: Path, values: dict[str, object], expected: str) -> None:
    result = run("run", "-c", str(settings_file(tmp_path, **values)))
    assert result.returncode == 2, result.stderr
    assert expected in result.stderr
    assert not (tmp_path / "data" / "trio-gw.ready.json").exists()


def test_env_overrides_file(tmp_path: Path) -> None:
    conf = settings_file(tmp_path)
    result = subprocess.run([*GW, "settings", "-c", str(conf)], capture_output=True, text=True,
                            env={"TRIO_GW_KEEPALIVE_TIMEOUT": "7s", "PATH": os.environ["PATH"]}, timeout=30)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["keepalive_timeout"] == 7.0


def test_config_check(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump({"_format_version": "3.0", "services": [
        {"name": "s", "url": "http://127.0.0.1:9", "routes": [{"name": "r", "paths": ["/x"]}]}]}))
    result = run("config", "check", str(good))
    assert result.returncode == 0, result.stderr
    assert "OK (1 services, 1 routes)" in result.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"_format_version": "3.0", "services": [
        {"name": "s", "url": "http://127.0.0.1:9", "routes": [{"name": "r", "paths": ["/x"]},
                                                              {"name": "r2", "paths": ["no-slash"]}]}]}))
    result = run("config", "check", str(bad))
    assert result.returncode == 2
    assert "services[0].routes[1].paths[0]" in result.stderr


def test_run_serves_then_stops_on_sigterm(tmp_path: Path) -> None:
    conf = settings_file(tmp_path)
    proc = subprocess.Popen([*GW, "run", "-c", str(conf)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ready = tmp_path / "data" / "trio-gw.ready.json"
    try:
        deadline = time.monotonic() + 20
        while not ready.exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "gateway did not become ready"
            time.sleep(0.05)
        info = json.loads(ready.read_text())
        assert info["pid"] == proc.pid
        assert info["listeners"]["proxy"][0]["port"] > 0
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "received SIGTERM: stopping" in err
    assert not ready.exists()


def test_spec_passes_its_options_through() -> None:
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([*GW, "spec", "--matrix"], capture_output=True, text=True, timeout=60, cwd=root)
    assert done.returncode == 0, done.stderr
    assert "seed statements:" in done.stdout and "seed-003:http2" in done.stdout
    listed = subprocess.run([*GW, "spec", "--only", "ssl-plugin::*", "--list"], capture_output=True, text=True,
                            timeout=60, cwd=root)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines() and all(line.startswith("ssl-plugin::") for line in listed.stdout.splitlines())


_WITHOUT_PSYCOPG = """
import importlib.abc, sys
class NoPsycopg(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "psycopg" or name.startswith("psycopg."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, NoPsycopg())
from trio_gw.runtime.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_postgres_without_psycopg_is_one_line_naming_the_setting_and_the_fix(tmp_path: Path) -> None:
    conf = settings_file(tmp_path, database="postgres")
    result = subprocess.run([sys.executable, "-c", _WITHOUT_PSYCOPG, "run", "-c", str(conf)],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "trio-gw: configuration error: database: postgres needs the psycopg driver, which is not installed: "
        "pip install 'trio-gw[postgres]'"
    ]


def test_sqlite_starts_without_psycopg(tmp_path: Path) -> None:
    """The same blocked import is harmless when nothing asks for PostgreSQL."""
    conf = settings_file(tmp_path, database="sqlite")
    result = subprocess.run([sys.executable, "-c", _WITHOUT_PSYCOPG, "config", "dump", "-c", str(conf)],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert "_format_version" in result.stdout
