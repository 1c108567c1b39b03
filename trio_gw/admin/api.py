"""The Admin API as one pure function: a request and the configuration in, a response out.

Theory of operation
-------------------
:func:`handle_admin_request` matches the path (``admin.routing``), checks the
method, refuses writes when the configuration is read-only (database = off),
decodes the body (``admin.bodies``) and runs the read or write
(``admin.listing``, ``admin.writes``).  A write returns the complete new
configuration in :attr:`AdminResult.entities`; the caller stores it and swaps
the snapshot.  Every refusal is an :class:`~trio_gw.admin.errors.AdminError`
turned into Kong's JSON error here, with ``entities=None``: nothing changes.

The module does no IO: time comes in as ``now`` and ids from ``new_id``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from trio_gw._version import __version__
from trio_gw.admin import errors
from trio_gw.admin.bodies import parse_body
from trio_gw.admin.credentials import CREDENTIAL_ENDPOINTS
from trio_gw.admin.inventory import CertificateView, inventory_listing, ui_asset
from trio_gw.admin.listing import list_page
from trio_gw.admin.lookup import KINDS, SINGULAR, entities_of, find_entity
from trio_gw.admin.openapi import openapi_document
from trio_gw.admin.representation import present
from trio_gw.admin.routing import METHODS, NESTED, Target, match_path
from trio_gw.admin.writes import WriteContext, create, delete, patch, upsert
from trio_gw.model.entities import Entities

#: ``read_only_reason`` for ``database = off`` (the message follows "cannot <action> when ").
DATABASE_OFF: Final = (
    "database is 'off': the declarative configuration is read-only; edit the file and reload (SIGHUP)"
)
_JSON: Final = (("content-type", "application/json; charset=utf-8"),)
_ACTIONS: Final = {"POST": "create", "PUT": "create or replace", "PATCH": "update", "DELETE": "delete"}


@dataclass(frozen=True)
class AdminRequest:
    """One Admin API request: method, path (no query), query arguments, headers (lowercase), body."""

    method: str
    path: str
    query: Mapping[str, tuple[str, ...]]
    headers: Mapping[str, str]
    body: bytes


@dataclass(frozen=True)
class AdminResponse:
    """The response: status, JSON body (empty for 204), extra headers."""

    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class AdminResult:
    """The response, and the new configuration after a successful write (else ``None``)."""

    response: AdminResponse
    entities: Entities | None


def handle_admin_request(
    request: AdminRequest,
    entities: Entities,
    *,
    now: int,
    read_only_reason: str | None = None,
    new_id: Callable[[], str] = lambda: str(uuid.uuid4()),
    certificates: CertificateView | None = None,
) -> AdminResult:
    """Answer one Admin API request over the current configuration.

    Args:
        request: the request.
        entities: the current configuration.
        now: current Unix time (timestamps, certificate expiry).
        read_only_reason: when set, every write is refused with 405 and
            ``cannot <action> when <reason>`` (see :data:`DATABASE_OFF`).
        new_id: gives the id of each entity created without one.
        certificates: the live generation's certificate inventory (every
            role, settings included) for ``GET /certificates/inventory``;
            ``None`` answers that endpoint 503 (the page itself is still served).

    Returns:
        The response, and the new configuration when a write succeeded.
    """
    try:
        return _handle(request, entities, now, read_only_reason, new_id, certificates)
    except errors.AdminError as exc:
        return AdminResult(json_response(exc.status, exc.body, exc.headers), None)


def json_response(status: int, body: Any, headers: tuple[tuple[str, str], ...] = ()) -> AdminResponse:
    """Encode a JSON response (ASCII-escaped, so always valid UTF-8)."""
    return AdminResponse(status, json.dumps(body).encode("ascii"), _JSON + headers)


def _handle(
    request: AdminRequest, entities: Entities, now: int, read_only_reason: str | None, new_id: Callable[[], str],
    certificates: CertificateView | None,
) -> AdminResult:
    target = match_path(request.path)
    if target is None:
        raise errors.not_found()
    allowed = METHODS[target.shape]
    if request.method not in allowed:
        raise errors.method_not_allowed(allowed)
    if request.method != "GET" and read_only_reason is not None:
        raise errors.read_only(f"{_ACTIONS[request.method]} {_what(target)}", read_only_reason)
    if target.shape == "root":
        return _ok(200, node_info(entities, read_only_reason))
    if target.shape == "openapi":
        return _ok(200, openapi_document())
    if target.shape == "inventory":
        if certificates is None:
            return _ok(503, {"message": "the certificate inventory is not available on this node yet"})
        body = inventory_listing(certificates, request.query, now=now)
        return AdminResult(json_response(200, body, (("cache-control", "no-store"),)), None)
    if target.shape == "ui":
        asset = ui_asset(target.key)
        if asset is None:
            raise errors.not_found()
        return AdminResult(AdminResponse(200, asset[0], asset[1]), None)
    w = WriteContext(entities, now, new_id)
    if target.shape in ("credentials", "credential"):
        return _credentials(request, target, w)
    if target.shape == "entity":
        return _entity(request, target, w)
    return _collection(request, target, w)


def _what(target: Target) -> str:
    if target.shape in ("credentials", "credential"):
        return f"'{target.segment}' credentials"
    article = "an" if SINGULAR[target.kind][0] in "AEIOUaeiou" else "a"
    return f"{article} {SINGULAR[target.kind]}"


def _ok(status: int, body: Any, entities: Entities | None = None) -> AdminResult:
    return AdminResult(json_response(status, body), entities)


def _present(w: WriteContext, kind: str, entities: Entities | None = None) -> Callable[[Any], dict[str, Any]]:
    return lambda entity: present(kind, entity, entities or w.entities, now=w.now)


def _collection(request: AdminRequest, target: Target, w: WriteContext) -> AdminResult:
    kind, parent = target.kind, None
    items = list(entities_of(w.entities, kind).values())
    if target.shape == "nested":
        owner = find_entity(w.entities, target.parent, target.key)
        if owner is None:
            raise errors.not_found()
        field = NESTED[(target.parent, kind)]
        parent = (field, str(owner.id))
        items = [e for e in items if getattr(e, field) == owner.id]
    if request.method == "GET":
        return _ok(200, list_page(request.path, kind, items, request.query, now=w.now, present=_present(w, kind)))
    written = create(w, kind, parse_body(request.headers, request.body, kind), parent)
    return _ok(201, _present(w, kind, written.entities)(written.entity), written.entities)


def _entity(request: AdminRequest, target: Target, w: WriteContext) -> AdminResult:
    kind = target.kind
    existing = find_entity(w.entities, kind, target.key)
    if request.method == "PUT":
        written = upsert(w, kind, target.key, parse_body(request.headers, request.body, kind))
        status = 201 if written.created else 200
        return _ok(status, _present(w, kind, written.entities)(written.entity), written.entities)
    if existing is None:
        raise errors.not_found()
    if request.method == "GET":
        return _ok(200, _present(w, kind)(existing))
    if request.method == "DELETE":
        return AdminResult(AdminResponse(204, b""), delete(w, kind, existing))
    written = patch(w, kind, existing, parse_body(request.headers, request.body, kind))
    return _ok(200, _present(w, kind, written.entities)(written.entity), written.entities)


def _credentials(request: AdminRequest, target: Target, w: WriteContext) -> AdminResult:
    credential = CREDENTIAL_ENDPOINTS[target.segment]
    consumer = find_entity(w.entities, "consumers", target.key)
    if consumer is None:
        raise errors.not_found()
    listed = credential.list(w.entities, consumer.id)
    if target.shape == "credentials" and request.method == "GET":
        return _ok(200, {"data": listed, "next": None})
    if target.shape == "credentials":
        body = parse_body(request.headers, request.body, target.segment)
        after, shown = credential.create(w.entities, consumer.id, body, w.now, w.new_id)
        return _ok(201, shown, after)
    if request.method == "GET":
        found = [c for c in listed if c.get("id") == target.item]
        if not found:
            raise errors.not_found()
        return _ok(200, found[0])
    deleted = credential.delete(w.entities, consumer.id, target.item)
    if deleted is None:
        raise errors.not_found()
    return AdminResult(AdminResponse(204, b""), deleted)


def node_info(entities: Entities, read_only_reason: str | None) -> dict[str, Any]:
    """``GET /``: version and a configuration summary (Kong's node information, trimmed).

    Args:
        entities: the configuration.
        read_only_reason: why the Admin API is read-only, if it is.

    Returns:
        The JSON body.
    """
    return {
        "tagline": "Welcome to trio-gw",
        "version": __version__,
        "configuration": {
            "read_only": read_only_reason is not None,
            "read_only_reason": read_only_reason,
            "entities": {kind: len(entities_of(entities, kind)) for kind in KINDS},
        },
        "plugins": {"enabled_in_cluster": sorted({p.name for p in entities.plugins.values() if p.enabled})},
    }
