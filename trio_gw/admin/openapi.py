"""The Admin API's OpenAPI 3.1 document, generated from the same tables the handler uses.

:func:`openapi_document` describes every path of ``admin.routing``, every
entity shape of ``admin.representation`` and Kong's error body of
``admin.errors``; ``GET /openapi.json`` serves it and ``spec/admin-openapi.json``
holds a copy kept in sync by a test.  Request schemas list the writable fields
with their JSON types (the field rules check the rest and answer 400);
response schemas list every field the handler returns.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Final

from trio_gw._version import __version__
from trio_gw.admin.credentials import CREDENTIAL_ENDPOINTS
from trio_gw.admin.inventory import UI_ASSETS
from trio_gw.admin.listing import MAX_PAGE_SIZE
from trio_gw.admin.lookup import KINDS, NAME_FIELDS, SINGULAR
from trio_gw.admin.routing import NESTED
from trio_gw.model import validation
from trio_gw.model.certificates import CA_CERTIFICATE_FIELDS, CERTIFICATE_FIELDS
from trio_gw.model.entities import Service

_S: Final = {"type": "string"}
_I: Final = {"type": "integer"}
_B: Final = {"type": "boolean"}
_STRS: Final = {"type": "array", "items": _S}


def _null(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


_FOREIGN: Final = _null(_ref("ForeignKey"))
_COMMON: Final = {"id": _S, "tags": _STRS, "created_at": _I, "updated_at": _I}
_FACTS: Final = {
    "fingerprint": _S, "subject": _S, "issuer": _S, "key_type": _S, "key_size": _I,
    "sans": {"type": "object", "required": ["dns", "ip"], "properties": {"dns": _STRS, "ip": _STRS}},
    "not_before": _I, "not_after": _I, "days_to_expiry": _I, "expired": _B,
}  # fmt: skip
#: Response properties of each kind (all always present).
RESPONSE_FIELDS: Final[dict[str, dict[str, Any]]] = {
    "services": {
        "name": _null(_S), "protocol": _S, "host": _S, "port": _I, "path": _null(_S), "retries": _I,
        "connect_timeout": _I, "write_timeout": _I, "read_timeout": _I, "enabled": _B,
        "client_certificate": _FOREIGN, "tls_verify": _null(_B), "tls_verify_depth": _null(_I),
        "ca_certificates": _STRS,
    },
    "routes": {
        "name": _null(_S), "service": _FOREIGN, "protocols": _STRS, "methods": _STRS, "hosts": _STRS,
        "paths": _STRS, "headers": {"type": "object", "additionalProperties": _STRS}, "snis": _STRS,
        "https_redirect_status_code": _I, "regex_priority": _I, "strip_path": _B, "preserve_host": _B,
        "path_handling": _S,
    },
    "consumers": {"username": _null(_S), "custom_id": _null(_S)},
    "plugins": {
        "name": _S, "config": {"type": "object"}, "enabled": _B, "protocols": _STRS,
        "service": _FOREIGN, "route": _FOREIGN, "consumer": _FOREIGN,
    },
    "certificates": {"cert": _S, "cert_alt": _null(_S), "has_key_alt": _B, "snis": _STRS, **_FACTS},
    "ca_certificates": {"cert": _S, "cert_digest": _S, "crls": {"type": "array", "items": _S}, **_FACTS},
    "snis": {"name": _S, "certificate": _ref("ForeignKey")},
}  # fmt: skip
_REFERENCE: Final = {"anyOf": [_S, {"type": "object", "additionalProperties": _S}, {"type": "null"}]}
_WRITE_COMMON: Final = {"id": _null(_S), "tags": _null(_STRS), "created_at": _null(_I), "updated_at": _null(_I)}
#: Writable properties of each kind (types only; values are checked by the field rules).
REQUEST_FIELDS: Final[dict[str, dict[str, Any]]] = {
    "services": {
        "name": _null(_S), "url": _null(_S), "protocol": _null(_S), "host": _null(_S), "port": _null(_I),
        "path": _null(_S), "retries": _null(_I), "connect_timeout": _null(_I), "write_timeout": _null(_I),
        "read_timeout": _null(_I), "enabled": _null(_B), "client_certificate": _REFERENCE,
        "certificates": _null({"type": "array", "items": _REFERENCE}), "tls_verify": _null(_B),
        "tls_verify_depth": _null(_I), "ca_certificates": _null({"type": "array", "items": _REFERENCE}),
    },
    "routes": {
        "name": _null(_S), "service": _REFERENCE, "protocols": _null(_STRS), "methods": _null(_STRS),
        "hosts": _null(_STRS), "paths": _null(_STRS), "snis": _null(_STRS),
        "headers": _null({"type": "object", "additionalProperties": _STRS}),
        "https_redirect_status_code": _null(_I), "regex_priority": _null(_I), "strip_path": _null(_B),
        "preserve_host": _null(_B), "path_handling": _null(_S), "request_buffering": _null(_B),
        "response_buffering": _null(_B),
    },
    "consumers": {"username": _null(_S), "custom_id": _null(_S)},
    "plugins": {
        "name": _S, "config": _null({"type": "object"}), "enabled": _null(_B), "protocols": _null(_STRS),
        "service": _REFERENCE, "route": _REFERENCE, "consumer": _REFERENCE,
    },
    "certificates": {
        "cert": _S, "key": {"type": "string", "writeOnly": True}, "cert_alt": _null(_S),
        "key_alt": _null({"type": "string", "writeOnly": True}),
        "snis": _null({"type": "array", "items": {"anyOf": [_S, {"type": "object"}]}}),
    },
    "ca_certificates": {"cert": _S, "cert_digest": _null(_S), "crls": _null({"type": "array", "items": _S})},
    "snis": {"name": _S, "certificate": _REFERENCE},
}  # fmt: skip
_LIST_PARAMETERS: Final = [
    {"name": "size", "in": "query", "required": False, "description": "page size (default 100)",
     "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE}},
    {"name": "offset", "in": "query", "required": False, "description": "opaque token from 'offset'/'next'",
     "schema": _S},
    {"name": "tags", "in": "query", "required": False, "description": "'a,b': all tags; 'a/b': any tag",
     "schema": _S},
]  # fmt: skip
_EXPIRING: Final = {
    "name": "expiring_within", "in": "query", "required": False,
    "description": "leaf expires within this window from now (30d, 12h, 90m, 45s or seconds); expired included",
    "schema": {"type": "string", "pattern": "^[0-9]{1,12}[smhd]?$"},
}  # fmt: skip
_ERRORS: Final = {
    "400": "bad request: schema violation, foreign key violation, bad query or body",
    "404": "not found", "405": "method not allowed, or read-only configuration (database = off)",
    "409": "unique, primary key or foreign key (referenced) violation",
    "415": "unsupported content type",
    "503": "the certificate inventory is not available on this node yet",
}  # fmt: skip
_MEDIA: Final = ("application/json", "application/x-www-form-urlencoded", "multipart/form-data")


#: Every field each kind's rules accept (the handler answers 400 for any other).
_ACCEPTED: Final = {
    "services": validation.SERVICE_FIELDS,
    "routes": validation.ROUTE_FIELDS | set(validation.ROUTE_KONG_DEFAULTS),
    "consumers": validation.CONSUMER_FIELDS,
    "plugins": validation.PLUGIN_FIELDS | set(validation.PLUGIN_KONG_DEFAULTS),
    "certificates": CERTIFICATE_FIELDS,
    "ca_certificates": CA_CERTIFICATE_FIELDS,
    "snis": validation.SNI_FIELDS,
}


def _input(kind: str) -> dict[str, Any]:
    """Writable properties: typed where :data:`REQUEST_FIELDS` knows the type, else any value."""
    known = {**_WRITE_COMMON, **REQUEST_FIELDS[kind]}
    return {name: known.get(name, {}) for name in sorted(_ACCEPTED[kind])}


def _title(kind: str) -> str:
    return "".join(part.title() for part in SINGULAR[kind].replace("CA ", "Ca_").split("_")).replace(" ", "")


def openapi_document() -> dict[str, Any]:
    """Give the OpenAPI 3.1 document of the whole Admin API.

    Returns:
        A JSON-ready dict (deterministic: same input tables, same document).
    """
    schemas: dict[str, Any] = {
        "Error": {
            "type": "object", "required": ["message"],
            "properties": {"message": _S, "name": _S, "code": _I,
                           "fields": {"type": "object", "additionalProperties": _S}},
        },
        "ForeignKey": {"type": "object", "required": ["id"], "properties": {"id": _S}},
        "NodeInfo": {
            "type": "object", "required": ["tagline", "version", "configuration", "plugins"],
            "properties": {"tagline": _S, "version": _S, "configuration": {"type": "object"},
                           "plugins": {"type": "object"}},
        },
    }  # fmt: skip
    for kind in KINDS:
        fields = {**_COMMON, **RESPONSE_FIELDS[kind]}
        if kind == "services":  # fields beyond Kong's, typed by the field rules only
            fields.update((f.name, {}) for f in dataclasses.fields(Service) if f.name not in fields)
        schemas[_title(kind)] = {"type": "object", "required": sorted(fields), "properties": fields}
        schemas[_title(kind) + "Input"] = {"type": "object", "additionalProperties": False, "properties": _input(kind)}
        schemas[_title(kind) + "List"] = {
            "type": "object", "required": ["data", "next"],
            "properties": {"data": {"type": "array", "items": _ref(_title(kind))}, "next": _null(_S), "offset": _S},
        }  # fmt: skip
    paths: dict[str, Any] = {
        "/": {"get": _operation("node information", "NodeInfo", "200", errors=("405",))},
        "/openapi.json": {"get": {**_operation("this document", None, "200", errors=("405",))}},
    }
    for kind in KINDS:
        paths.update(_kind_paths(kind))
    for segment, credential in CREDENTIAL_ENDPOINTS.items():
        schemas[f"Credential_{segment}"] = dict(credential.schema)
        paths.update(_credential_paths(segment))
    schemas.update(INVENTORY_SCHEMAS)
    paths.update(_inventory_paths())
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "trio-gw Admin API",
            "version": __version__,
            "description": "Kong-compatible Admin API of trio-gw. Private keys are write-only.",
        },
        "paths": paths,
        "components": {"schemas": schemas},
    }


def _operation(
    summary: str,
    schema: str | None,
    status: str,
    *,
    errors: tuple[str, ...] = ("400", "404", "405"),
    parameters: list[dict[str, Any]] | None = None,
    body: str | None = None,
    also: tuple[str, ...] = (),
) -> dict[str, Any]:
    content = {"application/json": {"schema": _ref(schema) if schema else {"type": "object"}}}
    responses: dict[str, Any] = {}
    for code in (status, *also):
        responses[code] = {"description": "no content"} if code == "204" else {"description": "ok", "content": content}
    for code in errors:
        responses[code] = {"description": _ERRORS[code], "content": {"application/json": {"schema": _ref("Error")}}}
    op: dict[str, Any] = {"summary": summary, "responses": responses}
    if parameters:
        op["parameters"] = parameters
    if body:
        op["requestBody"] = {"required": False, "content": {m: {"schema": _ref(body)} for m in _MEDIA}}
    return op


def _kind_paths(kind: str) -> dict[str, Any]:
    title, one = _title(kind), SINGULAR[kind]
    list_params = _LIST_PARAMETERS + ([_EXPIRING] if kind in ("certificates", "ca_certificates") else [])
    writes = ("400", "404", "405", "409", "415")
    how = f"id or {NAME_FIELDS[kind]}" if kind in NAME_FIELDS else "id"
    if kind in ("certificates", "ca_certificates"):
        how = "id or sha256:<fingerprint>"
    key = {"name": "key", "in": "path", "required": True, "description": how, "schema": _S}
    paths: dict[str, Any] = {
        f"/{kind}": {
            "get": _operation(f"list {kind}", title + "List", "200", parameters=list_params),
            "post": _operation(f"create a {one}", title, "201", errors=writes, body=title + "Input"),
        },
        f"/{kind}/{{key}}": {
            "parameters": [key],
            "get": _operation(f"get a {one}", title, "200"),
            "put": _operation(f"create or replace a {one}", title, "200", errors=writes, body=title + "Input", also=("201",)),
            "patch": _operation(f"update a {one}", title, "200", errors=writes, body=title + "Input"),
            "delete": _operation(f"delete a {one}", None, "204", errors=("404", "405", "409")),
        },
    }
    for parent, child in NESTED:
        if parent == kind:
            child_title = _title(child)
            paths[f"/{kind}/{{key}}/{child}"] = {
                "parameters": [key],
                "get": _operation(f"list the {child} of a {one}", child_title + "List", "200", parameters=_LIST_PARAMETERS),
                "post": _operation(f"create {child} of a {one}", child_title, "201", errors=writes, body=child_title + "Input"),
            }
    return paths


def _credential_paths(segment: str) -> dict[str, Any]:
    name = f"Credential_{segment}"
    key = {"name": "key", "in": "path", "required": True, "description": "consumer id or username", "schema": _S}
    item = {"name": "item", "in": "path", "required": True, "description": "credential id", "schema": _S}
    listed = {"type": "object", "required": ["data", "next"], "properties": {"data": {"type": "array", "items": _ref(name)}, "next": {"type": "null"}}}
    schemas_list = _operation(f"list {segment} credentials of a consumer", None, "200")
    schemas_list["responses"]["200"]["content"]["application/json"]["schema"] = listed
    writes = ("400", "404", "405", "409", "415")
    return {
        f"/consumers/{{key}}/{segment}": {
            "parameters": [key],
            "get": schemas_list,
            "post": _operation(f"create a {segment} credential", name, "201", errors=writes, body=name),
        },
        f"/consumers/{{key}}/{segment}/{{item}}": {
            "parameters": [key, item],
            "get": _operation(f"get a {segment} credential", name, "200"),
            "delete": _operation(f"delete a {segment} credential", None, "204", errors=("404", "405", "409")),
        },
    }


_USAGE: Final = {"type": "object", "required": ["kind", "id", "name"],
                 "properties": {"kind": _S, "id": _S, "name": _null(_S)}}
_ROLES: Final = ["server", "upstream_client", "ca", "consumer", "acme"]
_STATUSES: Final = ["ok", "warning", "critical", "expired", "not_yet_valid"]
_INVENTORY_ITEM: Final = {
    "key": _S, "id": _S, "entity_id": _null(_S), "role": {"type": "string", "enum": _ROLES}, "source": _S,
    "subject": _S, "common_names": _STRS, "issuer": _S,
    "sans": {"type": "object", "required": ["dns", "ip", "uri", "email"],
             "properties": {"dns": _STRS, "ip": _STRS, "uri": _STRS, "email": _STRS}},
    "serial": _S, "fingerprint": _S, "key_type": _S, "key_size": _I, "is_ca": _B, "not_before": _I,
    "not_after": _I, "days_to_expiry": _I, "expired": _B, "status": {"type": "string", "enum": _STATUSES},
    "used_by": {"type": "array", "items": _USAGE},
}  # fmt: skip
_REVOCATION: Final = {
    "type": "object", "required": ["status", "source", "checked_at", "next_update", "reason"],
    "properties": {"status": {"type": "string", "enum": ["good", "revoked", "unknown"]},
                   "source": {"type": "string", "enum": ["ocsp", "crl"]}, "checked_at": _I,
                   "next_update": _null(_I), "reason": _null(_S)},
}  # fmt: skip
_BUCKET: Final = {"type": "object", "required": ["start", "end", "count", "keys"],
                  "properties": {"start": _I, "end": _I, "count": _I, "keys": _STRS}}
_COUNTS: Final = {"type": "object", "additionalProperties": _I}
#: The schemas of ``GET /certificates/inventory`` (``admin.inventory``).
INVENTORY_SCHEMAS: Final = {
    "InventoryCertificate": {
        "type": "object", "required": sorted(_INVENTORY_ITEM), "additionalProperties": False,
        "properties": {**_INVENTORY_ITEM, "revocation": _REVOCATION},
    },
    "CertificateInventory": {
        "type": "object", "required": ["data", "next", "generated_at", "thresholds", "counts", "timeline"],
        "properties": {
            "data": {"type": "array", "items": _ref("InventoryCertificate")},
            "next": {"type": "null"},
            "generated_at": _I,
            "thresholds": {"type": "object", "required": ["warning_days", "critical_days"],
                           "properties": {"warning_days": _I, "critical_days": _I}},
            "counts": {"type": "object", "required": ["total", "by_status", "by_role"],
                       "properties": {"total": _I, "by_status": _COUNTS, "by_role": _COUNTS}},
            "timeline": {"type": "object", "required": ["start", "end", "days", "bucket_days", "buckets", "expired"],
                         "properties": {"start": _I, "end": _I, "days": _I, "bucket_days": _I, "expired": _I,
                                        "buckets": {"type": "array", "items": _BUCKET}}},
        },
    },
}  # fmt: skip


def _inventory_paths() -> dict[str, Any]:
    role = {"name": "role", "in": "query", "required": False,
            "description": "only these roles (comma-separated or repeated): " + ", ".join(_ROLES),
            "schema": {"type": "string", "pattern": "^(" + "|".join(_ROLES) + ")(,(" + "|".join(_ROLES) + "))*$"}}
    listing = _operation("every certificate the node depends on, in every role, with its users and a 90-day "
                         "expiry timeline (never key material)", "CertificateInventory", "200",
                         errors=("400", "405", "503"), parameters=[role, _EXPIRING])
    paths: dict[str, Any] = {"/certificates/inventory": {"get": listing}}
    for path, (_, content_type) in UI_ASSETS.items():
        media = content_type.split(";")[0]
        paths[path] = {"get": {
            "summary": "the certificate inventory page (no external assets)" if media == "text/html"
            else f"the inventory page's {media.split('/')[1]}",
            "responses": {"200": {"description": "ok", "content": {media: {"schema": _S}}},
                          "405": {"description": _ERRORS["405"],
                                  "content": {"application/json": {"schema": _ref("Error")}}}},
        }}
    return paths
