"""The conformance table: on the terminal, as Markdown, or as JSON."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

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


def markdown(results: Sequence[Result], features: Mapping[str, Mapping[str, str]]) -> str:
    """A Markdown report: summary, per-scenario table, per-feature coverage, failure details."""
    lines = ["# trio-gw conformance report", "", summary(results), "",
             "| scenario | title | features | result | time | reason |", "| --- | --- | --- | --- | --- | --- |"]
    for r in results:
        lines.append(f"| `{r.scenario.id}` | {_md(r.scenario.title)} | {', '.join(r.scenario.features)} | "
                     f"{r.result} | {r.duration:.2f}s | {_md(_one_line(r.reason))} |")
    lines += ["", "## Features", "", "| feature | source | scenarios | passed |", "| --- | --- | --- | --- |"]
    for fid, info in features.items():
        mine = [r for r in results if fid in r.scenario.features]
        if not mine and fid.startswith("harness:"):
            continue  # the harness's own scenarios run only with --harness-test
        passed = sum(1 for r in mine if r.result == "PASSED")
        lines.append(f"| `{fid}` {_md(info['title'])} | {_md(info['source'])} | {len(mine)} | {passed} |")
    details = failures(results)
    if details:
        lines += ["", "## Failures", "", "```", details, "```"]
    return "\n".join(lines) + "\n"


def as_json(results: Sequence[Result]) -> str:
    """Machine-readable results."""
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
    return json.dumps({"summary": summary(results), "results": out}, indent=2) + "\n"


def _one_line(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _md(text: str) -> str:
    return text.replace("|", "\\|")
