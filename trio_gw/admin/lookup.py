"""Finding entities by what the Admin API accepts in a path or a reference.

Kong addresses an entity by id or by its unique name (``/services/{id or
name}``); trio-gw also addresses certificates and CA certificates by
``sha256:<hex>`` fingerprint (Tyk's certificate ids, seed 003).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any, Final

from trio_gw.model.entities import Entities
from trio_gw.model.identities import certificate_fingerprint, normal_fingerprint

#: Kinds served by the Admin API, in Kong's order.
KINDS: Final = ("services", "routes", "consumers", "plugins", "certificates", "ca_certificates", "snis")
#: The unique name each kind may be addressed by besides its id.
NAME_FIELDS: Final[Mapping[str, str]] = {
    "services": "name", "routes": "name", "consumers": "username", "snis": "name",
}  # fmt: skip
SINGULAR: Final[Mapping[str, str]] = {
    "services": "service", "routes": "route", "consumers": "consumer", "plugins": "plugin",
    "certificates": "certificate", "ca_certificates": "CA certificate", "snis": "SNI",
}  # fmt: skip


def entities_of(entities: Entities, kind: str) -> Mapping[str, Any]:
    """Give one kind's mapping id → entity."""
    found: Mapping[str, Any] = getattr(entities, kind)
    return found


@functools.lru_cache(maxsize=4096)
def pem_fingerprint(pem: str) -> str | None:
    """SHA-256 fingerprint of a stored certificate's leaf (cached: stored PEM is immutable)."""
    return certificate_fingerprint(pem)


def fingerprint_of(kind: str, entity: Any) -> str | None:
    """The fingerprint a certificate or CA certificate is addressed by, else ``None``."""
    if kind == "certificates":
        return pem_fingerprint(entity.cert)
    if kind == "ca_certificates":
        return str(entity.cert_digest) or pem_fingerprint(entity.cert)
    return None


def find_entity(entities: Entities, kind: str, key: str) -> Any | None:
    """Find an entity by id, unique name or (certificates) ``sha256:`` fingerprint.

    Args:
        entities: the configuration.
        kind: the collection, e.g. ``services``.
        key: the id, name or fingerprint as given.

    Returns:
        The entity, or ``None``.
    """
    collection = entities_of(entities, kind)
    found = collection.get(key.lower())
    if found is not None:
        return found
    name_field = NAME_FIELDS.get(kind)
    if name_field is not None:
        wanted = key.lower() if kind == "snis" else key
        for entity in collection.values():
            if getattr(entity, name_field) == wanted:
                return entity
    digest = normal_fingerprint(key)
    if digest is not None and kind in ("certificates", "ca_certificates"):
        for entity in collection.values():
            if fingerprint_of(kind, entity) == digest:
                return entity
    return None


def missing_message(kind: str, key: str) -> str:
    """Say that nothing of ``kind`` has id/name ``key``."""
    how = "id or fingerprint" if kind in ("certificates", "ca_certificates") else "id"
    if kind in NAME_FIELDS:
        how = f"id or {NAME_FIELDS[kind]}"
    return f"no {SINGULAR[kind]} with {how} {key[:80]!r}"
