"""The embedded datastore through the CLI: import, serve from SQLite, export, reseal keys."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import trustme
import yaml

GW = [sys.executable, "-m", "trio_gw"]


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*GW, *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})})


def test_load_dump_reseal_round_trip(tmp_path: Path) -> None:
    leaf = trustme.CA().issue_cert("api.example.test")
    key_pem = leaf.private_key_pem.bytes().decode()
    doc = {"_format_version": "3.0",
           "certificates": [{"cert": leaf.cert_chain_pems[0].bytes().decode(), "key": key_pem,
                             "snis": ["api.example.test"]}],
           "services": [{"name": "s", "url": "http://127.0.0.1:9", "routes": [{"name": "r", "paths": ["/x"]}]}]}
    decl = tmp_path / "kong.yaml"
    decl.write_text(yaml.safe_dump(doc))
    conf = tmp_path / "gw.yaml"
    conf.write_text(yaml.safe_dump({"prefix": str(tmp_path / "data"), "database": "sqlite",
                                    "private_key_encryption_secret": "first secret"}))
    loaded = run("config", "load", str(decl), "-c", str(conf))
    assert loaded.returncode == 0, loaded.stderr
    db = tmp_path / "data" / "trio-gw.db"
    body = key_pem.splitlines()[1]
    assert body.encode() not in db.read_bytes()  # sealed at rest

    dumped = run("config", "dump", "-c", str(conf))
    assert dumped.returncode == 0, dumped.stderr
    out = yaml.safe_load(dumped.stdout)
    assert out["services"][0]["name"] == "s"
    assert "key" not in out["certificates"][0]  # keys only with --include-keys
    with_keys = run("config", "dump", "-c", str(conf), "--include-keys")
    assert "PRIVATE KEY" in with_keys.stdout

    wrong = run("config", "dump", "-c", str(conf), "--set", "private_key_encryption_secret=guess")
    assert wrong.returncode == 2
    assert "does not open this datastore" in wrong.stderr

    resealed = run("keys", "reseal", "-c", str(conf), env={"NEW_PRIVATE_KEY_ENCRYPTION_SECRET": "second"})
    assert resealed.returncode == 0, resealed.stderr
    assert run("config", "dump", "-c", str(conf)).returncode == 2  # the old secret no longer opens it
    again = run("config", "dump", "-c", str(conf), "--include-keys", "--set", "private_key_encryption_secret=second")
    assert again.returncode == 0, again.stderr
    assert "PRIVATE KEY" in again.stdout


def test_settings_never_print_secrets(tmp_path: Path) -> None:
    result = run("settings", "--set", "private_key_encryption_secret=hunter2", "--set", "pg_password=pw")
    assert result.returncode == 0
    assert "hunter2" not in result.stdout and "pw\"" not in result.stdout
