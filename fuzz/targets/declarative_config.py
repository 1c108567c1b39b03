"""Fuzz target ``declarative``: the decK-format declarative loader, then the snapshot compiler.

The input is decoded as UTF-8 (invalid bytes replaced) and given to
:func:`trio_gw.model.declarative.load_declarative_text`; whatever loads is
compiled with :func:`trio_gw.snapshot.build_snapshot` under default settings,
which is what the gateway does next at start-up and on every reload.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from trio_gw.errors import ConfigError
from trio_gw.model.declarative import load_declarative_text
from trio_gw.runtime.settings import load_settings
from trio_gw.snapshot import build_snapshot

INVARIANT = """\
Any text gives ``Entities`` or ``ConfigError`` from the loader, nothing else
(YAML syntax errors, deep nesting and alias bombs included), and entities that
load compile into a snapshot or ``ConfigError``.
"""

#: A fixed "now" keeps certificate validity checks deterministic: 2025-01-01.
NOW = 1_735_689_600


@lru_cache(maxsize=1)
def _settings() -> Any:
    return load_settings(None, environ={}, overrides={"prefix": "/nonexistent/trio-gw-fuzz", "database": "off"})


def fuzz_one(data: bytes) -> None:
    """Load ``data`` as a declarative file and compile it; check the invariant."""
    text = data.decode("utf-8", "replace")
    try:
        entities = load_declarative_text(text, now=NOW)
    except ConfigError:
        return
    try:
        build_snapshot(_settings(), entities, now=float(NOW))
    except ConfigError:
        pass


SEEDS: dict[str, bytes] = {
    "service": b'_format_version: "3.0"\nservices:\n- name: s\n  url: http://127.0.0.1:9/p\n'
               b'  routes:\n  - name: r\n    paths: ["/a", "~/b/\\\\d+$"]\n    hosts: ["*.x.test"]\n',
    "json": b'{"_format_version": "3.0", "services": [{"name": "s", "host": "h", "port": 8080,'
            b' "routes": [{"paths": ["/"], "methods": ["GET"], "headers": {"x-v": ["1"]}}]}]}',
    "consumer": b'_format_version: "3.0"\nconsumers:\n- username: u\n  custom_id: c\n  plugins:\n'
                b'  - name: mtls-auth\n    config: {}\n',
    "snis": b'_format_version: "3.0"\ncertificates:\n- cert: x\n  key: y\n  snis:\n  - name: a.test\n',
    "routes-top": b'_format_version: "3.0"\nroutes:\n- name: r\n  service: s\n  protocols: [https]\n'
                  b'  https_redirect_status_code: 301\n',
    "anchors": b'_format_version: "3.0"\nx: &a [1, 2]\ny: [*a, *a]\n',
    "tags": b'_format_version: "3.0"\nservices: !!python/object:os.system {}\n',
    "deep": b"[" * 64 + b"]" * 64,
}
