"""Host maps: settings keyed by upstream host (Tyk ``security.certificates.upstream``,
``security.pinned_public_keys``).

Theory of operation
-------------------
Tyk maps upstream hosts to values with keys of three shapes: ``*`` (every
host), ``*.example.com`` (a one-label wildcard) and an exact host, optionally
with a port (``api.example.com:8443``).  trio-gw looks a host up in this order
and takes the first hit, most specific first:

1. ``host:port`` exact;
2. ``host`` exact;
3. ``*.parent`` wildcard covering ``host`` (one label, as in certificates:
   ``*.example.com`` covers ``a.example.com``, not ``example.com`` nor
   ``a.b.example.com``; see ``tls.hostname``);
4. ``*``.

Hosts and keys are compared in canonical form (lowercase, no trailing dot,
IDNA A-labels, canonical IP text; ``tls.hostname.normalize_server_name``).
Values are kept as configured (strings, or lists of strings where the setting
allows several); resolving them (store ids, files) is the caller's job.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from trio_gw.errors import ConfigError, Problem
from trio_gw.tls.hostname import InvalidServerName, normalize_server_name, wildcard_base

__all__ = ["CATCH_ALL", "HostMap", "parse_host_map", "parse_host_map_values"]

_T = TypeVar("_T")
_U = TypeVar("_U")
#: The key that applies to every host.
CATCH_ALL = "*"


@dataclass(frozen=True)
class HostMap(Generic[_T]):
    """An immutable lookup of host → value with Tyk's key shapes."""

    exact: Mapping[tuple[str, int | None], _T] = field(default_factory=dict)
    wildcards: Mapping[str, _T] = field(default_factory=dict)
    catch_all: _T | None = None
    #: The configured key of every entry, by the canonical lookup key (for logs).
    spelled: Mapping[str, str] = field(default_factory=dict)

    def select(self, host: str, port: int) -> tuple[str, _T] | None:
        """Return ``(configured key, value)`` for ``host:port``, or ``None``.

        Args:
            host: the upstream host (name or IP literal).
            port: the upstream port.

        Returns:
            The most specific entry (see the module docstring), or ``None``.
        """
        try:
            name = normalize_server_name(host)
        except InvalidServerName:
            name = None
        if name is not None:
            for key in ((name, port), (name, None)):
                if key in self.exact:
                    return self.spelled[_spell(key)], self.exact[key]
            _, dot, parent = name.partition(".")
            if dot and parent in self.wildcards:
                return self.spelled["*." + parent], self.wildcards[parent]
        if self.catch_all is not None:
            return self.spelled[CATCH_ALL], self.catch_all
        return None

    def __bool__(self) -> bool:
        return bool(self.exact or self.wildcards or self.catch_all is not None)

    def map(self, convert: Callable[[str, _T], _U]) -> HostMap[_U]:
        """Return a map with every value replaced by ``convert(configured key, value)``."""
        spell = {k: self.spelled[_spell(k)] for k in self.exact}
        return HostMap(
            {k: convert(spell[k], v) for k, v in self.exact.items()},
            {b: convert(self.spelled["*." + b], v) for b, v in self.wildcards.items()},
            None if self.catch_all is None else convert(CATCH_ALL, self.catch_all),
            self.spelled,
        )


def _spell(key: tuple[str, int | None]) -> str:
    host, port = key
    host = f"[{host}]" if ":" in host and port is not None else host
    return host if port is None else f"{host}:{port}"


def parse_host_map(raw: object, *, path: str) -> HostMap[str]:
    """Parse a host map whose values are single strings.

    Args:
        raw: a mapping, or a JSON object in a string (environment variables), or
            ``None``/empty for no entries.
        path: the setting name, for errors.

    Returns:
        The map.

    Raises:
        ConfigError: every bad key or value, each with its path.
    """
    return _parse(raw, path, _one_string)


def parse_host_map_values(raw: object, *, path: str) -> HostMap[tuple[str, ...]]:
    """Parse a host map whose values are lists: a list, or Tyk's ``"id1,id2"`` string."""
    return _parse(raw, path, _string_list)


def _one_string(value: object, path: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError("expected a non-empty string", path)
    return value.strip()


def _string_list(value: object, path: str) -> tuple[str, ...]:
    items: list[object]
    if isinstance(value, str):
        items = [v for v in value.split(",") if v.strip()]
    elif isinstance(value, list | tuple):
        items = list(value)
    else:
        raise ConfigError("expected a list or a comma-separated string", path)
    if not items:
        raise ConfigError("expected at least one value", path)
    return tuple(_one_string(v, f"{path}[{i}]") for i, v in enumerate(items))


def _as_mapping(raw: object, path: str) -> Mapping[object, object]:
    if raw is None or raw == "":
        return {}
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError as exc:
            raise ConfigError("expected a mapping (a JSON object when given as text)", path) from exc
    if not isinstance(raw, Mapping):
        raise ConfigError("expected a mapping of upstream hosts to values", path)
    return raw


def _parse_key(key: object, path: str) -> tuple[str, int | None] | str:
    """``(host, port)`` for exact keys, the wildcard base for ``*.x.y``, or ``"*"``."""
    if not isinstance(key, str):
        raise ConfigError("keys must be strings", path)
    text = key.strip()
    if text == CATCH_ALL:
        return CATCH_ALL
    if text.startswith("*"):
        base = wildcard_base(text)
        if base is None:
            raise ConfigError(f"{key!r}: a wildcard key is '*' or '*.' + a name of two labels or more", path)
        return base
    host, port = split_host_port(text, path=path)
    try:
        return normalize_server_name(host), port
    except InvalidServerName as exc:
        raise ConfigError(f"{key!r} is not a host or host:port: {exc.reason}", path) from exc


def split_host_port(text: str, *, path: str = "") -> tuple[str, int | None]:
    """``host``, ``host:port``, ``[v6]`` or ``[v6]:port`` as ``(host, port or None)``.

    A bare IPv6 address (more than one ``:``) has no port.

    Raises:
        ConfigError: a port that is not 1-65535 in ASCII digits, or anything
            after ``]`` but ``:port`` (under ``path``).
    """
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if not rest:
            return host, None
        if not rest.startswith(":"):
            raise ConfigError(f"{text!r}: after ']' only ':port' may follow", path)
        port = rest[1:]
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    else:
        return text, None
    if not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536:
        raise ConfigError(f"{text!r}: the port must be 1-65535", path)
    return host, int(port)


def _parse(raw: object, path: str, read: object) -> HostMap[_T]:
    mapping = _as_mapping(raw, path)
    exact: dict[tuple[str, int | None], _T] = {}
    wildcards: dict[str, _T] = {}
    catch_all: _T | None = None
    spelled: dict[str, str] = {}
    problems: list[Problem] = []
    for key, value in mapping.items():
        where = f"{path}.{key}"
        try:
            parsed = _parse_key(key, where)
            item: _T = read(value, where)  # type: ignore[operator]  # one of the two readers above
        except ConfigError as exc:
            problems.extend(Problem(p.path or where, p.message) for p in exc.problems)
            continue
        canonical = parsed if isinstance(parsed, str) else _spell(parsed)
        if isinstance(parsed, str) and parsed != CATCH_ALL:
            canonical = "*." + parsed
        if canonical in spelled:
            problems.append(Problem(where, f"same host as {spelled[canonical]!r}"))
            continue
        spelled[canonical] = str(key)
        if parsed == CATCH_ALL:
            catch_all = item
        elif isinstance(parsed, str):
            wildcards[parsed] = item
        else:
            exact[parsed] = item
    if problems:
        raise ConfigError(problems)
    return HostMap(exact, wildcards, catch_all, spelled)
