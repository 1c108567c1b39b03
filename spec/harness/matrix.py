"""The feature matrix: each row of ``spec/features.toml`` with the scenarios that prove it.

Theory of operation: a row is in scope unless it carries ``out_of_scope``.  Its
scenarios are those naming it in ``features``.  Before a run a row is COVERED
(it has scenarios) or UNCOVERED; after a run its verdict is

* PASSED — at least one of its scenarios passed and none failed;
* FAILED — one of its scenarios failed (FAILED, ERROR or XPASS);
* SKIPPED — its scenarios ran but none passed (skipped, or expected failures);
* NOT RUN — none of its scenarios was selected (``--only``);
* UNCOVERED — no scenario names it (a failure of the suite: every in-scope seed
  statement must be proven);
* OUT OF SCOPE — with the reason.

The same rows render three ways: a fixed-width table on the terminal, the
Markdown of ``spec/FEATURES.md`` (no results: which scenarios prove what), and
a section of the Markdown/JSON reports (with results).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from spec.harness.loader import Scenario

PASSED, FAILED, SKIPPED, NOT_RUN, UNCOVERED, OUT_OF_SCOPE = (
    "PASSED", "FAILED", "SKIPPED", "NOT RUN", "UNCOVERED", "OUT OF SCOPE")
_FAILING = frozenset({"FAILED", "ERROR", "XPASS"})

#: Titles of the sources, in the order the matrix lists them.
SOURCES = {
    "seed-000": "Kong — Using SSL certificates",
    "seed-001": "Kong — Define a client certificate on a Service",
    "seed-002": "Kong (legacy) — the ssl plugin",
    "seed-003": "Tyk — Implementing TLS with Tyk",
    "seed-004": "Gravitee — mTLS plans",
    "core": "core — what every gateway needs (docs/architecture.md, RFCs)",
}


@dataclass(frozen=True)
class Row:
    """One row of the matrix, with its scenarios and (after a run) its verdict."""

    id: str
    title: str
    source: str
    section: str
    note: str
    out_of_scope: str
    scenarios: tuple[str, ...]
    verdict: str

    @property
    def group(self) -> str:
        """``seed-003``, ``core`` or ``harness``: the part of the id before the colon."""
        return self.id.split(":", 1)[0]

    @property
    def failing(self) -> bool:
        """Whether this row makes the run fail."""
        return self.verdict in (FAILED, UNCOVERED)


def build(
    features: Mapping[str, Mapping[str, str]],
    scenarios: Iterable[Scenario],
    results: Mapping[str, str] | None = None,
) -> list[Row]:
    """The rows, in file order, minus the harness's own feature.

    ``results`` maps scenario ids to their result (PASSED, FAILED, ...); without
    it each in-scope row is PASSED-to-be (``COVERED``) or UNCOVERED.
    """
    proving: dict[str, list[str]] = {fid: [] for fid in features}
    for scenario in scenarios:
        for fid in scenario.features:
            proving.setdefault(fid, []).append(scenario.id)
    rows = []
    for fid, info in features.items():
        if fid.startswith("harness:"):
            continue
        ids = tuple(proving.get(fid, ()))
        rows.append(Row(
            id=fid, title=info["title"], source=info["source"], section=info.get("section", ""),
            note=info.get("note", ""), out_of_scope=info.get("out_of_scope", ""), scenarios=ids,
            verdict=_verdict(info, ids, results),
        ))
    return rows


def _verdict(info: Mapping[str, str], ids: Sequence[str], results: Mapping[str, str] | None) -> str:
    if info.get("out_of_scope"):
        return OUT_OF_SCOPE
    if not ids:
        return UNCOVERED
    if results is None:
        return "COVERED"
    ran = [results[i] for i in ids if i in results]
    if not ran:
        return NOT_RUN
    if any(r in _FAILING for r in ran):
        return FAILED
    if any(r == "PASSED" for r in ran):
        return PASSED
    return SKIPPED


def problems(rows: Iterable[Row]) -> list[str]:
    """What makes the matrix fail: uncovered in-scope rows, rows with a failed scenario."""
    out = []
    for row in rows:
        if row.verdict == UNCOVERED:
            out.append(f"{row.id}: no scenario proves it ({row.title})")
        elif row.verdict == FAILED:
            out.append(f"{row.id}: a scenario failed ({', '.join(row.scenarios)})")
    return out


def counts(rows: Sequence[Row]) -> str:
    """``93 rows: 70 passed, 14 out of scope, ...`` (seed rows only)."""
    seed = [r for r in rows if r.group.startswith("seed-")]
    tally: dict[str, int] = {}
    for row in seed:
        tally[row.verdict] = tally.get(row.verdict, 0) + 1
    parts = [f"{n} {verdict.lower()}" for verdict, n in sorted(tally.items(), key=lambda kv: -kv[1])]
    return f"{len(seed)} seed statements: {', '.join(parts)}"


def table(rows: Sequence[Row]) -> str:
    """The matrix on the terminal: verdict, row id, scenarios (or the out-of-scope reason)."""
    width = max((len(r.id) for r in rows), default=10)
    lines = [f"{'verdict':12}  {'feature':{width}}  scenarios", f"{'-' * 12}  {'-' * width}  {'-' * 9}"]
    for row in rows:
        what = row.out_of_scope if row.verdict == OUT_OF_SCOPE else ", ".join(row.scenarios) or "—"
        lines.append(f"{row.verdict:12}  {row.id:{width}}  {what}")
    return "\n".join(lines)


def markdown(rows: Sequence[Row], *, with_results: bool) -> str:
    """Markdown tables, one per source; ``with_results`` adds the verdict column."""
    lines: list[str] = []
    for group, heading in SOURCES.items():
        mine = [r for r in rows if r.group == group]
        if not mine:
            continue
        lines += ["", f"### {heading}", ""]
        if group.startswith("seed-"):
            lines.append(f"Seed file: `{mine[0].source}`.")
            lines.append("")
        header = "| feature | section | statement | scenarios |" if group.startswith("seed-") \
            else "| feature | statement | source | scenarios |"
        if with_results:
            header += " result |"
        lines += [header, "|" + " --- |" * (header.count("|") - 1)]
        for row in mine:
            proof = row.out_of_scope and f"out of scope: {_md(row.out_of_scope)}" \
                or "<br>".join(f"`{s}`" for s in row.scenarios) or "**none**"
            statement = _md(row.title) + (f" <br>*trio-gw:* {_md(row.note)}" if row.note else "")
            middle = f"{_md(row.section)} | {statement}" if group.startswith("seed-") \
                else f"{statement} | {_md(row.source)}"
            line = f"| `{row.id}` | {middle} | {proof} |"
            if with_results:
                line += f" {row.verdict} |"
            lines.append(line)
    return "\n".join(lines).lstrip("\n") + "\n"


def features_md(rows: Sequence[Row]) -> str:
    """The text of ``spec/FEATURES.md``."""
    seed = [r for r in rows if r.group.startswith("seed-")]
    out = [r for r in seed if r.verdict == OUT_OF_SCOPE]
    intro = [
        "# Feature matrix",
        "",
        "<!-- Generated from spec/features.toml and spec/cases/*.toml by"
        " `python -m spec --write-features`; do not edit by hand. -->",
        "",
        "Every feature statement of the five seed documents (the product documentation in"
        " `../shared/seeds/`), one row each with its seed file and section, and the spec"
        " scenarios that prove it; then the core features every gateway needs. `python -m spec`"
        " runs the scenarios, prints this matrix with each row's result, and fails when an"
        " in-scope row has no scenario or a scenario of it failed.",
        "",
        f"{len(seed)} seed statements: {len(seed) - len(out)} in scope, {len(out)} out of scope"
        " (each with its reason).",
        "",
        "",
    ]
    return "\n".join(intro) + markdown(rows, with_results=False)


def as_json(rows: Sequence[Row]) -> list[dict[str, Any]]:
    """The rows for the JSON report."""
    return [{
        "id": r.id, "title": r.title, "source": r.source, "section": r.section, "note": r.note,
        "out_of_scope": r.out_of_scope, "scenarios": list(r.scenarios), "verdict": r.verdict,
    } for r in rows]


def _md(text: str) -> str:
    return text.replace("|", "\\|")
