"""``python -m spec --self-test``: check the scenario files and the harness's own tables.

Starts nothing.  Checks, in order:

* the harness is consistent with its format: every expectation key of the
  schema has a checker, every step kind a runner and a list of allowed keys;
* ``spec/features.toml`` is well-formed;
* every ``spec/cases/*.toml`` (and the harness's own ``selftest.toml``) follows
  the format: unknown keys rejected (with a suggestion), required keys present,
  references resolved, ids unique, features registered;
* every feature of the registry is covered by at least one scenario (a warning).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from spec.harness import loader, schema
from spec.harness.clients import RUNNERS
from spec.harness.expect import CHECKERS


def _harness_problems() -> list[str]:
    problems = []
    missing = set(schema.EXPECT.keys) - set(CHECKERS)
    problems += [f"harness: expectation {k!r} has no checker" for k in sorted(missing)]
    problems += [f"harness: checker {k!r} is not in the schema" for k in sorted(set(CHECKERS) - set(schema.EXPECT.keys))]
    problems += [f"harness: step kind {k!r} has no runner" for k in schema.STEP_KINDS if k not in RUNNERS]
    problems += [f"harness: step kind {k!r} has no allowed-keys entry" for k in schema.STEP_KINDS
                 if k not in loader._STEP_ALLOWS]
    step_keys = set(schema.STEP.keys)
    for kind, allowed in loader._STEP_ALLOWS.items():
        problems += [f"harness: step kind {kind!r} allows {k!r}, which the schema lacks" for k in allowed - step_keys]
    return problems


def self_test(say: Callable[[str], None]) -> int:
    """Run the checks, print what was found; 0 when all is well, 2 otherwise."""
    problems = _harness_problems()
    scenarios: list[loader.Scenario] = []
    features: dict[str, dict[str, str]] = {}
    try:
        features = loader.load_features()
        paths = sorted(loader.CASES_DIR.glob("*.toml")) + [Path(loader.SPEC_DIR / "harness" / "selftest.toml")]
        scenarios = loader.load_all(paths)
    except loader.SpecFormatError as exc:
        problems += exc.problems
    for problem in problems:
        say(f"  ✗ {problem}")
    files = sorted({s.source for s in scenarios})
    say(f"{len(scenarios)} scenarios in {len(files)} files; {len(features)} features registered")
    covered = {f for s in scenarios for f in s.features}
    for fid, info in features.items():
        if fid not in covered and not info.get("out_of_scope") and not fid.startswith("harness:"):
            say(f"  note: feature {fid} has no scenario yet (python -m spec fails on a full run)")
    if problems:
        say(f"self-test: {len(problems)} problem(s)")
        return 2
    say("self-test: ok")
    return 0
