"""Admin API errors: Kong's error bodies, raised as :class:`AdminError`.

Kong answers a bad request with ``{"code": n, "name": "...", "message": "...",
"fields": {...}}`` (``kong/db/errors.lua``); plain failures (unknown path, wrong
method, unreadable body) carry only ``message``.  The codes and names below are
Kong's, so clients written for Kong (decK, the Kong Manager, scripts matching on
``name``) keep working.  ``fields`` maps a field path (``"key"``,
``"paths[0]"``, ``"config.ca_certificates"``) to a message string.

No message ever contains private key material: the field rules that produce
them (``model.certificates``) never echo a key, and nothing here echoes a body.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final

from trio_gw.errors import GatewayError, Problem

#: Kong's error codes (``kong/db/errors.lua``).
SCHEMA_VIOLATION: Final = 2
PRIMARY_KEY_VIOLATION: Final = 3
FOREIGN_KEY_VIOLATION: Final = 4
UNIQUE_VIOLATION: Final = 5
INVALID_OFFSET: Final = 7
INVALID_SIZE: Final = 9
INVALID_OPTIONS: Final = 11


class AdminError(GatewayError):
    """A request the Admin API refuses: an HTTP status and Kong's JSON body.

    Args:
        status: the HTTP status (400, 404, 405, 409, 415).
        body: the JSON body.
        headers: extra response headers (``allow`` on 405).
    """

    def __init__(self, status: int, body: Mapping[str, Any], headers: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(body.get("message", ""))
        self.status = status
        self.body = dict(body)
        self.headers = headers


def _kong(status: int, code: int, name: str, message: str, fields: Mapping[str, str] | None = None) -> AdminError:
    body: dict[str, Any] = {"code": code, "name": name, "message": message}
    if fields is not None:
        body["fields"] = dict(fields)
    return AdminError(status, body)


def not_found() -> AdminError:
    """404 for an unknown path or a missing entity (Kong: ``{"message": "Not found"}``)."""
    return AdminError(404, {"message": "Not found"})


def method_not_allowed(allowed: Iterable[str]) -> AdminError:
    """405 for a method the path does not serve; ``allow`` lists those it does."""
    return AdminError(405, {"message": "Method not allowed"}, (("allow", ", ".join(allowed)),))


def read_only(action: str, reason: str) -> AdminError:
    """405 for a write while the configuration is read-only (database = off).

    Args:
        action: what was attempted, e.g. ``create a service``.
        reason: why writes are refused (see ``api.DATABASE_OFF``).
    """
    return AdminError(405, {"message": f"cannot {action} when {reason}"})


def unsupported_media_type(content_type: str) -> AdminError:
    """415 for a body in a media type the Admin API does not read."""
    shown = content_type[:60] or "(none)"
    return AdminError(
        415,
        {
            "message": f"unsupported content type {shown!r}: use application/json, "
            "application/x-www-form-urlencoded or multipart/form-data"
        },
    )


def bad_body(message: str) -> AdminError:
    """400 for a body that cannot be decoded (Kong: ``Cannot parse JSON body``)."""
    return AdminError(400, {"message": message})


def problem_fields(problems: Iterable[Problem]) -> dict[str, str]:
    """Map problem paths to messages (several at one path are joined with ``; ``).

    Args:
        problems: field problems, paths relative to the entity.

    Returns:
        Kong's ``fields`` object; a problem about the whole entity is under ``@entity``.
    """
    fields: dict[str, str] = {}
    for problem in problems:
        key = problem.path or "@entity"
        fields[key] = f"{fields[key]}; {problem.message}" if key in fields else problem.message
    return fields


def schema_violation(problems: Iterable[Problem]) -> AdminError:
    """400 for fields that break their rules (Kong's ``schema violation``)."""
    fields = problem_fields(problems)
    shown = "; ".join(f"{k}: {v}" for k, v in fields.items())
    count = len(fields)
    prefix = "schema violation" if count == 1 else f"{count} schema violations"
    return _kong(400, SCHEMA_VIOLATION, "schema violation", f"{prefix} ({shown})", fields)


def foreign_key_violation(problems: Iterable[Problem]) -> AdminError:
    """400 for a reference to an entity that does not exist."""
    fields = problem_fields(problems)
    shown = "; ".join(f"{k}: {v}" for k, v in fields.items())
    return _kong(400, FOREIGN_KEY_VIOLATION, "foreign key violation", f"foreign key violation ({shown})", fields)


def unique_violation(constraint: Mapping[str, object]) -> AdminError:
    """409 for a value already taken: ``UNIQUE violation detected on '{name="x"}'``.

    Args:
        constraint: the unique field(s) and the value(s) taken.
    """
    shown = ",".join(f"{k}={_lua(v)}" for k, v in sorted(constraint.items()))
    fields = {k: "null" if v is None else str(v) for k, v in constraint.items()}
    return _kong(409, UNIQUE_VIOLATION, "unique constraint violation", f"UNIQUE violation detected on '{{{shown}}}'", fields)


def primary_key_violation(entity_id: str) -> AdminError:
    """409 for a create with an id already in use."""
    message = f"primary key violation on key '{{id=\"{entity_id}\"}}'"
    return _kong(409, PRIMARY_KEY_VIOLATION, "primary key violation", message, {"id": entity_id})


def referenced(kind: str, referrer_kind: str, referrer_id: str, field: str) -> AdminError:
    """409 for deleting an entity another one still refers to (Kong's message, plus who).

    Args:
        kind: the kind being deleted.
        referrer_kind: the kind of the entity referring to it.
        referrer_id: that entity's id.
        field: its field holding the reference.
    """
    message = (
        f"an existing '{referrer_kind}' entity references this '{kind}' entity "
        f"({referrer_kind} {referrer_id}, field '{field}'): change or delete it first"
    )
    return _kong(409, FOREIGN_KEY_VIOLATION, "foreign key violation", message, {"@referenced_by": referrer_kind})


def invalid_size(message: str) -> AdminError:
    """400 for a bad ``size`` query argument."""
    return _kong(400, INVALID_SIZE, "invalid size", message)


def invalid_offset(value: str) -> AdminError:
    """400 for an ``offset`` not given out by this API."""
    return _kong(400, INVALID_OFFSET, "invalid offset", f"'{value[:60]}' is not a valid offset for this path")


def invalid_option(option: str, message: str) -> AdminError:
    """400 for a bad query option (``tags``, ``expiring_within``)."""
    return _kong(400, INVALID_OPTIONS, "invalid options", f"invalid option ({option}: {message})", {option: message})


def _lua(value: object) -> str:
    """Show a value as Kong does in constraint messages: strings quoted, ``null`` for None."""
    if value is None:
        return "null"
    if isinstance(value, str):
        return f'"{value}"'
    return str(value)
