"""Check that the lock files still satisfy pyproject.toml; one line per problem, exit 1.

    python tools/check_lock.py            # every lock file under requirements/

Each lock file covers pyproject.toml's runtime dependencies, the extras it was
compiled with (see the Makefile's ``lock`` target) and ``requirements/build.in``.
A requirement that is missing from a lock file, or pinned to a version outside
its range, means someone changed pyproject.toml without ``make lock``.  Needs
``packaging`` (it is in the test lock); runs in well under a second.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path
from typing import cast

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
#: Which extras each lock file holds (the Makefile's ``lock`` target compiles them so).
LOCKS: dict[str, tuple[str, ...]] = {
    "run.txt": (),
    "test.txt": ("test", "postgres"),
    "fuzz.txt": ("test", "fuzz"),
}
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", re.M)


def pinned(lock_text: str) -> dict[str, Version]:
    """``{canonical name: version}`` of every ``name==version`` line of a lock file."""
    return {canonicalize_name(m.group(1)): Version(m.group(2)) for m in PIN.finditer(lock_text)}


def requirements_for(pyproject: dict[str, object], extras: tuple[str, ...], build_in: str) -> list[Requirement]:
    project = pyproject["project"]
    assert isinstance(project, dict)
    reqs = [Requirement(r) for r in project.get("dependencies", [])]
    optional = project.get("optional-dependencies", {})
    for extra in extras:
        reqs += [Requirement(r) for r in optional.get(extra, [])]
    for line in build_in.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            reqs.append(Requirement(line))
    return reqs


def check(root: Path = ROOT) -> list[str]:
    """Every way the lock files fail pyproject.toml, as one-line messages."""
    pyproject = tomllib.loads((root / "pyproject.toml").read_text())
    build_in = (root / "requirements" / "build.in").read_text()
    env = default_environment()
    problems: list[str] = []
    for name, extras in LOCKS.items():
        path = root / "requirements" / name
        if not path.exists():
            problems.append(f"requirements/{name} is missing: run `make lock`")
            continue
        pins = pinned(path.read_text())
        for req in requirements_for(pyproject, extras, build_in):
            if req.marker is not None and not req.marker.evaluate(cast("dict[str, str]", env)):
                continue  # e.g. atheris off Linux: nothing to pin on this platform
            version = pins.get(canonicalize_name(req.name))
            if version is None:
                problems.append(f"requirements/{name}: {req} is not locked: run `make lock`")
            elif not req.specifier.contains(version, prereleases=True):
                problems.append(f"requirements/{name}: {req.name}=={version} does not satisfy {req}: run `make lock`")
    return problems


def main() -> int:
    problems = check()
    for line in problems:
        print(f"lock out of date: {line}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
