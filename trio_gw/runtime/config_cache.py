"""The last good configuration under ``prefix``: written after each good load, read when the datastore is away.

The format and its checks are ``trio_gw.store.config_cache``; this module
writes the file atomically and owner-only (``runtime/files.py``: a reader never
sees a torn file) and reads it back.  The sealer is derived from the secret
once per process (scrypt: ~0.1 s), not once per write.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Final

from trio_gw.model.entities import Entities
from trio_gw.runtime.files import write_private_file
from trio_gw.store.config_cache import CachedConfig, ConfigCacheError, decode_config_cache, encode_config_cache
from trio_gw.store.sealing import Sealer

__all__ = ["CACHE_FILENAME", "ConfigCache", "cache_source"]

#: The cache's file name under ``prefix``.
CACHE_FILENAME: Final = "last-good-config"


def cache_source(settings: Mapping[str, object]) -> str:
    """The datastore a node uses, as the cache records it (a cache of another one is refused).

    Args:
        settings: parsed setting values (``database``, ``pg_host``, ``pg_port``, ``pg_database``, ``pg_schema``).

    Returns:
        ``postgres://host:port/database#schema``, or the ``database`` value (``sqlite``).
    """
    if settings.get("database") == "postgres":
        return (f"postgres://{settings.get('pg_host')}:{settings.get('pg_port')}/{settings.get('pg_database')}"
                f"#{settings.get('pg_schema')}")  # fmt: skip
    return str(settings.get("database"))


class ConfigCache:
    """The cache file of one node (blocking methods: call them in a worker thread).

    Args:
        prefix: the node's ``prefix`` directory.
        source: the datastore the node uses (``postgres://host:port/db#schema`` or ``sqlite``).
        secret: ``private_key_encryption_secret``, or ``None``.
    """

    def __init__(self, prefix: str | Path, *, source: str, secret: str | None) -> None:
        self.path = Path(prefix) / CACHE_FILENAME
        self._source = source
        self._secret = secret
        self._sealer: Sealer | None = None

    def write(self, entities: Entities, *, version: int, now: int) -> None:
        """Replace the cache with ``entities`` (atomically; keys sealed when a secret is set).

        Args:
            entities: the configuration a good generation was just built from.
            version: the datastore's version it was read at.
            now: Unix seconds.

        Raises:
            OSError: the file cannot be written.
            StoreError: the configuration cannot be encoded.
        """
        if self._secret is not None and self._sealer is None:
            self._sealer = Sealer.create(self._secret)
        data = encode_config_cache(entities, version=version, written_at=now, source=self._source, sealer=self._sealer)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_private_file(self.path, data)

    def read(self) -> CachedConfig | None:
        """The cached configuration, or ``None`` when there is no cache yet.

        Raises:
            ConfigCacheError: the file is unreadable, damaged, foreign or of a newer format (the message says which).
            SealedKeyError: its keys are sealed and the secret is missing or wrong.
        """
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ConfigCacheError(f"{self.path}: cannot read: {exc.strerror}") from exc
        try:
            return decode_config_cache(data, secret=self._secret, source=self._source)
        except ConfigCacheError as exc:
            raise ConfigCacheError(f"{self.path}: {exc}") from None
