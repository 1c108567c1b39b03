"""``mypy --strict`` on the package, the spec harness, the tools and the fuzz targets (pyproject.toml's
[tool.mypy]), and plain mypy on the tests: typed means checked, in CI too."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_package_is_clean_under_mypy_strict(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path / "mypy-cache")],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Success: no issues found" in done.stdout


def test_the_tests_are_clean_under_plain_mypy(tmp_path: Path) -> None:
    """The test suite, under mypy's defaults (not strict: fixtures and helpers may stay unannotated); no
    configuration file, so pyproject.toml's strict settings and file list do not apply."""
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", os.devnull, "--explicit-package-bases",
         "--ignore-missing-imports", "--cache-dir", str(tmp_path / "mypy-cache"), "-p", "tests"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Success: no issues found" in done.stdout
