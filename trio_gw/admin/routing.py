"""Admin API paths: which resource a request path names, and the methods it serves.

Paths follow Kong's Admin API.  Path segments are percent-decoded, so
``/snis/%2A.example.com`` names the SNI ``*.example.com``; one trailing slash is
ignored.  Anything else is ``None`` (404).
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from typing import Final

from trio_gw.admin.credentials import CREDENTIAL_ENDPOINTS
from trio_gw.admin.inventory import UI_ASSETS
from trio_gw.admin.lookup import KINDS

#: (parent kind, child kind) → the child's field naming its parent.
NESTED: Final = {
    ("services", "routes"): "service",
    ("services", "plugins"): "service",
    ("routes", "plugins"): "route",
    ("consumers", "plugins"): "consumer",
    ("certificates", "snis"): "certificate",
}
#: Resource shape → methods served (in the order ``allow`` lists them).
METHODS: Final = {
    "root": ("GET",),
    "openapi": ("GET",),
    "inventory": ("GET",),
    "ui": ("GET",),
    "collection": ("GET", "POST"),
    "entity": ("GET", "PUT", "PATCH", "DELETE"),
    "nested": ("GET", "POST"),
    "credentials": ("GET", "POST"),
    "credential": ("GET", "DELETE"),
}


@dataclass(frozen=True)
class Target:
    """What a path names.

    ``shape`` is a key of :data:`METHODS`; ``kind`` the collection (the child
    for nested paths); ``key`` the id/name in the path; ``parent`` the parent
    collection of a nested path; ``segment``/``item`` a credential kind and id.
    """

    shape: str
    kind: str = ""
    key: str = ""
    parent: str = ""
    segment: str = ""
    item: str = ""


def match_path(path: str) -> Target | None:
    """Give the resource a request path names.

    Args:
        path: the request path without query (``/services/abc/routes``).

    Returns:
        The target, or ``None`` for an unknown path.
    """
    if path in ("/", ""):
        return Target("root")
    if path == "/openapi.json":
        return Target("openapi")
    if path.rstrip("/") == "/certificates/inventory":  # never an entity: certificate ids are UUIDs
        return Target("inventory")
    if path in UI_ASSETS:
        return Target("ui", key=path)
    if not path.startswith("/"):
        return None
    raw = path[1:-1] if path.endswith("/") else path[1:]
    try:
        parts = [urllib.parse.unquote(p, errors="strict") for p in raw.split("/")] if raw else []
    except UnicodeDecodeError:
        return None
    if not parts or not all(parts) or parts[0] not in KINDS:
        return None
    kind = parts[0]
    if len(parts) == 1:
        return Target("collection", kind)
    if len(parts) == 2:
        return Target("entity", kind, parts[1])
    if (kind, parts[2]) in NESTED and len(parts) == 3:
        return Target("nested", parts[2], parts[1], parent=kind)
    if kind == "consumers" and parts[2] in CREDENTIAL_ENDPOINTS and len(parts) <= 4:
        item = parts[3] if len(parts) == 4 else ""
        return Target("credential" if item else "credentials", kind, parts[1], segment=parts[2], item=item)
    return None
