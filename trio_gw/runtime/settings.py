"""Reading node settings: the YAML file given with ``-c``, ``TRIO_GW_*`` variables, ``--set`` flags.

Precedence, lowest to highest: the default in the table (:mod:`trio_gw.settings`) → the YAML
file → the environment → the command line.  Parsing and the typed result are
:mod:`trio_gw.settings`; this module is the IO around them.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import yaml

from trio_gw.errors import ConfigError
from trio_gw.settings import Settings, parse_settings

ENV_PREFIX = "TRIO_GW_"

__all__ = ["ENV_PREFIX", "cli_layer", "env_layer", "load_settings", "read_settings_file"]


def read_settings_file(path: str | os.PathLike[str]) -> dict[str, object]:
    """Read a YAML settings file into a mapping.

    Raises:
        ConfigError: the file is unreadable, not YAML, or not a mapping.
    """
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read settings file: {exc.strerror}", path=str(path)) from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"not valid YAML: {exc}", path=str(path)) from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError("expected a mapping of setting names to values", path=str(path))
    return data


def env_layer(environ: Mapping[str, str]) -> dict[str, object]:
    """The ``TRIO_GW_<KEY>`` variables as a settings layer (names lowercased)."""
    return {k[len(ENV_PREFIX):].lower(): v for k, v in environ.items() if k.startswith(ENV_PREFIX)}


def cli_layer(assignments: Iterable[str]) -> dict[str, object]:
    """``key=value`` strings from ``--set`` flags as a settings layer."""
    out: dict[str, object] = {}
    for item in assignments:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--set expects key=value, got {item!r}", path=key)
        out[key.strip()] = value
    return out


def load_settings(
    path: str | os.PathLike[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, object] | None = None,
) -> Settings:
    """Defaults → YAML file → ``TRIO_GW_*`` environment → CLI overrides."""
    layers: list[tuple[str, Mapping[str, object]]] = []
    if path is not None:
        layers.append((str(path), read_settings_file(path)))
    layers.append(("environment", env_layer(os.environ if environ is None else environ)))
    if overrides:
        layers.append(("command line", overrides))
    return parse_settings(layers)
