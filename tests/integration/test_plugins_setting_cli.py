"""`trio-gw config load` refuses a file using a plugin the node's `plugins` setting does not enable."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

GW = [sys.executable, "-m", "trio_gw"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*GW, *args], capture_output=True, text=True, timeout=60,
                          env={k: v for k, v in os.environ.items() if not k.startswith("TRIO_GW_")})


def test_config_load_follows_the_plugins_setting(tmp_path: Path) -> None:
    doc = {"_format_version": "3.0",
           "services": [{"name": "s", "url": "http://127.0.0.1:9", "routes": [{"name": "r", "paths": ["/x"],
                         "plugins": [{"name": "ssl", "config": {"only_https": True}}]}]}]}
    decl = tmp_path / "kong.yaml"
    decl.write_text(yaml.safe_dump(doc))
    conf = tmp_path / "gw.yaml"
    conf.write_text(yaml.safe_dump({"prefix": str(tmp_path / "data"), "database": "sqlite", "plugins": "key-auth"}))
    refused = run("config", "load", str(decl), "-c", str(conf))
    assert refused.returncode != 0
    assert "plugin 'ssl' is not enabled on this node" in refused.stderr and "'plugins' setting" in refused.stderr
    loaded = run("config", "load", str(decl), "-c", str(conf), "--set", "plugins=bundled")
    assert loaded.returncode == 0, loaded.stderr
