"""The settings reference page (``docs/settings.md``), generated from the table."""

from __future__ import annotations

from trio_gw.settings.table import ALIASES, SETTINGS

__all__ = ["settings_reference_markdown"]


def settings_reference_markdown() -> str:
    """The reference page of every setting with its default (``docs/settings.md``)."""
    lines = [
        "# Settings reference",
        "",
        "Generated from `trio_gw/settings/table.py` by `trio-gw settings --markdown`; a test keeps it in sync.",
        "Each setting can be set in the YAML file given with `-c`, as an environment variable",
        "`TRIO_GW_<NAME>` (upper case), or with `--set name=value`; later sources win.",
        "Lists may be YAML lists or comma-separated strings. Durations: seconds, or `500ms`, `30s`, `5m`, `1h`, `1d`.",
        "",
        "| setting | type | default | description |",
        "| --- | --- | --- | --- |",
    ]
    for s in SETTINGS:
        default = s.shown_default if s.shown_default is not None else s.default
        if isinstance(default, tuple):
            default = ", ".join(default) if default else "(none)"
        elif default is None:
            default = "(none)"
        elif isinstance(default, bool):
            default = "on" if default else "off"
        aliases = ", ".join(f"`{a}`" for a, name in ALIASES.items() if name == s.name)
        text = f"{s.help} Also accepted as {aliases}." if aliases else s.help
        lines.append(f"| `{s.name}` | {s.kind} | `{default}` | {text} |")
    return "\n".join(lines) + "\n"
