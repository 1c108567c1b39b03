"""The declarative configuration format: Kong decK files (``_format_version: "3.0"``).

Theory of operation
-------------------
:func:`parse_declarative` reads an already-decoded document in three passes:

1. *Read*: every entity, top-level or nested (routes and plugins in services,
   plugins in routes and consumers, SNIs in certificates), is read by its field
   rules (``model.validation``; certificates by ``model.certificates``) into an
   :class:`~trio_gw.model.identities.Item` whose id is given or derived
   (``model.identities``).  Nested entities point at their owner.
2. *Check*: uniqueness (ids, names, usernames, SNI names, plugin scopes) and
   references (by id, name or certificate fingerprint) across the document.
3. *Build*: when no problem was found, the frozen entities, keyed by id.

Every problem of every pass is collected and raised as one ConfigError, each
located by a path such as ``services[0].routes[1].paths[0]``.  The module is
pure: :func:`load_declarative_text` decodes YAML (a superset of JSON) from a
string, and reading the file is the caller's job.

:func:`dump_declarative` is the inverse, for ``config dump`` and the Admin API.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any, Final

import yaml

from trio_gw.errors import ConfigError, Problem
from trio_gw.model.certificates import (
    CA_CERTIFICATE_FIELDS,
    CERTIFICATE_FIELDS,
    parse_ca_certificate_entity,
    parse_certificate_entity,
)
from trio_gw.model.credentials import (
    DECLARATIVE_KEYS,
    Credential,
    credential_problems,
    read_credential,
    resolve_references,
)
from trio_gw.model.declarative_dump import dump_declarative as dump_declarative
from trio_gw.model.entities import SNI, Consumer, Entities, Plugin, Route, Service
from trio_gw.model.fields import Context, Fields, Ref, describe, items_at, join_path
from trio_gw.model.identities import (
    EntityIndex,
    Item,
    certificate_fingerprint,
    content_key,
    generated_id,
    singular,
)
from trio_gw.model.validation import NATURAL_KEYS, read_consumer, read_plugin, read_route, read_service, read_sni
from trio_gw.model.values import check_tag

__all__ = [
    "CREDENTIAL_KINDS",
    "FORMAT_VERSIONS",
    "dump_declarative",
    "load_declarative_text",
    "parse_declarative",
]

#: decK/Kong format versions accepted; before 3.0, regex paths lack the ``~`` (migrated on load).
FORMAT_VERSIONS: Final = ("1.1", "2.1", "3.0")
_TOP_LEVEL: Final = frozenset({
    "_format_version", "_transform", "_info", "_comment", "_ignore",
    "services", "routes", "certificates", "ca_certificates", "snis", "consumers", "plugins",
})  # fmt: skip
_INFO_DEFAULTS: Final[Mapping[str, object]] = {"defaults": None}

#: Reads one credential of a consumer (``mtls_auth_credentials``, ``keyauth_credentials``,
#: ...): called with the credential mapping, its path, the consumer's id and the load
#: context, it records problems in ``ctx.problems`` and returns the credential (``None``
#: after a problem).
CredentialParser = Callable[[Mapping[Any, Any], str, str, Context], "Credential | None"]
#: Consumer key (e.g. ``mtls_auth_credentials``) → parser (``model.credentials``).
def _credential_parser(kind: str) -> CredentialParser:
    def parse(raw: Mapping[Any, Any], path: str, consumer: str, ctx: Context) -> Credential | None:
        return read_credential(kind, raw, path, consumer, ctx)

    return parse


CREDENTIAL_KINDS: dict[str, CredentialParser] = {key: _credential_parser(kind) for key, kind in DECLARATIVE_KEYS.items()}

_ENTITY_TYPES: Final[Mapping[str, Callable[..., Any]]] = {
    "services": Service, "routes": Route, "snis": SNI, "consumers": Consumer, "plugins": Plugin,
}  # fmt: skip
#: (kind, field, natural key prefix): fields unique within a kind, also the natural keys.
_UNIQUE: Final = (
    ("services", "name"), ("routes", "name"), ("consumers", "username"),
    ("consumers", "custom_id"), ("snis", "name"),
)  # fmt: skip


def parse_declarative(data: Mapping[str, Any], *, now: int) -> Entities:
    """Read a decoded declarative document into entities.

    Args:
        data: the document (``_format_version``, ``services``, ``routes``, ...).
        now: current Unix time: the default ``created_at``/``updated_at``, and the
            time certificates are checked against.

    Returns:
        Every entity, keyed by id, nested ones flattened with their references set.

    Raises:
        ConfigError: listing every problem found, each at its path.
    """
    if not isinstance(data, Mapping):
        raise ConfigError(f"expected a mapping at the top of the document, got {describe(data)}")
    ctx = Context(problems=[], now=now)
    _read_header(Fields(data, "", ctx))
    loader = _Loader(ctx)
    loader.read_document(data)
    loader.check()
    if ctx.problems:
        raise ConfigError(ctx.problems)
    entities = loader.build()
    problems = [loader.locate(p) for p in credential_problems(entities)]
    if problems:
        raise ConfigError(problems)
    return entities


def load_declarative_text(text: str, *, now: int) -> Entities:
    """Decode a declarative file's text (YAML or JSON) and read it.

    Args:
        text: the file's content.
        now: current Unix time (see :func:`parse_declarative`).

    Returns:
        Every entity, keyed by id.

    Raises:
        ConfigError: the text is not YAML, or the document has problems.
    """
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"not valid YAML or JSON: {exc}") from exc
    except RecursionError as exc:
        raise ConfigError("not valid YAML or JSON: nested too deeply") from exc
    if data is None:
        raise ConfigError("the document is empty: expected at least '_format_version'")
    return parse_declarative(data, now=now)


def _read_header(top: Fields) -> None:
    top.check_keys(_TOP_LEVEL)
    version = top.get("_format_version")
    if version is None:
        top.report("_format_version", 'required field missing (use "3.0")')
    elif isinstance(version, float | int) and str(version) in FORMAT_VERSIONS:
        top.report("_format_version", f'expected a string: quote it ("{version}")')
    elif version not in FORMAT_VERSIONS or not isinstance(version, str):
        top.report("_format_version", f"expected one of {', '.join(FORMAT_VERSIONS)}, got {describe(version)}")
    top.ctx.legacy_paths = version in ("1.1", "2.1")
    top.boolean("_transform", True)
    top.string("_comment")
    if top.get("_ignore") is not None and not isinstance(top.get("_ignore"), list):
        top.report("_ignore", f"expected a list, got {describe(top.get('_ignore'))}")
    info = top.mapping("_info")
    if info is not None:
        fields = Fields(info, "_info", top.ctx)
        fields.check_keys({"select_tags"}, _INFO_DEFAULTS)
        top.ctx.select_tags = fields.strings("select_tags", check_tag)


class _Loader:
    """Reads the entities of one document and checks them together (passes 1 and 2)."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.items: dict[str, list[Item]] = {kind: [] for kind in _ENTITY_TYPES}
        self.items.update(certificates=[], ca_certificates=[])
        self.seen_keys: Counter[str] = Counter()
        self.index = EntityIndex()
        self.credentials: list[tuple[str, Credential]] = []

    def read_document(self, data: Mapping[Any, Any]) -> None:
        """Pass 1: read every entity of the document."""
        for path, raw in items_at(data.get("certificates"), "certificates", self.ctx):
            self._certificate(raw, path)
        for path, raw in items_at(data.get("ca_certificates"), "ca_certificates", self.ctx):
            self._ca_certificate(raw, path)
        for path, raw in items_at(data.get("snis"), "snis", self.ctx):
            self._add("snis", path, read_sni(raw, path, self.ctx), raw)
        for path, raw in items_at(data.get("services"), "services", self.ctx):
            service = self._add("services", path, read_service(raw, path, self.ctx, ("routes", "plugins")), raw)
            for route_path, route in items_at(raw.get("routes"), join_path(path, "routes"), self.ctx):
                self._route(route, route_path, owner=service)
            self._plugins(raw, path, "service", service)
        for path, raw in items_at(data.get("routes"), "routes", self.ctx):
            self._route(raw, path, owner=None)
        for path, raw in items_at(data.get("consumers"), "consumers", self.ctx):
            self._consumer(raw, path)
        for path, raw in items_at(data.get("plugins"), "plugins", self.ctx):
            self.items["plugins"].append(Item("plugins", path, read_plugin(raw, path, self.ctx)))

    def _add(
        self, kind: str, path: str, fields: dict[str, Any], raw: Mapping[Any, Any], owner: Item | None = None
    ) -> Item:
        natural = NATURAL_KEYS.get(kind) or "name"
        name = fields.get(natural)
        key = f"{kind}:{natural}:{name}" if name is not None else content_key(kind, raw, owner)
        if kind == "consumers" and name is None and fields.get("custom_id") is not None:
            key = f"consumers:custom_id:{fields['custom_id']}"
        return self._register(Item(kind, path, fields), key, name)

    def _register(self, item: Item, key: str, name: str | None = None, fingerprint: str | None = None) -> Item:
        count = self.seen_keys[key]
        self.seen_keys[key] += 1
        item.key = key if count == 0 else f"{key}#{count}"
        item.given_id = item.fields.get("id") is not None
        if not item.given_id:
            item.fields["id"] = generated_id(item.key)
        self.items[item.kind].append(item)
        self.index.add(item, name, fingerprint)
        return item

    def _route(self, raw: Mapping[Any, Any], path: str, owner: Item | None) -> None:
        fields = read_route(raw, path, self.ctx, ("plugins",), in_service=owner is not None)
        if owner is not None:
            fields["service"] = owner
        route = self._add("routes", path, fields, raw, owner)
        self._plugins(raw, path, "route", route)

    def _consumer(self, raw: Mapping[Any, Any], path: str) -> None:
        nested = ("plugins", *CREDENTIAL_KINDS)
        consumer = self._add("consumers", path, read_consumer(raw, path, self.ctx, nested), raw)
        self._plugins(raw, path, "consumer", consumer)
        for kind, parse in CREDENTIAL_KINDS.items():
            for item_path, item in items_at(raw.get(kind), join_path(path, kind), self.ctx):
                credential = parse(item, item_path, consumer.id, self.ctx)
                if credential is not None:
                    self.credentials.append((item_path, credential))

    def _plugins(self, raw: Mapping[Any, Any], path: str, scope: str, owner: Item) -> None:
        for plugin_path, plugin in items_at(raw.get("plugins"), join_path(path, "plugins"), self.ctx):
            fields = read_plugin(plugin, plugin_path, self.ctx, parent=scope)
            fields[scope] = owner
            self.items["plugins"].append(Item("plugins", plugin_path, fields))

    def _certificate(self, raw: Mapping[Any, Any], path: str) -> None:
        fields = Fields(raw, path, self.ctx)
        fields.check_keys(CERTIFICATE_FIELDS)
        common = {"id": fields.identity(), "tags": fields.tags(), **fields.timestamps()}
        pem = {k: raw[k] for k in ("cert", "key", "cert_alt", "key_alt") if k in raw}
        try:
            entity = parse_certificate_entity(pem, now=self.ctx.now, id="")
        except ConfigError as exc:
            self.ctx.problems.extend(exc.prefixed(path).problems)
            entity = None
        fingerprint = certificate_fingerprint(entity.cert) if entity else None
        # Keyed by fingerprint alone, so editing tags or SNIs keeps the id.
        item = self._register(Item("certificates", path, common), f"certificates:sha256:{fingerprint}", None, fingerprint)
        item.entity = dataclasses.replace(entity, **item.fields) if entity else None
        for sni_path, sni, bare in _nested_snis(fields):
            before = len(self.ctx.problems)
            sni_fields = read_sni(sni, sni_path, self.ctx, in_certificate=True)
            if bare:  # a bare name: its problems are at the list item, not at ".name"
                self.ctx.problems[before:] = [Problem(sni_path, p.message) for p in self.ctx.problems[before:]]
            sni_fields["certificate"] = item
            self._add("snis", sni_path, sni_fields, sni, item).bare = bare

    def _ca_certificate(self, raw: Mapping[Any, Any], path: str) -> None:
        fields = Fields(raw, path, self.ctx)
        fields.check_keys(CA_CERTIFICATE_FIELDS)
        common = {"id": fields.identity(), "tags": fields.tags(), **fields.timestamps()}
        pem = {k: raw[k] for k in ("cert", "cert_digest", "crls") if k in raw}
        try:
            entity = parse_ca_certificate_entity(pem, now=self.ctx.now, id="")
        except ConfigError as exc:
            self.ctx.problems.extend(exc.prefixed(path).problems)
            entity = None
        digest = entity.cert_digest if entity else None
        item = self._register(Item("ca_certificates", path, common), f"ca_certificates:sha256:{digest}", None, digest)
        item.entity = dataclasses.replace(entity, **item.fields) if entity else None

    def check(self) -> None:
        """Pass 2: uniqueness and references across the document."""
        reported = self._check_unique()
        self._resolve_references()
        reported |= self._check_plugin_scopes()
        for kind, items in self.items.items():
            self._check_ids(kind, items, reported)

    def _check_unique(self) -> set[str]:
        reported: set[str] = set()
        for kind, name in _UNIQUE:
            first: dict[object, Item] = {}
            for item in self.items[kind]:
                value = item.fields.get(name)
                if value is None:
                    continue
                if value in first:
                    what = "server name" if kind == "snis" else name.replace("_", " ")
                    self._problem(item, name, f"duplicate {what} {value!r} (also at {first[value].path})")
                    reported.add(item.path)
                else:
                    first[value] = item
        return reported

    def _problem(self, item: Item, field: str, message: str) -> None:
        path = item.path if item.bare else join_path(item.path, field)
        self.ctx.problems.append(Problem(path, message))

    def _check_ids(self, kind: str, items: list[Item], reported: set[str]) -> None:
        first: dict[str, Item] = {}
        for item in items:
            other = first.setdefault(item.id, item)
            if other is item or (item.path in reported and not item.given_id):
                continue
            also = other.path if other.given_id else f"the generated id of {other.path}"
            where = "id" if item.given_id else None
            message = f"duplicate {singular(kind)} id {item.id!r} (also {also})"
            self.ctx.problems.append(Problem(join_path(item.path, where) if where else item.path, message))

    def _resolve_references(self) -> None:
        for items in self.items.values():
            for item in items:
                for name, value in item.fields.items():
                    if isinstance(value, Ref) or isinstance(value, tuple) and any(isinstance(v, Ref) for v in value):
                        item.fields[name] = self._resolve(value)
                    elif isinstance(value, Item):
                        item.fields[name] = value.id

    def _resolve(self, value: Ref | tuple[Ref, ...]) -> str | tuple[str, ...] | None:
        if isinstance(value, Ref):
            return self._resolve_one(value)
        resolved: dict[str, Ref] = {}
        for ref in value:
            target = self._resolve_one(ref)
            if target is not None and target in resolved:
                message = f"same {singular(ref.kind)} as {resolved[target].path}"
                self.ctx.problems.append(Problem(ref.path, message))
            elif target is not None:
                resolved[target] = ref
        return tuple(resolved)

    def _resolve_one(self, ref: Ref) -> str | None:
        target = self.index.find(ref)
        if target is None:
            self.ctx.problems.append(Problem(ref.path, self.index.missing_message(ref)))
            return None
        return target.id

    def _check_plugin_scopes(self) -> set[str]:
        reported: set[str] = set()
        first: dict[str, Item] = {}
        for item in self.items["plugins"]:
            f = item.fields
            key = f"plugins:{f['name']}:{f.get('service')}:{f.get('route')}:{f.get('consumer')}"
            item.key = key
            item.given_id = f.get("id") is not None
            if not item.given_id:
                f["id"] = generated_id(key)
            other = first.setdefault(key, item)
            if other is not item:
                self.ctx.problems.append(
                    Problem(item.path, f"duplicate plugin {f['name']!r} for the same scope (also at {other.path})")
                )
                reported.add(item.path)
        return reported

    def build(self) -> Entities:
        """Pass 3: the entities (only called when no problem was found)."""
        built: dict[str, dict[str, Any]] = {}
        for kind, items in self.items.items():
            make = _ENTITY_TYPES.get(kind)
            built[kind] = {item.id: item.entity if make is None else make(**item.fields) for item in items}
        entities = Entities(**built)
        credentials = {c.id: resolve_references(entities, c) for _, c in self.credentials}
        return dataclasses.replace(entities, credentials=credentials)

    def locate(self, problem: Problem) -> Problem:
        """Move a problem at ``credentials[<id>]...`` to where the credential is in the file."""
        for path, credential in self.credentials:
            prefix = f"credentials[{credential.id}]"
            if problem.path.startswith(prefix):
                return Problem(path + problem.path[len(prefix):], problem.message)
        return problem


def _nested_snis(fields: Fields) -> list[tuple[str, Mapping[Any, Any], bool]]:
    """A certificate's ``snis``: names, or ``{name: ...}`` mappings; flag is "given as a bare name"."""
    value = fields.get("snis")
    if not isinstance(value, list | tuple):
        return [(path, item, False) for path, item in items_at(value, fields.at("snis"), fields.ctx)]
    found: list[tuple[str, Mapping[Any, Any], bool]] = []
    for index, item in enumerate(value):
        path = join_path(fields.at("snis"), index)
        if isinstance(item, str | Mapping):
            found.append((path, {"name": item} if isinstance(item, str) else item, isinstance(item, str)))
        else:
            fields.ctx.problems.append(Problem(path, f"expected a server name or a mapping, got {describe(item)}"))
    return found
