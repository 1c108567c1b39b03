"""Entities as datastore rows: one row per entity, its fields as a JSON object.

A row is ``(id, data)`` plus the kind's *unique columns* (a service's ``name``,
a consumer's ``username`` ...), copies of fields that the database indexes so
that it, too, refuses duplicates.  ``data`` holds every field but ``id``.

Decoding follows the dataclass annotations, so a round trip is exact: JSON
arrays become tuples where the entity has tuples, mappings become dicts, and a
value of the wrong type is reported instead of passed on.  A plugin's
``config`` is free-form JSON data and comes back as decoded (lists stay lists).
"""

from __future__ import annotations

import dataclasses
import json
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Union, get_args, get_origin, get_type_hints

from trio_gw.model.credentials import Credential
from trio_gw.model.entities import SNI, CACertificate, Certificate, Consumer, Entities, Plugin, Route, Service
from trio_gw.store.base import StoreError

__all__ = [
    "ENTITY_TYPES",
    "KINDS",
    "UNIQUE_COLUMNS",
    "Changes",
    "decode_entity",
    "diff",
    "dump_row",
    "entity_data",
    "load_row",
    "unique_values",
]

#: Each kind (an ``Entities`` field and a table name) and its entity class, in the
#: order tables are written and read.
ENTITY_TYPES: Final[Mapping[str, type[Any]]] = {
    "certificates": Certificate,
    "ca_certificates": CACertificate,
    "snis": SNI,
    "services": Service,
    "routes": Route,
    "consumers": Consumer,
    "plugins": Plugin,
    "credentials": Credential,
}
KINDS: Final = tuple(ENTITY_TYPES)

#: Columns copied out of ``data`` so the database enforces Kong's uniqueness
#: (``plugins``: the scope, made unique by an expression index).
UNIQUE_COLUMNS: Final[Mapping[str, tuple[str, ...]]] = {
    "certificates": (),
    "ca_certificates": (),
    "snis": ("name",),
    "services": ("name",),
    "routes": ("name",),
    "consumers": ("username", "custom_id"),
    "plugins": ("name", "route", "service", "consumer"),
    "credentials": (),
}

_NONE_TYPE: Final = type(None)


def entity_data(entity: Any) -> dict[str, Any]:
    """Give an entity's fields, except ``id``, as JSON-ready values (lists, dicts).

    Args:
        entity: one of the :data:`ENTITY_TYPES`.

    Returns:
        Field name → value, in the dataclass's field order.
    """
    return {f.name: _plain(getattr(entity, f.name)) for f in dataclasses.fields(entity) if f.name != "id"}


def dump_row(where: str, data: Mapping[str, Any]) -> str:
    """Serialise a row's fields as compact JSON.

    Args:
        where: ``kind id``, for the message.
        data: what :func:`entity_data` gave (possibly with sealed fields).

    Returns:
        JSON text.

    Raises:
        StoreError: a value JSON cannot hold (a plugin config with bytes, NaN ...).
    """
    try:
        return json.dumps(data, separators=(",", ":"), allow_nan=False, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise StoreError(f"{where}: cannot be stored: {exc}") from exc


def load_row(where: str, text: str) -> dict[str, Any]:
    """Parse a row's JSON text.

    Args:
        where: ``kind id``, for the message.
        text: the ``data`` column.

    Returns:
        Field name → value.

    Raises:
        StoreError: not a JSON object.
    """
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise StoreError(f"{where}: the row is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise StoreError(f"{where}: the row is not a JSON object")
    return data


def unique_values(kind: str, entity: Any) -> tuple[Any, ...]:
    """The values of the kind's :data:`UNIQUE_COLUMNS`, in order."""
    return tuple(getattr(entity, name) for name in UNIQUE_COLUMNS[kind])


def decode_entity(kind: str, entity_id: str, data: Mapping[str, Any]) -> Any:
    """Build an entity from its row's fields (sealed fields already opened).

    Args:
        kind: one of :data:`KINDS`.
        entity_id: the row's id.
        data: field name → JSON value.

    Returns:
        The entity.

    Raises:
        StoreError: the fields do not fit the entity.
    """
    where = f"{kind} {entity_id}"
    hints = _hints(ENTITY_TYPES[kind])
    unknown = sorted((set(data) - set(hints)) | ({"id"} & set(data)))
    if unknown:
        raise StoreError(f"{where}: unknown fields {unknown} (written by a newer trio-gw?)")
    values = {name: _decode(hints[name], value, f"{where}: {name}") for name, value in data.items()}
    try:
        return ENTITY_TYPES[kind](id=entity_id, **values)
    except TypeError as exc:
        raise StoreError(f"{where}: {exc}") from exc


@dataclass(frozen=True)
class Changes:
    """What one kind's commit writes: entities to insert or replace, ids to delete."""

    upserts: tuple[Any, ...] = ()
    deletes: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.upserts or self.deletes)

    def ids(self) -> frozenset[str]:
        """Every id this change touches (written or deleted)."""
        return frozenset(e.id for e in self.upserts) | frozenset(self.deletes)


def diff(old: Entities, new: Entities) -> dict[str, Changes]:
    """Compare two configurations kind by kind.

    Args:
        old: the configuration stored.
        new: the configuration wanted.

    Returns:
        For each kind with a difference, its :class:`Changes`.
    """
    out: dict[str, Changes] = {}
    for kind in KINDS:
        before: Mapping[str, Any] = getattr(old, kind)
        after: Mapping[str, Any] = getattr(new, kind)
        changes = Changes(
            upserts=tuple(e for i, e in after.items() if before.get(i) != e),
            deletes=tuple(i for i in before if i not in after),
        )
        if changes:
            out[kind] = changes
    return out


def _plain(value: Any) -> Any:
    """Turn tuples and mappings into JSON's lists and dicts, recursively."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


_HINTS: dict[type[Any], dict[str, Any]] = {}


def _hints(cls: type[Any]) -> dict[str, Any]:
    if cls not in _HINTS:
        hints = get_type_hints(cls)
        _HINTS[cls] = {f.name: hints[f.name] for f in dataclasses.fields(cls)}
    return _HINTS[cls]


def _decode(tp: Any, value: Any, where: str) -> Any:
    """Check ``value`` against the annotation ``tp``, rebuilding tuples and dicts."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin is Union or origin is types.UnionType:
        args = get_args(tp)
        if value is None and _NONE_TYPE in args:
            return None
        (tp,) = [a for a in args if a is not _NONE_TYPE]
        return _decode(tp, value, where)
    if origin is tuple:
        _expect(isinstance(value, list), where, "a list", value)
        return tuple(_decode(get_args(tp)[0], v, where) for v in value)
    if origin is Mapping:
        _expect(isinstance(value, dict), where, "an object", value)
        key_type, value_type = get_args(tp)
        return {_decode(key_type, k, where): _decode(value_type, v, where) for k, v in value.items()}
    check = _SCALARS.get(tp)
    if check is None:  # pragma: no cover - a new annotation in entities.py needs a rule here
        raise TypeError(f"no rule to decode {tp!r}")
    _expect(check(value), where, tp.__name__, value)
    return value


_SCALARS: Final[Mapping[Any, Callable[[Any], bool]]] = {
    str: lambda v: isinstance(v, str),
    bool: lambda v: isinstance(v, bool),
    int: lambda v: isinstance(v, int) and not isinstance(v, bool),
}


def _expect(ok: bool, where: str, wanted: str, value: Any) -> None:
    if not ok:
        raise StoreError(f"{where}: expected {wanted}, found {type(value).__name__}")
