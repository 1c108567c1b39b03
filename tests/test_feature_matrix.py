"""The feature matrix (spec/features.toml) is complete, well-placed and published.

* every in-scope row has at least one scenario (``python -m spec`` fails on a
  full run otherwise; this catches it without starting a gateway);
* every seed row names a seed file and a heading of that file, when the seed
  documents are at hand (they live beside the repository, in ../shared/seeds);
* spec/FEATURES.md is what ``python -m spec --write-features`` generates;
* the verdict rules of the matrix, on made-up rows.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from spec.harness import loader, matrix

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT.parent / "shared" / "seeds"


@pytest.fixture(scope="module")
def rows() -> list[matrix.Row]:
    return matrix.build(loader.load_features(), loader.load_all())


def test_every_in_scope_row_has_a_scenario(rows: list[matrix.Row]) -> None:
    uncovered = [f"{r.id}: {r.title}" for r in rows if r.verdict == matrix.UNCOVERED]
    assert uncovered == []


def test_out_of_scope_rows_give_a_reason_and_stay_few(rows: list[matrix.Row]) -> None:
    seed = [r for r in rows if r.group.startswith("seed-")]
    out = [r for r in seed if r.out_of_scope]
    assert all(len(r.out_of_scope) > 20 for r in out)
    # Out of scope is for what cannot apply (Dashboard, MDCB, SaaS), not for what is hard.
    assert len(out) < len(seed) // 4


def test_seed_rows_name_their_file_and_section(rows: list[matrix.Row]) -> None:
    for row in rows:
        if not row.group.startswith("seed-"):
            continue
        number = row.group.removeprefix("seed-")
        assert row.source.startswith(f"{number}_") and row.source.endswith(".txt"), row.id
        assert row.section, f"{row.id}: a seed row needs its section"


@pytest.mark.skipif(not SEEDS.is_dir(), reason=f"the seed documents are not beside the repository ({SEEDS})")
def test_seed_sections_exist_in_the_seed_files(rows: list[matrix.Row]) -> None:
    headings: dict[str, set[str]] = {}
    for path in SEEDS.glob("*.txt"):
        text = path.read_text()
        headings[path.name] = {m.group(1).strip() for m in re.finditer(r"(?m)^#{1,6} (.+)$", text)}
    missing = []
    for row in rows:
        if not row.group.startswith("seed-"):
            continue
        assert row.source in headings, f"{row.id}: no seed file {row.source}"
        if row.section != "(introduction)" and row.section not in headings[row.source]:
            missing.append(f"{row.id}: {row.section!r} is not a heading of {row.source}")
    assert missing == []


def test_features_md_is_generated_from_the_matrix(rows: list[matrix.Row]) -> None:
    path = ROOT / "spec" / "FEATURES.md"
    assert path.read_text() == matrix.features_md(rows), (
        "spec/FEATURES.md is stale: run `python -m spec --write-features`")


# --- verdict rules -----------------------------------------------------------------


def _scenario(sid: str, *features: str) -> loader.Scenario:
    return loader.Scenario(sid, "t", features, "spec/cases/x.toml", {"steps": []})


FEATURES = {
    "seed-009:a": {"title": "a", "source": "009_x.txt", "section": "S"},
    "seed-009:b": {"title": "b", "source": "009_x.txt", "section": "S"},
    "seed-009:c": {"title": "c", "source": "009_x.txt", "section": "S", "out_of_scope": "reasons"},
    "seed-009:d": {"title": "d", "source": "009_x.txt", "section": "S"},
    "harness:self": {"title": "h", "source": "spec"},
}
SCENARIOS = [_scenario("x::one", "seed-009:a"), _scenario("x::two", "seed-009:a", "seed-009:b"),
             _scenario("x::three", "seed-009:d")]


def _verdicts(results: dict[str, str] | None) -> dict[str, str]:
    return {r.id: r.verdict for r in matrix.build(FEATURES, SCENARIOS, results)}


def test_verdicts_before_a_run() -> None:
    assert _verdicts(None) == {"seed-009:a": "COVERED", "seed-009:b": "COVERED",
                               "seed-009:c": matrix.OUT_OF_SCOPE, "seed-009:d": "COVERED"}


def test_one_failure_fails_the_row_and_a_skip_does_not_pass_it() -> None:
    verdicts = _verdicts({"x::one": "PASSED", "x::two": "FAILED", "x::three": "SKIPPED"})
    assert verdicts == {"seed-009:a": matrix.FAILED, "seed-009:b": matrix.FAILED,
                        "seed-009:c": matrix.OUT_OF_SCOPE, "seed-009:d": matrix.SKIPPED}
    problems = matrix.problems(matrix.build(FEATURES, SCENARIOS, {"x::one": "PASSED", "x::two": "FAILED"}))
    assert problems == ["seed-009:a: a scenario failed (x::one, x::two)",
                        "seed-009:b: a scenario failed (x::two)"]


def test_unselected_rows_are_not_run_and_uncovered_rows_are_problems() -> None:
    verdicts = _verdicts({"x::one": "PASSED"})
    assert verdicts["seed-009:a"] == matrix.PASSED
    assert verdicts["seed-009:b"] == matrix.NOT_RUN  # only x::two proves it, and it did not run
    rows = matrix.build({**FEATURES, "seed-009:e": {"title": "e", "source": "009_x.txt", "section": "S"}},
                        SCENARIOS, {"x::one": "PASSED", "x::two": "PASSED", "x::three": "PASSED"})
    assert [r.id for r in rows if r.failing] == ["seed-009:e"]
    assert matrix.problems(rows) == ["seed-009:e: no scenario proves it (e)"]
    assert "harness:self" not in {r.id for r in rows}
