"""Consumer credentials in the Admin API: a registry of credential kinds.

Kong serves each credential kind under its consumer
(``/consumers/{consumer}/mtls-auth``, ``/consumers/{consumer}/key-auth``) and at
the top level (``/mtls-auth``).  trio-gw's credential kinds (client
certificates with validity windows, next) register a :class:`CredentialKind`
in :data:`CREDENTIAL_ENDPOINTS` under that path segment; the router then serves

- ``GET/POST /consumers/{consumer}/{segment}``,
- ``GET/DELETE /consumers/{consumer}/{segment}/{id}``,

and the OpenAPI document includes them.  Registered here (fields and rules in
:mod:`trio_gw.model.credentials`): ``mtls-auth`` (client certificates and
subject names, with validity windows and status), ``key-auth`` (API keys,
optionally bound to client certificates) and ``subscriptions`` (consumer →
service).  A write takes effect on the next request: the caller swaps the
snapshot.  Credentials are immutable once created: rotate by adding the next
one (``status: scheduled``, ``valid_from``) and deleting or revoking the old.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from trio_gw.admin import errors
from trio_gw.errors import Problem
from trio_gw.model.credentials import (
    CREDENTIAL_FIELDS,
    STATUSES,
    credential_problems,
    read_credential,
    resolve_references,
)
from trio_gw.model.entities import Entities
from trio_gw.model.fields import Context


@dataclass(frozen=True)
class CredentialKind:
    """One credential kind served under consumers.

    ``list(entities, consumer_id)`` gives the consumer's credentials as JSON
    dicts; ``create(entities, consumer_id, body, now, new_id)`` returns the new
    configuration and the created credential's JSON (raising
    :class:`~trio_gw.admin.errors.AdminError` on bad input, with 409 for a
    certificate already bound to another consumer, Gravitee's rule);
    ``delete(entities, consumer_id, credential_id)`` returns the new
    configuration or ``None`` when there is no such credential.  ``schema`` is
    the credential's JSON schema for the OpenAPI document.
    """

    segment: str
    list: Callable[[Entities, str], list[dict[str, Any]]]
    create: Callable[[Entities, str, Mapping[str, Any], int, Callable[[], str]], tuple[Entities, dict[str, Any]]]
    delete: Callable[[Entities, str, str], Entities | None]
    schema: Mapping[str, Any]


#: Path segment → credential kind.
CREDENTIAL_ENDPOINTS: dict[str, CredentialKind] = {}


def _lister(kind: str) -> Callable[[Entities, str], list[dict[str, Any]]]:
    def list_(entities: Entities, consumer: str) -> list[dict[str, Any]]:
        found = [c for c in entities.credentials.values() if c.consumer == consumer and c.kind == kind]
        return [c.to_json() for c in sorted(found, key=lambda c: (c.created_at, c.id))]

    return list_


def _creator(
    kind: str,
) -> Callable[[Entities, str, Mapping[str, Any], int, Callable[[], str]], tuple[Entities, dict[str, Any]]]:
    def create(
        entities: Entities, consumer: str, body: Mapping[str, Any], now: int, new_id: Callable[[], str]
    ) -> tuple[Entities, dict[str, Any]]:
        ctx = Context(problems=[], now=now)
        raw = {k: v for k, v in body.items() if k not in ("created_at", "updated_at")}
        credential = read_credential(kind, raw, "", consumer, ctx)
        if credential is None:
            raise errors.schema_violation(ctx.problems)
        if "id" not in raw:
            credential = dataclasses.replace(credential, id=new_id())
        if credential.id in entities.credentials:
            raise errors.primary_key_violation(credential.id)
        credential = resolve_references(entities, credential)
        after = dataclasses.replace(entities, credentials={**entities.credentials, credential.id: credential})
        _check(entities, after, credential.id)
        return after, credential.to_json()

    return create


def _check(before: Entities, after: Entities, credential_id: str) -> None:
    """Refuse the problems this write introduced: 409 for a certificate or key taken, else 400."""
    old = {(p.path, p.message) for p in credential_problems(before)}
    prefix = f"credentials[{credential_id}]"
    new = [
        Problem(p.path[len(prefix) + 1:], p.message)
        for p in credential_problems(after)
        if (p.path, p.message) not in old and p.path.startswith(prefix)
    ]
    taken = [p for p in new if "already" in p.message]
    if taken:
        fields = errors.problem_fields(taken)
        raise errors.AdminError(409, {"code": errors.UNIQUE_VIOLATION, "name": "unique constraint violation",
                                      "message": taken[0].message, "fields": fields})
    if new:
        raise errors.foreign_key_violation(new)


def _deleter(kind: str) -> Callable[[Entities, str, str], Entities | None]:
    def delete(entities: Entities, consumer: str, credential_id: str) -> Entities | None:
        found = entities.credentials.get(credential_id.lower())
        if found is None or found.consumer != consumer or found.kind != kind:
            return None
        kept = {k: c for k, c in entities.credentials.items() if k != found.id}
        return dataclasses.replace(entities, credentials=kept)

    return delete


_STRING: Final = {"type": "string"}
_TIME: Final = {"type": "integer", "description": "Unix seconds"}
_PROPERTIES: Final[Mapping[str, Mapping[str, Any]]] = {
    "id": {"type": "string", "format": "uuid"},
    "consumer": {"type": "object", "properties": {"id": {"type": "string"}}},
    "status": {"type": "string", "enum": list(STATUSES), "default": "active"},
    "valid_from": _TIME,
    "valid_until": _TIME,
    "tags": {"type": "array", "items": _STRING},
    "created_at": _TIME,
    "updated_at": _TIME,
    "subject_name": {"type": "string", "description": "matched against the SAN values, then the CN"},
    "ca_certificate": {"type": "string", "description": "CA certificate id: only certificates it issued"},
    "certificate": {"type": "string",
                    "description": "client certificate: PEM, base64 of its DER or PEM, or a certificate id"},
    "fingerprint": {"type": "string", "description": "sha256:<hex> of the client certificate"},
    "key": _STRING,
    "bound_certificates": {"type": "array", "items": _STRING,
                           "description": "sha256 fingerprints (or PEM) of the client certificates the key needs"},
    "service": {"type": "string", "description": "service id or name"},
}
_SEGMENTS: Final = {"mtls-auth": "mtls_auth", "key-auth": "key_auth", "subscriptions": "subscription"}


def _schema(kind: str) -> dict[str, Any]:
    properties = {name: dict(_PROPERTIES[name]) for name in CREDENTIAL_FIELDS[kind]}
    required = {"key_auth": ["key"], "subscription": ["service"]}.get(kind)
    return {"type": "object", "properties": properties, **({"required": required} if required else {})}


for _segment, _kind in _SEGMENTS.items():
    CREDENTIAL_ENDPOINTS[_segment] = CredentialKind(
        _segment, _lister(_kind), _creator(_kind), _deleter(_kind), _schema(_kind)
    )
