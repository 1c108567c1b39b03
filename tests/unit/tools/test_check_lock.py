"""tools/check_lock.py: the lock must satisfy pyproject.toml, and says so in one line when it does not."""

from __future__ import annotations

import shutil
from pathlib import Path

from tool_loader import ROOT, load_tool


check_lock = load_tool("check_lock")


def _copy_project(tmp_path: Path) -> Path:
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    shutil.copytree(ROOT / "requirements", tmp_path / "requirements")
    return tmp_path


def test_the_committed_lock_satisfies_pyproject() -> None:
    assert check_lock.check(ROOT) == []


def test_every_lock_pins_with_hashes() -> None:
    for name in check_lock.LOCKS:
        text = (ROOT / "requirements" / name).read_text()
        pins = check_lock.pinned(text)
        assert pins, name
        assert text.count("--hash=sha256:") >= len(pins), name


def test_a_raised_lower_bound_is_reported(tmp_path: Path) -> None:
    root = _copy_project(tmp_path)
    pyproject = root / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('"trio>=0.27"', '"trio>=999"'))
    problems = check_lock.check(root)
    assert problems and all("trio" in p and "make lock" in p for p in problems)
    assert len(problems) == len(check_lock.LOCKS)  # once per lock file, one line each
    assert all("\n" not in p for p in problems)


def test_a_new_dependency_is_reported(tmp_path: Path) -> None:
    root = _copy_project(tmp_path)
    pyproject = root / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('"PyYAML>=6.0",', '"PyYAML>=6.0",\n    "no-such-package-xyz>=1",'))
    problems = check_lock.check(root)
    assert any("no-such-package-xyz" in p and "not locked" in p for p in problems)


def test_a_missing_lock_file_is_reported(tmp_path: Path) -> None:
    root = _copy_project(tmp_path)
    (root / "requirements" / "fuzz.txt").unlink()
    assert check_lock.check(root) == ["requirements/fuzz.txt is missing: run `make lock`"]
