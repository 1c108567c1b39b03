"""Reading one entity's fields from a decoded document, collecting every problem.

A :class:`Fields` wraps one mapping and its path.  Each getter validates one
field and returns a usable value: on a problem it records a
:class:`~trio_gw.errors.Problem` at the field's path and returns the default,
so reading goes on and one load reports everything wrong with a file.  ``None``
(YAML ``key:`` or ``key: null``) means "not set", as in Kong.

References to other entities are returned as :class:`Ref` values; the
declarative loader resolves them once every entity has its id.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

from trio_gw.errors import Problem
from trio_gw.model.values import InvalidValue, check_tag, check_uuid

T = TypeVar("T")

_MAX_SHOWN: Final = 60
#: Timestamps are Unix seconds; 2**31 - 1 keeps them valid 32-bit values as in Kong's DB.
_MAX_TIMESTAMP: Final = 2**31 - 1


@dataclass(frozen=True)
class Ref:
    """An unresolved reference from one entity to another.

    ``kind`` is the collection referred to (``"services"``, ``"certificates"``,
    ...), ``value`` the id, name or fingerprint as written, ``path`` where.
    """

    kind: str
    value: str
    path: str = field(compare=False)


@dataclass
class Context:
    """What field readers share during one load."""

    problems: list[Problem]
    now: int
    select_tags: tuple[str, ...] = ()
    legacy_paths: bool = False


def join_path(prefix: str, key: object) -> str:
    """Append a key (``str``) or index (``int``) to a path such as ``services[0]``.

    Args:
        prefix: the parent path, or ``""`` at the top.
        key: a field name or list index.

    Returns:
        ``prefix.key`` or ``prefix[index]``.
    """
    if isinstance(key, int) and not isinstance(key, bool):
        return f"{prefix}[{key}]"
    return f"{prefix}.{key}" if prefix else str(key)


def describe(value: object) -> str:
    """Show a wrong value briefly in a message: ``'abc'``, ``5``, ``a list``.

    Args:
        value: the value found.

    Returns:
        A short description.
    """
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    text = repr(value)
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 3] + "..."


_FIELD_NAME: Final = re.compile(r"[A-Za-z0-9_.\-\[\]]{1,64}")


def field_label(key: object) -> str:
    """``key`` as an error message may show it: itself when it looks like a field name.

    An unknown key is echoed back in 400 answers and logs.  A body sent with the
    wrong encoding (``curl -d @key.pem`` form-encodes the whole file into one
    field *name*) would echo a private key; anything that is not a short field
    name is described, never shown.
    """
    text = str(key)
    if _FIELD_NAME.fullmatch(text):
        return text
    return f"<a field name of {len(text)} characters, not shown>"


def unknown_key_message(key: object, allowed: Collection[str]) -> str:
    """Say that ``key`` is unknown, suggesting the closest allowed key.

    Args:
        key: the unknown key.
        allowed: the keys allowed at that place.

    Returns:
        ``unknown field (did you mean 'paths'?)`` or ``unknown field``.
    """
    close = difflib.get_close_matches(str(key), sorted(allowed), n=1, cutoff=0.6)
    return f"unknown field (did you mean {close[0]!r}?)" if close else "unknown field"


def is_int(value: object) -> bool:
    """Tell whether ``value`` is an integer and not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


class Fields:
    """One entity mapping being read; see the module docstring."""

    def __init__(self, raw: Mapping[Any, Any], path: str, ctx: Context) -> None:
        self.raw = raw
        self.path = path
        self.ctx = ctx

    def at(self, key: object) -> str:
        """Return the path of field ``key``; an odd key (not text, blank, control characters) is quoted."""
        plain = isinstance(key, str) and key.isprintable() and key and key.strip() == key
        return join_path(self.path, key if plain else repr(key))

    def report(self, key: object | None, message: str) -> None:
        """Record a problem at field ``key`` (``None``: the entity itself)."""
        self.ctx.problems.append(Problem(self.path if key is None else self.at(key), message))

    def get(self, key: str) -> Any:
        """Return the raw value of ``key``, ``None`` when absent or null."""
        return self.raw.get(key)

    def check_keys(self, allowed: Collection[str], defaults_only: Mapping[str, object] | None = None) -> None:
        """Report every key not in ``allowed``.

        Args:
            allowed: keys this entity accepts.
            defaults_only: Kong fields trio-gw does not implement, accepted only
                with Kong's default value (so decK dumps of Kong load).
        """
        defaults_only = defaults_only or {}
        known = set(allowed) | set(defaults_only)
        for key in self.raw:
            if key in defaults_only:
                value, default = self.raw[key], defaults_only[key]
                if value is not None and (value != default or type(value) is not type(default)):
                    self.report(key, f"not supported yet (only Kong's default {default!r} is accepted)")
            elif key not in known:
                self.report(field_label(key), unknown_key_message(key, known))

    def integer(self, key: str, low: int, high: int, default: T) -> int | T:
        """Read an integer in ``low..high``; ``default`` when absent or wrong."""
        value = self.get(key)
        if value is None:
            return default
        if not is_int(value) or not low <= value <= high:
            self.report(key, f"expected an integer between {low} and {high}, got {describe(value)}")
            return default
        return int(value)

    def boolean(self, key: str, default: T) -> bool | T:
        """Read a boolean; ``default`` when absent or wrong."""
        value = self.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            self.report(key, f"expected true or false, got {describe(value)}")
            return default
        return value

    def string(self, key: str, check: Callable[[str], str] | None = None, *, required: bool = False) -> str | None:
        """Read a non-empty string, normalised by ``check`` (which raises :class:`InvalidValue`)."""
        return self._string(self.get(key), self.at(key), check, required=required)

    def _string(
        self, value: object, path: str, check: Callable[[str], str] | None, *, required: bool
    ) -> str | None:
        if value is None:
            if required:
                self.ctx.problems.append(Problem(path, "required field missing"))
            return None
        if not isinstance(value, str) or not value:
            self.ctx.problems.append(Problem(path, f"expected a non-empty string, got {describe(value)}"))
            return None
        if check is None:
            return value
        try:
            return check(value)
        except InvalidValue as exc:
            self.ctx.problems.append(Problem(path, str(exc)))
            return None

    def choice(self, key: str, choices: Collection[T], default: T, unsupported: Collection[T] = ()) -> T:
        """Read one of ``choices``; values in ``unsupported`` get a "not supported yet" message."""
        value = self.get(key)
        if value is None:
            return default
        for choice in choices:
            if type(value) is type(choice) and value == choice:
                return choice
        self.report(key, _choice_message(value, choices, unsupported))
        return default

    def strings(
        self,
        key: str,
        check: Callable[[str], str] | None = None,
        default: tuple[str, ...] = (),
    ) -> tuple[str, ...]:
        """Read a list of distinct strings, each normalised by ``check``."""
        value = self.get(key)
        if value is None:
            return default
        if not isinstance(value, list | tuple):
            self.report(key, f"expected a list of strings, got {describe(value)}")
            return default
        items: list[str] = []
        for index, item in enumerate(value):
            path = join_path(self.at(key), index)
            checked = self._string(item, path, check, required=True)
            if checked is not None and checked in items:
                self.ctx.problems.append(Problem(path, f"duplicate value {checked!r}"))
            elif checked is not None:
                items.append(checked)
        return tuple(items)

    def tags(self) -> tuple[str, ...]:
        """Read ``tags``, adding the document's ``_info.select_tags``."""
        tags = self.strings("tags", check_tag)
        return tags + tuple(t for t in self.ctx.select_tags if t not in tags)

    def identity(self) -> str | None:
        """Read ``id`` (a UUID, lowercased), ``None`` when absent or wrong."""
        return self.string("id", check_uuid)

    def timestamps(self) -> dict[str, int]:
        """Read ``created_at``/``updated_at`` (Unix seconds), defaulting to the load time."""
        now = self.ctx.now
        return {
            "created_at": self.integer("created_at", 0, _MAX_TIMESTAMP, now),
            "updated_at": self.integer("updated_at", 0, _MAX_TIMESTAMP, now),
        }

    def mapping(self, key: str) -> Mapping[Any, Any] | None:
        """Read a mapping; ``None`` when absent or wrong."""
        value = self.get(key)
        if value is None or isinstance(value, Mapping):
            return value
        self.report(key, f"expected a mapping, got {describe(value)}")
        return None

    def reference(self, key: str, kind: str, natural: str | None) -> Ref | None:
        """Read a reference: a string, ``{id: ...}`` or ``{<natural>: ...}``."""
        return self.reference_value(self.get(key), self.at(key), kind, natural)

    def reference_value(self, value: object, path: str, kind: str, natural: str | None) -> Ref | None:
        """Read a reference found at ``path`` (see :meth:`reference`)."""
        if isinstance(value, Mapping):
            keys = {"id"} | ({natural} if natural else set())
            if len(value) == 1 and next(iter(value)) in keys:
                value = next(iter(value.values()))
            else:
                shown = " or ".join(f"{{{k}: ...}}" for k in sorted(keys))
                self.ctx.problems.append(Problem(path, f"expected a string or {shown}"))
                return None
        text = self._string(value, path, None, required=False)
        return Ref(kind, text, path) if text is not None else None


def _choice_message(value: object, choices: Collection[T], unsupported: Collection[T]) -> str:
    if any(type(value) is type(u) and value == u for u in unsupported):
        return f"{value!r} is not supported yet (supported: {', '.join(map(str, choices))})"
    shown = ", ".join(repr(c) for c in choices)
    return f"expected one of {shown}, got {describe(value)}"


def check_list(fields: Fields, key: str) -> list[tuple[str, Mapping[Any, Any]]]:
    """Read a list of mappings (nested entities); report items that are not mappings.

    Args:
        fields: the parent entity.
        key: the list field, e.g. ``routes``.

    Returns:
        ``(path, item)`` for each mapping item.
    """
    return items_at(fields.get(key), fields.at(key), fields.ctx)


def items_at(value: object, path: str, ctx: Context) -> list[tuple[str, Mapping[Any, Any]]]:
    """Read a list of mappings found at ``path`` (see :func:`check_list`).

    Args:
        value: the raw list (``None``: empty).
        path: where it is.
        ctx: the load context, for problems.

    Returns:
        ``(path, item)`` for each mapping item.
    """
    if value is None:
        return []
    if not isinstance(value, list | tuple):
        ctx.problems.append(Problem(path, f"expected a list, got {describe(value)}"))
        return []
    found = []
    for index, item in enumerate(value):
        item_path = join_path(path, index)
        if isinstance(item, Mapping):
            found.append((item_path, item))
        else:
            ctx.problems.append(Problem(item_path, f"expected a mapping, got {describe(item)}"))
    return found
