"""Whole-configuration integrity: references resolve, unique fields are unique.

The declarative loader checks a document as it reads it (``model.declarative``);
the Admin API changes one entity at a time and must leave a configuration the
loader would have accepted.  :func:`integrity_problems` checks a finished
:class:`~trio_gw.model.entities.Entities` for the rules that span entities:

- every reference points at an entity that exists (route → service, SNI →
  certificate, service → client certificate and CA certificates, plugin →
  service/route/consumer, plugin ``config.ca_certificates`` → CA certificates);
- unique fields are unique within their kind (service and route ``name``,
  consumer ``username`` and ``custom_id``, SNI ``name``);
- at most one plugin of a name per scope (service, route, consumer);
- every entity is stored under its own id.

Each problem is structured, so a caller can turn it into its own error shape
(the Admin API gives 409 for uniqueness and for references left dangling by a
delete).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

from trio_gw.model.entities import Entities

#: (kind, field) pairs whose values must be unique within the kind.
UNIQUE_FIELDS: Final = (
    ("services", "name"),
    ("routes", "name"),
    ("consumers", "username"),
    ("consumers", "custom_id"),
    ("snis", "name"),
)
#: (kind, field, target kind): single references (``None`` means unset).
REFERENCES: Final = (
    ("routes", "service", "services"),
    ("snis", "certificate", "certificates"),
    ("services", "client_certificate", "certificates"),
    ("plugins", "service", "services"),
    ("plugins", "route", "routes"),
    ("plugins", "consumer", "consumers"),
)
#: (kind, field, target kind): references held in a tuple of ids.
LIST_REFERENCES: Final = (
    ("services", "ca_certificates", "ca_certificates"),
    ("services", "client_certificate_alternates", "certificates"),
)
KINDS: Final = ("services", "routes", "certificates", "ca_certificates", "snis", "consumers", "plugins")


@dataclass(frozen=True)
class IntegrityProblem:
    """One broken cross-entity rule.

    ``reason`` is ``"unique"``, ``"reference"``, ``"plugin_scope"`` or ``"id"``;
    ``kind``/``entity_id``/``field`` locate the offending entity and field;
    ``value`` is the duplicated value or the missing target's id; ``target`` the
    kind referred to (references only) and ``other_id`` the entity already
    holding a unique value.
    """

    reason: str
    kind: str
    entity_id: str
    field: str
    value: str
    target: str = ""
    other_id: str = ""

    def __str__(self) -> str:
        if self.reason == "reference":
            return f"{self.kind} {self.entity_id}: {self.field} refers to missing {self.target} {self.value!r}"
        if self.reason == "id":
            return f"{self.kind}: entity stored under {self.value!r} has id {self.entity_id!r}"
        return f"{self.kind} {self.entity_id}: duplicate {self.field} {self.value!r} (also {self.other_id})"


def integrity_problems(entities: Entities) -> tuple[IntegrityProblem, ...]:
    """Check the cross-entity rules of a whole configuration.

    Args:
        entities: the configuration.

    Returns:
        Every problem found, in a stable order (empty when consistent).
    """
    return (
        *_id_problems(entities),
        *_unique_problems(entities),
        *_reference_problems(entities),
        *_plugin_scope_problems(entities),
    )


def _kind(entities: Entities, kind: str) -> Mapping[str, Any]:
    found: Mapping[str, Any] = getattr(entities, kind)
    return found


def _id_problems(entities: Entities) -> Iterator[IntegrityProblem]:
    for kind in KINDS:
        for key, entity in _kind(entities, kind).items():
            if entity.id != key:
                yield IntegrityProblem("id", kind, entity.id, "id", key)


def _unique_problems(entities: Entities) -> Iterator[IntegrityProblem]:
    for kind, field in UNIQUE_FIELDS:
        first: dict[object, str] = {}
        for entity in _kind(entities, kind).values():
            value = getattr(entity, field)
            if value is None:
                continue
            other = first.setdefault(value, entity.id)
            if other != entity.id:
                yield IntegrityProblem("unique", kind, entity.id, field, str(value), other_id=other)


def _reference_problems(entities: Entities) -> Iterator[IntegrityProblem]:
    for kind, field, target in REFERENCES:
        targets = _kind(entities, target)
        for entity in _kind(entities, kind).values():
            value = getattr(entity, field)
            if value is not None and value not in targets:
                yield IntegrityProblem("reference", kind, entity.id, field, value, target)
    for kind, field, target in LIST_REFERENCES:
        targets = _kind(entities, target)
        for entity in _kind(entities, kind).values():
            for value in getattr(entity, field):
                if value not in targets:
                    yield IntegrityProblem("reference", kind, entity.id, field, value, target)
    for plugin in entities.plugins.values():
        for value in _plugin_ca_certificates(plugin.config):
            if value not in entities.ca_certificates:
                yield IntegrityProblem(
                    "reference", "plugins", plugin.id, "config.ca_certificates", value, "ca_certificates"
                )


def _plugin_ca_certificates(config: Mapping[str, Any]) -> tuple[str, ...]:
    """The CA certificate ids a plugin's config refers to (mtls-auth, header-cert-auth)."""
    value = config.get("ca_certificates")
    if not isinstance(value, list | tuple):
        return ()
    return tuple(v for v in value if isinstance(v, str))


def _plugin_scope_problems(entities: Entities) -> Iterator[IntegrityProblem]:
    first: dict[tuple[str, str | None, str | None, str | None], str] = {}
    for plugin in entities.plugins.values():
        scope = (plugin.name, plugin.service, plugin.route, plugin.consumer)
        other = first.setdefault(scope, plugin.id)
        if other != plugin.id:
            yield IntegrityProblem("plugin_scope", "plugins", plugin.id, "name", plugin.name, other_id=other)


def referrers(entities: Entities, kind: str, entity_id: str) -> tuple[tuple[str, str, str], ...]:
    """Find the entities that refer to one entity.

    Args:
        entities: the configuration.
        kind: the kind of the entity referred to (``"services"``, ...).
        entity_id: its id.

    Returns:
        ``(kind, id, field)`` of every referrer, in a stable order.
    """
    found: list[tuple[str, str, str]] = []
    for source, field, target in REFERENCES:
        if target == kind:
            found += [(source, e.id, field) for e in _kind(entities, source).values() if getattr(e, field) == entity_id]
    for source, field, target in LIST_REFERENCES:
        if target == kind:
            found += [(source, e.id, field) for e in _kind(entities, source).values() if entity_id in getattr(e, field)]
    if kind == "ca_certificates":
        found += [
            ("plugins", p.id, "config.ca_certificates")
            for p in entities.plugins.values()
            if entity_id in _plugin_ca_certificates(p.config)
        ]
    return tuple(found)
