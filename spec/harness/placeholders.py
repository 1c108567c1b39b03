"""``{{name}}`` placeholders in scenario strings.

Theory of operation: a scenario is written before anything it refers to exists
(generated certificate paths, ephemeral ports).  The runner builds a flat
:class:`Context` — ``pki.server.cert`` → ``/tmp/…/server.pem``,
``proxy.http.port`` → ``43121`` — step by step as things come to exist, and
renders each value just before it is used.  An unknown name is an error that
lists the names available at that point, never an empty string.

Rendering rules:

* in a plain string, every ``{{name}}`` is replaced by ``str(value)``;
* a string that is exactly one placeholder inside a TOML table (settings or
  declarative written as tables) takes the value itself, so ports stay integers
  and PEM contents stay multi-line strings;
* in YAML text (settings or declarative written as a string), a value that
  contains a newline (PEM contents) is inserted as a JSON-quoted string, which
  is valid YAML in any position a scalar may take.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_.:-]+)\s*\}\}")


class PlaceholderError(Exception):
    """A placeholder names nothing known at this point of the scenario."""


class Context:
    """The names a scenario may refer to, growing as the scenario runs."""

    def __init__(self, values: Mapping[str, Any] | None = None) -> None:
        self._values: dict[str, Any] = dict(values or {})

    def set(self, name: str, value: Any) -> None:
        """Define (or redefine) ``name``."""
        self._values[name] = value

    def get(self, name: str) -> Any:
        """The value of ``name``.

        Raises:
            PlaceholderError: nothing of that name is defined yet.
        """
        try:
            return self._values[name]
        except KeyError:
            known = ", ".join(n for n in sorted(self._values) if not n.startswith("_")) or "(none)"
            raise PlaceholderError(f"unknown placeholder {{{{{name}}}}}; known here: {known}") from None

    def names(self) -> list[str]:
        """Every defined name, sorted."""
        return sorted(self._values)

    def render(self, text: str) -> str:
        """Replace every placeholder in ``text`` by the string form of its value."""
        return PLACEHOLDER.sub(lambda m: str(self.get(m.group(1))), text)

    def render_yaml_text(self, text: str) -> str:
        """Replace placeholders in YAML text; multi-line values become JSON-quoted scalars."""

        def one(m: re.Match[str]) -> str:
            value = self.get(m.group(1))
            if isinstance(value, str) and "\n" in value:
                return json.dumps(value)
            return str(value)

        return PLACEHOLDER.sub(one, text)

    def render_value(self, value: Any) -> Any:
        """Render strings inside nested lists and tables (see the module rules)."""
        if isinstance(value, str):
            whole = PLACEHOLDER.fullmatch(value.strip())
            if whole:
                return self.get(whole.group(1))
            return self.render(value)
        if isinstance(value, list):
            return [self.render_value(v) for v in value]
        if isinstance(value, dict):
            return {k: self.render_value(v) for k, v in value.items()}
        return value
