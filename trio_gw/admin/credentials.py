"""Consumer credentials in the Admin API: a registry of credential kinds.

Kong serves each credential kind under its consumer
(``/consumers/{consumer}/mtls-auth``, ``/consumers/{consumer}/key-auth``) and at
the top level (``/mtls-auth``).  trio-gw's credential kinds (client
certificates with validity windows, next) register a :class:`CredentialKind`
in :data:`CREDENTIAL_ENDPOINTS` under that path segment; the router then serves

- ``GET/POST /consumers/{consumer}/{segment}``,
- ``GET/DELETE /consumers/{consumer}/{segment}/{id}``,

and the OpenAPI document includes them.  No kind is registered yet, so these
paths answer 404 like any unknown path.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from trio_gw.model.entities import Entities


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


#: Path segment → credential kind.  Empty until the first kind registers.
CREDENTIAL_ENDPOINTS: dict[str, CredentialKind] = {}
