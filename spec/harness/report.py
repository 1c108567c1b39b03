"""The conformance table: on the terminal, as Markdown, or as JSON."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from spec.harness import matrix
from spec.harness.runner import FAILING, Result

_ORDER = ("PASSED", "FAILED", "ERROR", "XPASS", "XFAIL", "SKIPPED")


def summary(results: Sequence[Result]) -> str:
    """``12 passed, 2 failed, 1 skipped in 34.5s``."""
    counts = {name: sum(1 for r in results if r.result == name) for name in _ORDER}
    parts = [f"{n} {name.lower()}" for name, n in counts.items() if n]
    total = sum(r.duration for r in results)
    return f"{', '.join(parts) or 'no scenarios'} ({total:.1f}s of scenario time)"


def table(results: Sequence[Result]) -> str:
    """A fixed-width table: scenario, features, result, duration, reason."""
    rows = [("scenario", "features", "result", "time", "reason")]
    for r in results:
        rows.append((r.scenario.id, ", ".join(r.scenario.features), r.result, f"{r.duration:.2f}s",
                     _one_line(r.reason)))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = []
    for i, row in enumerate(rows):
        cells = [row[c].ljust(widths[c]) for c in range(4)]
        lines.append("  ".join(cells) + ("  " + row[4] if row[4] else ""))
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def failures(results: Sequence[Result]) -> str:
    """The details of every failing scenario."""
    blocks = []
    for r in results:
        if r.result in FAILING:
            where = f" (kept: {r.directory})" if r.directory else ""
            blocks.append("\n".join([f"=== {r.result} {r.scenario.id} — {r.scenario.title} [{r.scenario.source}]{where}",
                                     *(r.details or [r.reason])]))
    return "\n\n".join(blocks)


def markdown(results: Sequence[Result], rows: Sequence[matrix.Row]) -> str:
    """A Markdown report: summary, the feature matrix with results, per-scenario table, failures."""
    lines = ["# trio-gw conformance report", "", summary(results), "", matrix.counts(rows), "",
             "## Feature matrix", "", matrix.markdown(rows, with_results=True),
             "## Scenarios", "",
             "| scenario | title | features | result | time | reason |", "| --- | --- | --- | --- | --- | --- |"]
    for r in results:
        lines.append(f"| `{r.scenario.id}` | {_md(r.scenario.title)} | {', '.join(r.scenario.features)} | "
                     f"{r.result} | {r.duration:.2f}s | {_md(_one_line(r.reason))} |")
    details = failures(results)
    if details:
        lines += ["", "## Failures", "", "```", details, "```"]
    return "\n".join(lines) + "\n"


def as_json(results: Sequence[Result], rows: Sequence[matrix.Row]) -> str:
    """Machine-readable results and matrix."""
    out: list[dict[str, Any]] = [{
        "id": r.scenario.id,
        "title": r.scenario.title,
        "features": list(r.scenario.features),
        "source": r.scenario.source,
        "result": r.result,
        "duration": round(r.duration, 3),
        "reason": r.reason,
        "details": r.details,
    } for r in results]
    return json.dumps({"summary": summary(results), "matrix_summary": matrix.counts(rows),
                       "matrix": matrix.as_json(rows), "results": out}, indent=2) + "\n"


def _one_line(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _md(text: str) -> str:
    return text.replace("|", "\\|")
