"""The last good configuration as a file: what a node serves when it starts while its datastore is away.

Theory of operation
-------------------
A node that loaded a configuration from PostgreSQL (or SQLite) and built a
generation from it writes the configuration to ``<prefix>/last-good-config``
(``runtime/config_cache.py``).  A node that *starts* while the datastore is
unreachable reads it back and serves it, ``stale``, until the datastore
returns (issue 14).  This module is the file format, without IO:

``trio-gw config cache 1`` (header line), one line of JSON, then
``sha256:<hex>`` over the two lines before.

* **Rows as the store writes them**: each entity is ``{"id", "data"}`` with
  ``data`` from :func:`~trio_gw.store.codec.entity_data`, its private keys
  sealed by :func:`~trio_gw.store.sealing.seal_fields` — the same AES-256-GCM
  blobs, bound to kind, id and field, as in the datastore.  The seal record
  (scrypt salt and parameters, key check; no secret) is in the file, so the
  secret alone opens it; without ``private_key_encryption_secret`` keys are
  stored as the datastore stores them then, in a file only the owner can read.
* **Refused, with a message saying why**: a file that is not a cache (header),
  one that was cut or altered (digest), one of a newer format, one written for
  another datastore (``source``: a prefix copied from another cluster), keys
  that do not open with the secret.
* **Facts kept**: the datastore ``version`` it was read at and when it was
  written (``written_at``, Unix seconds), for ``/status``'s ``stale`` age.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from trio_gw.model.entities import Entities
from trio_gw.store.base import SealedKeyError, StoreError
from trio_gw.store.codec import KINDS, decode_entity, entity_data
from trio_gw.store.sealing import Sealer, SealRecord, seal_fields, unseal_fields

__all__ = ["FORMAT", "CachedConfig", "ConfigCacheError", "decode_config_cache", "encode_config_cache"]

#: The format this trio-gw writes and reads.
FORMAT: Final = 1
_HEADER: Final = b"trio-gw config cache "


class ConfigCacheError(StoreError):
    """The cache file cannot be used; the message says why."""


@dataclass(frozen=True)
class CachedConfig:
    """A configuration read back from the cache.

    Attributes:
        entities: the configuration, keys opened.
        version: the datastore's version it was read at.
        written_at: Unix seconds.
        source: the datastore it came from (``postgres://host:port/db#schema``, ``sqlite``).
    """

    entities: Entities
    version: int
    written_at: int
    source: str


def encode_config_cache(
    entities: Entities, *, version: int, written_at: int, source: str, sealer: Sealer | None
) -> bytes:
    """The cache file's bytes for a configuration.

    Args:
        entities: the configuration a generation was built from.
        version: the datastore's version it was read at.
        written_at: Unix seconds (now).
        source: the datastore it came from (checked when read back).
        sealer: seals private keys (``None`` without ``private_key_encryption_secret``).

    Returns:
        Header line, JSON line, digest line.

    Raises:
        StoreError: a value JSON cannot hold (as the datastore would refuse it).
    """
    rows = {
        kind: [{"id": i, "data": seal_fields(sealer, kind, i, entity_data(e))} for i, e in sorted(getattr(entities, kind).items())]
        for kind in KINDS
    }  # fmt: skip
    body = {
        "format": FORMAT, "version": version, "written_at": written_at, "source": source,
        "seal": None if sealer is None else json.loads(sealer.record.to_json()), "entities": rows,
    }  # fmt: skip
    try:
        line = json.dumps(body, separators=(",", ":"), allow_nan=False, ensure_ascii=False).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise StoreError(f"the configuration cannot be cached: {exc}") from exc
    head = _HEADER + str(FORMAT).encode() + b"\n" + line + b"\n"
    return head + b"sha256:" + hashlib.sha256(head).hexdigest().encode() + b"\n"


def decode_config_cache(data: bytes, *, secret: str | None, source: str) -> CachedConfig:
    """Read a cache file's bytes back, checking everything that can be wrong.

    Args:
        data: the file's bytes.
        secret: ``private_key_encryption_secret`` (opens sealed keys).
        source: the datastore this node uses: a cache of another is refused.

    Returns:
        The configuration and its facts.

    Raises:
        ConfigCacheError: not a cache, cut or altered, a newer format, another datastore.
        SealedKeyError: keys are sealed and the secret is missing or wrong.
    """
    body = _checked_body(data)
    if body.get("source") != source:
        raise ConfigCacheError(f"the cache was written for the datastore {body.get('source')!r}, "
                               f"not this node's {source!r}")  # fmt: skip
    sealer = _sealer(body.get("seal"), secret)
    entities = _entities(body.get("entities"), sealer)
    try:
        return CachedConfig(entities, int(body["version"]), int(body["written_at"]), str(body["source"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigCacheError(f"the cache lacks its version or time: {exc}") from None


def _checked_body(data: bytes) -> dict[str, Any]:
    lines = data.split(b"\n")
    if not lines[0].startswith(_HEADER):
        raise ConfigCacheError("not a trio-gw configuration cache (no header)")
    version = lines[0][len(_HEADER) :]
    if not version.isdigit() or int(version) > FORMAT:
        raise ConfigCacheError(f"the cache's format {version.decode(errors='replace')!r} is not one this trio-gw reads "
                               "(written by a newer trio-gw?)")  # fmt: skip
    if len(lines) != 4 or lines[3] != b"" or not lines[2].startswith(b"sha256:"):
        raise ConfigCacheError("the cache is cut short or has extra lines (a torn write, or edited)")
    head = lines[0] + b"\n" + lines[1] + b"\n"
    if not hmac.compare_digest(lines[2][7:], hashlib.sha256(head).hexdigest().encode()):
        raise ConfigCacheError("the cache's digest does not match its content (damaged or edited)")
    try:
        body = json.loads(lines[1])
    except ValueError as exc:
        raise ConfigCacheError(f"the cache is not valid JSON: {exc}") from None
    if not isinstance(body, dict) or body.get("format") != int(version):
        raise ConfigCacheError("the cache's body does not match its header")
    return body


def _sealer(record: object, secret: str | None) -> Sealer | None:
    if record is None:
        return None
    if secret is None:
        raise SealedKeyError("the cached configuration's keys are sealed; set private_key_encryption_secret")
    try:
        parsed = SealRecord.parse(json.dumps(record))
    except StoreError as exc:
        raise ConfigCacheError(str(exc)) from None
    return Sealer.open(secret, parsed)


def _entities(rows: object, sealer: Sealer | None) -> Entities:
    if not isinstance(rows, Mapping) or set(rows) - set(KINDS):
        raise ConfigCacheError("the cache's entities are not a mapping of known kinds")
    kinds: dict[str, dict[str, Any]] = {}
    for kind in KINDS:
        found: dict[str, Any] = {}
        for row in rows.get(kind, ()):
            if not isinstance(row, Mapping) or not isinstance(row.get("id"), str) or not isinstance(row.get("data"), dict):
                raise ConfigCacheError(f"the cache holds a malformed {kind} row")
            entity_id = row["id"]
            found[entity_id] = decode_entity(kind, entity_id, unseal_fields(sealer, kind, entity_id, row["data"]))
        kinds[kind] = found
    return Entities(**kinds)
