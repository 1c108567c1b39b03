"""The layering rule of DESIGN.md: decisions are pure, IO is thin.

Pure layers (model, tls, pki, http, plugins, snapshot, errors) must not import
trio, sockets or IO-layer packages, and must not build SSL contexts.  ``ssl``
may be imported for its constants only.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "trio_gw"
PURE = ["model", "tls", "pki", "http", "plugins", "admin", "settings", "snapshot.py", "errors.py"]
FORBIDDEN_MODULES = {"trio", "socket", "selectors", "asyncio", "subprocess", "threading"}
FORBIDDEN_INTERNAL = ("trio_gw.net", "trio_gw.runtime", "trio_gw.store", "trio_gw.admin")
#: A layer may import its own modules.
OWN_PACKAGE = {"admin": "trio_gw.admin"}
FORBIDDEN_CALLS = {"SSLContext", "create_default_context", "wrap_socket", "open"}


def _pure_files() -> list[Path]:
    files: list[Path] = []
    for entry in PURE:
        path = PACKAGE / entry
        if path.is_dir():
            files.extend(sorted(path.rglob("*.py")))
        elif path.exists():
            files.append(path)
    return files


def violations(source: str, own: str = "") -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""] if node.level == 0 else []
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in FORBIDDEN_CALLS:
                found.append(f"line {node.lineno}: calls {name}()")
            continue
        else:
            continue
        for name in names:
            if own and name.startswith(own):
                continue
            if name.split(".")[0] in FORBIDDEN_MODULES or name.startswith(FORBIDDEN_INTERNAL):
                found.append(f"line {node.lineno}: imports {name}")
    return sorted(found, key=lambda f: int(f.split()[1].rstrip(":")))


@pytest.mark.parametrize("path", _pure_files(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_pure_module_does_no_io(path: Path) -> None:
    layer = path.relative_to(PACKAGE).parts[0]
    assert violations(path.read_text(), OWN_PACKAGE.get(layer, "")) == []


def test_the_check_catches_violations() -> None:
    bad = "import trio\nfrom socket import socket\nimport ssl\nssl.SSLContext()\nfrom trio_gw.net import x\n"
    assert violations(bad) == [
        "line 1: imports trio",
        "line 2: imports socket",
        "line 4: calls SSLContext()",
        "line 5: imports trio_gw.net",
    ]


def test_there_are_pure_modules_to_check() -> None:
    assert len(_pure_files()) >= 5
