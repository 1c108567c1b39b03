"""``python -m spec``: run the conformance scenarios against a real gateway.

Usage::

    python -m spec                      # every scenario of spec/cases/*.toml
    python -m spec --only 'proxy::*'    # ids (or feature ids) matching a glob, or containing a word
    python -m spec --report out.md      # also write a report (.md or .json)
    python -m spec -v                   # print every command, output and check
    python -m spec --self-test          # check every scenario file's format; start nothing
    python -m spec --harness-test       # exercise the harness (PKI, upstreams, clients) without a gateway
    python -m spec -j 2 --keep          # two at a time; keep temporary directories

Exit status: 0 when nothing failed, 1 on any failure (FAILED, ERROR, XPASS),
2 when the scenario files themselves are malformed.  ``SPEC_GATEWAY`` overrides
the gateway command (default: the ``trio-gw`` next to this Python).
"""

from __future__ import annotations

import argparse
import fnmatch
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from spec.harness.loader import (
    SPEC_DIR,
    Scenario,
    SpecFormatError,
    load_all,
    load_features,
)
from spec.harness.report import as_json, failures, markdown, summary, table
from spec.harness.runner import FAILING, Options, Result, is_ci, run_scenario
from spec.harness.selftest import self_test

HARNESS_CASES = SPEC_DIR / "harness" / "selftest.toml"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m spec", description=__doc__.split("\n\n")[0])
    p.add_argument("files", nargs="*", type=Path, help="scenario files (default: spec/cases/*.toml)")
    p.add_argument("--only", action="append", default=[], metavar="PATTERN",
                   help="run scenarios whose id or a feature id matches this glob (or contains it); repeatable")
    p.add_argument("--report", action="append", default=[], type=Path, metavar="FILE.md|FILE.json",
                   help="write a report; repeatable")
    p.add_argument("-v", "--verbose", action="store_true", help="print each command, its output and checks")
    p.add_argument("-j", "--jobs", type=int, default=1, help="scenarios run at once (default 1)")
    p.add_argument("--keep", action="store_true", help="keep each scenario's temporary directory")
    p.add_argument("--list", action="store_true", help="list the selected scenarios and exit")
    p.add_argument("--self-test", action="store_true", help="validate every scenario file; start nothing")
    p.add_argument("--harness-test", action="store_true",
                   help="run the harness's own scenarios (no gateway) to check PKI, upstreams and clients")
    return p


def _selected(scenario: Scenario, patterns: list[str]) -> bool:
    if not patterns:
        return True
    names = [scenario.id, *scenario.features]
    for pattern in patterns:
        glob = any(c in pattern for c in "*?[")
        if any(fnmatch.fnmatchcase(n, pattern) if glob else pattern in n for n in names):
            return True
    return False


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = _parser().parse_args(argv)
    if args.self_test:
        return self_test(print)
    paths = [HARNESS_CASES] if args.harness_test else (args.files or None)
    try:
        scenarios = [s for s in load_all(paths) if _selected(s, args.only)]
        features = load_features()
    except SpecFormatError as exc:
        print("scenario files are malformed (python -m spec --self-test):", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return 2
    if args.list:
        for s in scenarios:
            print(f"{s.id:50} {', '.join(s.features)}")
        return 0
    if not scenarios:
        print("no scenario matches", file=sys.stderr)
        return 1
    options = Options(verbose=args.verbose, keep=args.keep, ci=is_ci())
    started = time.monotonic()
    results = _run(scenarios, options, max(1, args.jobs))
    print()
    print(table(results))
    details = failures(results)
    if details:
        print()
        print(details)
    print()
    print(f"{summary(results)}; wall time {time.monotonic() - started:.1f}s")
    # A closing line CI tooling reads: "N passed, N failed" alone on the line.
    passed = sum(1 for r in results if r.result in ("PASSED", "XFAIL"))
    failed = sum(1 for r in results if r.result in ("FAILED", "ERROR", "XPASS"))
    skipped = sum(1 for r in results if r.result == "SKIPPED")
    print(f"spec: {passed} passed, {failed} failed" + (f", {skipped} skipped" if skipped else ""))
    for path in args.report:
        text = as_json(results) if path.suffix == ".json" else markdown(results, features)
        path.write_text(text)
        print(f"report written to {path}")
    return 1 if any(r.result in FAILING for r in results) else 0


def _run(scenarios: list[Scenario], options: Options, jobs: int) -> list[Result]:
    def one(scenario: Scenario) -> Result:
        if options.verbose:
            print(f"--- {scenario.id}: {scenario.title}", flush=True)
        result = run_scenario(scenario, options)
        print(f"{result.result:8} {scenario.id} ({result.duration:.2f}s)"
              + (f" — {result.reason}" if result.reason and result.result != "PASSED" else ""), flush=True)
        return result

    if jobs == 1:
        return [one(s) for s in scenarios]
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(one, scenarios))


if __name__ == "__main__":
    sys.exit(main())
