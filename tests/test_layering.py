"""The layering rule of docs/architecture.md: decisions are pure, IO is thin.

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


# --- the order of the layers ---------------------------------------------------------------------------
#: Each part of the package may import its own rank and below, never above (docs/architecture.md's table, bottom up).
#: ``store`` is IO but sits low: it holds entities and needs only the model.
RANKS: dict[str, int] = {
    "errors.py": 0, "_version.py": 0,
    "pki": 1,
    "model": 2,
    "tls": 3, "store": 3,
    "http": 4,
    "plugins": 5,
    "settings": 6,
    "snapshot.py": 7,
    "decision.py": 8, "admin": 8,
    "net": 9,
    "runtime": 10, "testing": 10, "__main__.py": 10, "__init__.py": 10,
}


def _part(module: str) -> str | None:
    """The top-level part of ``trio_gw.x.y`` (``x`` or ``x.py``), or None outside the package."""
    parts = module.split(".")
    if parts[0] != "trio_gw" or len(parts) < 2:
        return None
    head = parts[1]
    return head if (PACKAGE / head).is_dir() else f"{head}.py"


def upward_imports(own: str, source: str) -> list[str]:
    rank = RANKS[own]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        for name in names:
            part = _part(name)
            if part is not None and part != own and RANKS[part] > rank:
                found.append(f"line {node.lineno}: {own} (rank {rank}) imports {name} (rank {RANKS[part]})")
    return found


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_layer_imports_a_layer_above_it(path: Path) -> None:
    assert upward_imports(path.relative_to(PACKAGE).parts[0], path.read_text()) == []


def test_the_order_check_catches_an_upward_import() -> None:
    # tls/listener_client_auth.py once took route host patterns from http/ (now model/hosts.py)
    source = "from trio_gw.http._candidates import parse_host_pattern\nfrom trio_gw.pki import parse\n"
    assert upward_imports("tls", source) == [
        "line 1: tls (rank 3) imports trio_gw.http._candidates (rank 4)"]


def test_every_part_of_the_package_has_a_rank() -> None:
    parts = {p.name for p in PACKAGE.iterdir() if (p.is_dir() and (p / "__init__.py").exists()) or p.suffix == ".py"}
    assert parts == set(RANKS)
