"""Admin API writes: create, upsert, patch and delete, each a new ``Entities``.

Theory of operation
-------------------
A write never edits the configuration it is given.  It reads the body with the
same field rules as the declarative loader (``model.validation``,
``model.certificates``), resolves references against the current entities,
builds the new entity and a new :class:`~trio_gw.model.entities.Entities`, and
then checks the whole result with ``model.integrity``.  Any problem the write
*introduced* (a duplicate name or SNI, a plugin scope taken, a reference left
dangling by a delete) refuses it with Kong's error; the caller then keeps the
old configuration.  Problems that were already there are not this write's
fault and do not block it.

Errors are raised as :class:`~trio_gw.admin.errors.AdminError`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from trio_gw.admin import errors
from trio_gw.admin.lookup import NAME_FIELDS, entities_of, find_entity, missing_message
from trio_gw.admin.representation import READ_ONLY, editable_fields
from trio_gw.errors import ConfigError, Problem
from trio_gw.model.certificates import (
    CA_CERTIFICATE_FIELDS,
    CERTIFICATE_FIELDS,
    parse_ca_certificate_entity,
    parse_certificate_entity,
)
from trio_gw.model.entities import SNI, Consumer, Entities, Plugin, Route, Service
from trio_gw.model.fields import Context, Fields, Ref, join_path
from trio_gw.model.integrity import IntegrityProblem, integrity_problems
from trio_gw.model.validation import (
    read_consumer,
    read_plugin,
    read_route,
    read_service,
    read_sni,
)
from trio_gw.model.values import InvalidValue, check_uuid

_TYPES: Final[Mapping[str, Callable[..., Any]]] = {
    "services": Service, "routes": Route, "snis": SNI, "consumers": Consumer, "plugins": Plugin,
}  # fmt: skip


@dataclass(frozen=True)
class Written:
    """The outcome of a successful write: the new configuration and the entity written."""

    entities: Entities
    entity: Any
    created: bool


@dataclass(frozen=True)
class WriteContext:
    """What every write needs besides the body."""

    entities: Entities
    now: int
    new_id: Callable[[], str]


def create(w: WriteContext, kind: str, raw: Mapping[str, Any], parent: tuple[str, str] | None = None) -> Written:
    """Create an entity (POST), optionally under a parent (``("service", id)``).

    Raises:
        AdminError: 400 for bad fields or references, 409 for an id or unique value taken.
    """
    return _store(w, kind, raw, forced_id=None, existing=None, parent=parent)


def upsert(w: WriteContext, kind: str, key: str, raw: Mapping[str, Any], parent: tuple[str, str] | None = None) -> Written:
    """Create or replace the entity at ``/{kind}/{key}`` (PUT; key is an id or a unique name).

    Raises:
        AdminError: as :func:`create`; 400 when the path's name and the body's differ.
    """
    existing = find_entity(w.entities, kind, key)
    name_field = NAME_FIELDS.get(kind)
    body = dict(raw)
    forced = existing.id if existing is not None else _uuid_or_none(key)
    if forced is None and name_field is None:
        raise errors.schema_violation([Problem("id", f"expected a UUID or an existing {kind} id, got {key[:80]!r}")])
    named = existing is not None and name_field is not None and key.lower() != existing.id
    if name_field is not None and (forced is None or named):
        given = body.get(name_field)
        if given is not None and given != key:
            raise errors.schema_violation([Problem(name_field, f"must be {key[:80]!r}, the name in the path")])
        body[name_field] = key
    return _store(w, kind, body, forced_id=forced, existing=existing, parent=parent)


def patch(w: WriteContext, kind: str, existing: Any, raw: Mapping[str, Any]) -> Written:
    """Update some fields of an entity (PATCH); the merged entity is validated whole.

    Raises:
        AdminError: as :func:`create`.
    """
    base = editable_fields(existing)
    if kind == "services" and raw.get("url") is not None:
        for key in ("protocol", "host", "port", "path"):
            base.pop(key, None)
    merged = {**base, **raw}
    if kind == "plugins" and isinstance(raw.get("config"), Mapping) and isinstance(base.get("config"), Mapping):
        merged["config"] = _deep_merge(base["config"], raw["config"])
    return _store(w, kind, merged, forced_id=existing.id, existing=existing, parent=None)


def delete(w: WriteContext, kind: str, existing: Any) -> Entities:
    """Delete an entity, cascading as Kong does (a certificate's SNIs; plugins scoped to it).

    Raises:
        AdminError: 409 when another entity still refers to it.
    """
    changed = {kind: {k: v for k, v in entities_of(w.entities, kind).items() if k != existing.id}}
    if kind == "certificates":
        changed["snis"] = {k: s for k, s in w.entities.snis.items() if s.certificate != existing.id}
    scope = {"services": "service", "routes": "route", "consumers": "consumer"}.get(kind)
    if scope is not None:
        changed["plugins"] = {k: p for k, p in w.entities.plugins.items() if getattr(p, scope) != existing.id}
    changed["credentials"] = _credentials_after_delete(w.entities, kind, existing.id)
    after = dataclasses.replace(w.entities, **changed)
    _check_integrity(w.entities, after, deleted=kind)
    return after


def _credentials_after_delete(entities: Entities, kind: str, entity_id: str) -> dict[str, Any]:
    """A consumer's credentials and a service's subscriptions go with it; a CA or certificate bound
    by a credential is refused (409), as Kong refuses deleting a referenced entity."""
    field = {"consumers": "consumer", "services": "service"}.get(kind)
    kept = {k: c for k, c in entities.credentials.items() if field is None or getattr(c, field) != entity_id}
    held = {"ca_certificates": "ca_certificate", "certificates": "certificate_id"}.get(kind)
    for cred in kept.values() if held else ():
        if getattr(cred, held or "") == entity_id:
            raise errors.referenced(kind, "credentials", cred.id, "certificate" if held == "certificate_id" else held or "")
    return kept


def _deep_merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in update.items():
        old = out.get(key)
        out[key] = _deep_merge(old, value) if isinstance(old, Mapping) and isinstance(value, Mapping) else value
    return out


def _uuid_or_none(key: str) -> str | None:
    try:
        return check_uuid(key)
    except InvalidValue:
        return None


def _store(
    w: WriteContext,
    kind: str,
    raw: Mapping[str, Any],
    *,
    forced_id: str | None,
    existing: Any,
    parent: tuple[str, str] | None,
) -> Written:
    ctx = Context(problems=[], now=w.now)
    raw = _without_read_only(raw, ctx)
    fields, snis = _read(kind, raw, ctx, parent[0] if parent else None)
    if ctx.problems:
        raise errors.schema_violation(ctx.problems)
    _resolve(w.entities, fields)
    given = fields.get("id")
    if forced_id is not None and given is not None and given != forced_id:
        raise errors.schema_violation([Problem("id", f"must be {forced_id!r}, the id in the path")])
    entity_id = forced_id or given or w.new_id()
    if existing is None and entity_id in entities_of(w.entities, kind):
        raise errors.primary_key_violation(entity_id)
    fields["id"] = entity_id
    fields["created_at"] = fields["created_at"] if raw.get("created_at") is not None or existing is None else existing.created_at
    if parent is not None:
        fields[parent[0]] = parent[1]
    entity = _build(kind, fields)
    changed: dict[str, dict[str, Any]] = {kind: {**entities_of(w.entities, kind), entity_id: entity}}
    if snis is not None:
        changed["snis"] = _certificate_snis(w, entity_id, snis)
    after = dataclasses.replace(w.entities, **changed)
    _check_integrity(w.entities, after, deleted=None)
    return Written(after, entity, existing is None)


def _without_read_only(raw: Mapping[str, Any], ctx: Context) -> dict[str, Any]:
    out = {}
    for key, value in raw.items():
        if key in READ_ONLY:
            ctx.problems.append(Problem(str(key), "read-only field (derived from the certificate): leave it out"))
        else:
            out[key] = value
    return out


def _read(kind: str, raw: Mapping[str, Any], ctx: Context, scope: str | None) -> tuple[dict[str, Any], list[dict[str, Any]] | None]:
    if kind == "services":
        return read_service(raw, "", ctx), None
    if kind == "routes":
        return read_route(raw, "", ctx, in_service=scope == "service"), None
    if kind == "snis":
        return read_sni(raw, "", ctx, in_certificate=scope == "certificate"), None
    if kind == "consumers":
        return read_consumer(raw, "", ctx), None
    if kind == "plugins":
        return read_plugin(raw, "", ctx, parent=scope), None
    return _read_certificate(kind, raw, ctx)


def _read_certificate(kind: str, raw: Mapping[str, Any], ctx: Context) -> tuple[dict[str, Any], list[dict[str, Any]] | None]:
    f = Fields(raw, "", ctx)
    is_ca = kind == "ca_certificates"
    f.check_keys(CA_CERTIFICATE_FIELDS if is_ca else CERTIFICATE_FIELDS)
    fields: dict[str, Any] = {"id": f.identity(), "tags": f.tags(), **f.timestamps()}
    pem_keys = ("cert", "cert_digest", "crls") if is_ca else ("cert", "key", "cert_alt", "key_alt")
    pem = {k: raw[k] for k in pem_keys if k in raw}
    try:
        parse = parse_ca_certificate_entity if is_ca else parse_certificate_entity
        fields["entity"] = parse(pem, now=ctx.now, id="")
    except ConfigError as exc:
        ctx.problems.extend(exc.problems)
    if is_ca or raw.get("snis") is None:
        return fields, None
    return fields, _read_nested_snis(f, ctx)


def _read_nested_snis(f: Fields, ctx: Context) -> list[dict[str, Any]]:
    value = f.get("snis")
    if not isinstance(value, list | tuple):
        f.report("snis", "expected a list of server names")
        return []
    snis = []
    for index, item in enumerate(value):
        path = join_path("snis", index)
        if isinstance(item, str):
            before = len(ctx.problems)
            snis.append(read_sni({"name": item}, path, ctx, in_certificate=True))
            ctx.problems[before:] = [Problem(path, p.message) for p in ctx.problems[before:]]
        elif isinstance(item, Mapping):
            snis.append(read_sni(item, path, ctx, in_certificate=True))
        else:
            ctx.problems.append(Problem(path, "expected a server name or an object with 'name'"))
    return snis


def _resolve(entities: Entities, fields: dict[str, Any]) -> None:
    problems: list[Problem] = []
    for name, value in fields.items():
        if isinstance(value, Ref):
            fields[name] = _target(entities, value, problems)
        elif isinstance(value, tuple) and any(isinstance(v, Ref) for v in value):
            fields[name] = tuple(dict.fromkeys(t for v in value if (t := _target(entities, v, problems))))
    if problems:
        raise errors.foreign_key_violation(problems)


def _target(entities: Entities, ref: Ref, problems: list[Problem]) -> str | None:
    found = find_entity(entities, ref.kind, ref.value)
    if found is None:
        problems.append(Problem(ref.path, missing_message(ref.kind, ref.value)))
        return None
    return str(found.id)


def _build(kind: str, fields: dict[str, Any]) -> Any:
    if kind in _TYPES:
        return _TYPES[kind](**fields)
    entity = fields.pop("entity")
    return dataclasses.replace(entity, **fields)


def _certificate_snis(w: WriteContext, certificate_id: str, wanted: list[dict[str, Any]]) -> dict[str, SNI]:
    """The SNIs after setting a certificate's ``snis``: kept, created, and the others of it dropped."""
    mine = {s.name: s for s in w.entities.snis.values() if s.certificate == certificate_id}
    others = {k: s for k, s in w.entities.snis.items() if s.certificate != certificate_id}
    for fields in wanted:
        old = mine.get(fields["name"])
        sni_id = fields["id"] or (old.id if old else w.new_id())
        if sni_id in others:
            raise errors.primary_key_violation(sni_id)
        created = old.created_at if old else (fields["created_at"])
        sni = SNI(sni_id, fields["name"], certificate_id, fields["tags"], created, w.now)
        others[sni_id] = sni
    return others


def _check_integrity(before: Entities, after: Entities, *, deleted: str | None) -> None:
    old = set(integrity_problems(before))
    for problem in integrity_problems(after):
        if problem not in old:
            raise _integrity_error(problem, after, deleted)


def _integrity_error(problem: IntegrityProblem, after: Entities, deleted: str | None) -> errors.AdminError:
    if problem.reason == "reference" and deleted is not None:
        return errors.referenced(deleted, problem.kind, problem.entity_id, problem.field)
    if problem.reason == "unique":
        return errors.unique_violation({problem.field: problem.value})
    if problem.reason == "plugin_scope":
        plugin = after.plugins[problem.entity_id]
        scope = {k: getattr(plugin, k) for k in ("service", "route", "consumer")}
        return errors.unique_violation({"name": plugin.name, **scope})
    return errors.AdminError(409, {"message": f"the change would break the configuration: {problem}"})
