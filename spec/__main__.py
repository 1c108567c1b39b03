"""``python -m spec``: run the conformance scenarios against a real gateway.

Usage::

    python -m spec                      # every scenario of spec/cases/*.toml
    python -m spec --only 'proxy::*'    # ids (or feature ids) matching a glob, or containing a word
    python -m spec --report out.md      # also write a report (.md or .json)
    python -m spec -v                   # print every command, output and check
    python -m spec --self-test          # check every scenario file's format; start nothing
    python -m spec --harness-test       # exercise the harness (PKI, upstreams, clients) without a gateway
    python -m spec -j 2 --keep          # two at a time; keep temporary directories
    python -m spec --matrix             # print the feature matrix (which scenarios prove what); run nothing
    python -m spec --write-features     # regenerate spec/FEATURES.md from features.toml and the scenarios

After a run the feature matrix (spec/features.toml: every seed statement, with
the scenarios proving it) is printed with each row's verdict.  Exit status: 0
when nothing failed, 1 on any failure (FAILED, ERROR, XPASS) or, on a full run,
any in-scope row without a scenario; 2 when the scenario files themselves are
malformed.  ``SPEC_GATEWAY`` overrides
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
from spec.harness import matrix
from spec.harness.report import as_json, failures, markdown, summary, table
from spec.harness.runner import FAILING, Options, Result, is_ci, run_scenario
from spec.harness.selftest import self_test

HARNESS_CASES = SPEC_DIR / "harness" / "selftest.toml"
FEATURES_MD = SPEC_DIR / "FEATURES.md"


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
    p.add_argument("--matrix", action="store_true",
                   help="print the feature matrix (rows and the scenarios proving them) and exit")
    p.add_argument("--write-features", action="store_true",
                   help=f"write {FEATURES_MD.relative_to(SPEC_DIR.parent)} from features.toml and the scenarios")
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
        loaded = load_all(paths)
        features = load_features()
    except SpecFormatError as exc:
        print("scenario files are malformed (python -m spec --self-test):", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return 2
    scenarios = [s for s in loaded if _selected(s, args.only)]
    # The matrix is judged only on a full run: a partial one cannot see every row's scenarios.
    full_run = not args.only and not args.files and not args.harness_test
    if args.matrix or args.write_features:
        rows = matrix.build(features, loaded)
        if args.write_features:
            FEATURES_MD.write_text(matrix.features_md(rows))
            print(f"written {FEATURES_MD}")
        else:
            print(matrix.table(rows))
            print(matrix.counts(rows))
        uncovered = [r for r in rows if r.verdict == matrix.UNCOVERED]
        for row in uncovered:
            print(f"UNCOVERED {row.id}: {row.title}", file=sys.stderr)
        return 1 if uncovered else 0
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
    rows = matrix.build(features, loaded if full_run else scenarios,
                        {r.scenario.id: r.result for r in results})
    if not full_run:
        rows = [r for r in rows if r.verdict != matrix.UNCOVERED]
    if not args.harness_test:
        print()
        print(matrix.table([r for r in rows if r.verdict != matrix.NOT_RUN]))
        print()
        print(matrix.counts(rows))
    matrix_problems = matrix.problems(rows) if full_run else []
    for problem in matrix_problems:
        print(f"MATRIX {problem}")
    print(f"{summary(results)}; wall time {time.monotonic() - started:.1f}s")
    # A closing line CI tooling reads: "N passed, N failed" alone on the line.
    passed = sum(1 for r in results if r.result in ("PASSED", "XFAIL"))
    failed = sum(1 for r in results if r.result in ("FAILED", "ERROR", "XPASS"))
    skipped = sum(1 for r in results if r.result == "SKIPPED")
    print(f"spec: {passed} passed, {failed} failed" + (f", {skipped} skipped" if skipped else ""))
    for path in args.report:
        text = as_json(results, rows) if path.suffix == ".json" else markdown(results, rows)
        path.write_text(text)
        print(f"report written to {path}")
    return 1 if any(r.result in FAILING for r in results) or matrix_problems else 0


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
