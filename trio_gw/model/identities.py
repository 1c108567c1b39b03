"""Entity ids, natural keys and references for the declarative loader.

Ids not given in a file are derived, not random, so reloading an unchanged
file keeps every id (Kong DB-less does the same): ``uuid5`` over
:data:`ID_NAMESPACE` and the entity's *natural key*.  The natural key is the
entity's unique name where it has one (service and route ``name``, consumer
``username``/``custom_id``, SNI ``name``), the certificate's SHA-256 fingerprint,
the plugin's scope, and otherwise its content (every field but the id and the
timestamps).  Keys never include the entity's position, so reordering a file
keeps the ids; identical nameless entities are told apart by occurrence
("#1", "#2"), which is order-free because they are interchangeable.  (Two
certificate entities holding the *same* certificate are the exception: keyed by
fingerprint only, so that editing a certificate's tags or SNIs keeps its id,
they swap ids when swapped in the file.)

:class:`EntityIndex` finds the target of a reference by id, by natural name,
or (certificates and CA certificates) by ``sha256:<hex>`` fingerprint.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from trio_gw.model.fields import Ref

#: Namespace of generated ids; changing it changes every generated id.
ID_NAMESPACE: Final = uuid.UUID("7c1f3a52-5b0e-5d4a-9a43-2f6e1c9b8d10")
#: Fields that never take part in a content key.
_NOT_CONTENT: Final = frozenset({"id", "created_at", "updated_at", "key", "key_alt"})
#: Lists of nested entities, whose order does not matter.
_NESTED: Final = frozenset({"routes", "plugins", "snis"})
_SINGULAR: Final = {
    "services": "service", "routes": "route", "consumers": "consumer",
    "certificates": "certificate", "ca_certificates": "CA certificate", "snis": "SNI", "plugins": "plugin",
}  # fmt: skip


@dataclass(eq=False)
class Item:
    """One entity read from the document, before it becomes a dataclass.

    ``fields`` are the dataclass keyword arguments; values may still be
    :class:`~trio_gw.model.fields.Ref` (or, for a nested entity's owner,
    another :class:`Item`).  ``given_id`` tells whether ``id`` came from the file.
    """

    kind: str
    path: str
    fields: dict[str, Any]
    key: str = ""
    given_id: bool = False
    entity: Any = None
    bare: bool = False  # written as its name alone (an SNI in a certificate's list)

    @property
    def id(self) -> str:
        """The entity's id (given, or derived from its natural key)."""
        return str(self.fields["id"])


def singular(kind: str) -> str:
    """Name one entity of collection ``kind`` in messages (``services`` → ``service``)."""
    return _SINGULAR.get(kind, kind)


def generated_id(key: str) -> str:
    """Derive the id of an entity from its natural key.

    Args:
        key: the natural key, e.g. ``services:name:billing``.

    Returns:
        A UUID string (version 5).
    """
    return str(uuid.uuid5(ID_NAMESPACE, key))


def canonical(value: object) -> str:
    """Give a stable text form of a field value, for content keys.

    Args:
        value: a field value (mappings, sequences, scalars, refs, items).

    Returns:
        The same text for equal values, whatever the mapping order.
    """
    if isinstance(value, Ref):
        return f"ref({value.kind}:{value.value})"
    if isinstance(value, Item):
        return f"item({value.key})"
    if isinstance(value, Mapping):
        return "{" + ",".join(sorted(f"{canonical(k)}:{canonical(v)}" for k, v in value.items())) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(canonical(v) for v in value) + "]"
    return f"{type(value).__name__}({value!r})"


def content_key(kind: str, raw: Mapping[Any, Any], owner: Item | None = None) -> str:
    """Natural key of an entity without a name: its content as written.

    The content includes nested entities (so two nameless routes with
    different plugins differ) and the owner's key for a nested entity.  Private
    keys are left out: an id is public and must not be derived from a secret.

    Args:
        kind: the collection, e.g. ``routes``.
        raw: the entity's mapping from the document.
        owner: the entity it is nested in, if any.

    Returns:
        ``kind:content:<canonical content>``.
    """
    content = {k: v for k, v in raw.items() if k not in _NOT_CONTENT}
    for key in _NESTED.intersection(content):
        if isinstance(content[key], list | tuple):  # nested entities: a set, not a sequence
            content[key] = sorted(canonical(item) for item in content[key])
    within = f"{owner.key}/" if owner is not None else ""
    return f"{kind}:content:{within}{canonical(content)}"


def certificate_fingerprint(pem: str) -> str | None:
    """SHA-256 (lowercase hex) of the DER of the first certificate in ``pem``.

    Args:
        pem: a certificate entity's (normalised) ``cert``.

    Returns:
        The fingerprint, or ``None`` when ``pem`` holds no readable certificate.
    """
    try:
        certs = x509.load_pem_x509_certificates(pem.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        return None
    return hashlib.sha256(certs[0].public_bytes(serialization.Encoding.DER)).hexdigest()


def normal_fingerprint(reference: str) -> str | None:
    """Read a ``sha256:<hex>`` reference (colons allowed, any case) as lowercase hex.

    Args:
        reference: the reference as written.

    Returns:
        64 lowercase hex digits, or ``None`` when ``reference`` is not a fingerprint.
    """
    prefix, sep, digest = reference.partition(":")
    if not sep or prefix.lower() != "sha256":
        return None
    digest = digest.replace(":", "").lower()
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        return None
    return digest


@dataclass
class EntityIndex:
    """Entities of every kind by id, natural name and fingerprint."""

    by_id: dict[str, dict[str, Item]] = field(default_factory=dict)
    by_name: dict[str, dict[str, Item]] = field(default_factory=dict)
    by_fingerprint: dict[str, dict[str, Item]] = field(default_factory=dict)

    def add(self, item: Item, name: str | None = None, fingerprint: str | None = None) -> None:
        """Index ``item`` (first one wins; duplicates are reported elsewhere)."""
        self.by_id.setdefault(item.kind, {}).setdefault(item.id, item)
        if name is not None:
            self.by_name.setdefault(item.kind, {}).setdefault(name, item)
        if fingerprint is not None:
            self.by_fingerprint.setdefault(item.kind, {}).setdefault(fingerprint, item)

    def find(self, ref: Ref) -> Item | None:
        """Return the entity ``ref`` points at, or ``None``.

        Args:
            ref: a reference by id, natural name, or ``sha256:`` fingerprint.

        Returns:
            The target, or ``None`` when nothing matches.
        """
        found = self.by_id.get(ref.kind, {}).get(ref.value.lower())
        if found is None:
            found = self.by_name.get(ref.kind, {}).get(ref.value)
        fingerprint = normal_fingerprint(ref.value)
        if found is None and fingerprint is not None:
            found = self.by_fingerprint.get(ref.kind, {}).get(fingerprint)
        return found

    def missing_message(self, ref: Ref) -> str:
        """Say that ``ref`` points at nothing."""
        how = "id or fingerprint" if ref.kind in ("certificates", "ca_certificates") else "id or name"
        return f"no {singular(ref.kind)} with {how} {ref.value!r}"
