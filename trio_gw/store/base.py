"""The datastore interface the runtime uses, its errors, and whole-configuration helpers.

A :class:`Store` holds one complete configuration (:class:`~trio_gw.model.entities.Entities`)
and a change counter.  It is synchronous: the runtime calls it from a worker
thread (``trio.to_thread.run_sync``), never on the event loop.

Writes are optimistic: a caller loads the configuration, builds the new one,
and commits the pair.  The store writes the difference in one transaction, or
raises :class:`StoreConflict` when somebody else (another process, another
node) wrote in between; the caller then loads again and retries.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from trio_gw.errors import GatewayError
from trio_gw.model.entities import Entities

if TYPE_CHECKING:
    from trio_gw.store.sealing import Sealer

__all__ = [
    "SealedKeyError",
    "Store",
    "StoreConflict",
    "StoreError",
    "export_entities",
    "replace_all",
]


class StoreError(GatewayError):
    """The datastore cannot be opened, read or written (corrupt rows, constraint, IO)."""


class StoreConflict(StoreError):
    """The datastore changed since the configuration being replaced was loaded."""


class SealedKeyError(StoreError):
    """Sealed private keys cannot be opened: no secret, a wrong secret, or a tampered blob."""


class Store(Protocol):
    """What the runtime, the Admin API and the CLI need from a datastore."""

    def load(self) -> Entities:
        """Read the whole configuration, as of one consistent point in time.

        Raises:
            StoreError: unreadable rows; SealedKeyError when a key does not open.
        """
        ...

    def load_versioned(self) -> tuple[Entities, int]:
        """The whole configuration and the version it is at, read in one transaction.

        Raises:
            StoreError: unreadable rows; SealedKeyError when a key does not open.
        """
        ...

    def commit(self, old: Entities, new: Entities) -> int:
        """Write the difference between ``old`` and ``new`` in one transaction.

        Args:
            old: the configuration the caller started from (as returned by
                :meth:`load` or a previous :meth:`commit`).
            new: the configuration wanted.

        Returns:
            The store's version after the write.

        Raises:
            StoreConflict: the store no longer holds ``old``.
            StoreError: the write failed; nothing of it was kept.
        """
        ...

    def acquire_writer(self, timeout: float = ...) -> None:
        """Hold the datastore-wide writer lock (one writer of the cluster at a time; blocking).

        Raises:
            StoreError: it stayed taken for ``timeout`` seconds, or the datastore failed.
        """
        ...

    def release_writer(self) -> None:
        """Give the writer lock back."""
        ...

    def version(self) -> int:
        """The change counter: bumped by every write, cheap enough to poll each second."""
        ...

    def read_secret(self, name: str) -> str | None:
        """A node secret kept beside the configuration (sealed like keys), or ``None``.

        Raises:
            SealedKeyError: it does not open; StoreError: the datastore failed.
        """
        ...

    def write_secret(self, name: str, value: str) -> None:
        """Keep a node secret, replacing the previous one (not a configuration change).

        Raises:
            StoreError: the datastore failed.
        """
        ...

    def read_secrets(self, prefix: str) -> dict[str, str]:
        """Every node secret whose name starts with ``prefix``, opened.

        Raises:
            SealedKeyError: one does not open; StoreError: the datastore failed.
        """
        ...

    def delete_secret(self, name: str) -> None:
        """Forget a node secret.

        Raises:
            StoreError: the datastore failed.
        """
        ...

    def try_lock(self, name: str) -> bool:
        """Take the cluster-wide lock ``name`` without waiting; whether it was taken.

        Raises:
            StoreError: the datastore failed.
        """
        ...

    def unlock(self, name: str) -> None:
        """Give the lock ``name`` back."""
        ...

    def read_meta(self, key: str) -> str | None:
        """One value of the store's ``meta`` table (``None``: not set).

        Raises:
            StoreError: the datastore failed.
        """
        ...

    def swap_meta(self, key: str, expected: str | None, value: str) -> bool:
        """Compare-and-swap one ``meta`` value (the version is not bumped); whether it was written.

        Raises:
            StoreError: the datastore failed.
        """
        ...

    @property
    def sealer(self) -> Sealer | None:
        """What seals secrets at rest in this store (``None``: no secret configured)."""
        ...

    def close(self) -> None:
        """Release the connection; the store cannot be used afterwards."""
        ...


def export_entities(store: Store) -> Entities:
    """The whole configuration, for ``trio-gw config dump`` (same as ``store.load()``).

    Args:
        store: an open store.

    Returns:
        Every entity.
    """
    return store.load()


def replace_all(store: Store, entities: Entities, *, attempts: int = 3) -> int:
    """Make ``entities`` the store's whole configuration (``trio-gw config load``).

    Entities absent from ``entities`` are deleted.  A concurrent writer makes
    the load retry from a fresh read, up to ``attempts`` times.

    Args:
        store: an open store.
        entities: the configuration wanted.
        attempts: how many times to try before giving up.

    Returns:
        The store's version afterwards.

    Raises:
        StoreConflict: other writers kept winning.
        StoreError: the write failed.
    """
    for attempt in range(attempts):
        try:
            return store.commit(store.load(), entities)
        except StoreConflict:
            if attempt == attempts - 1:
                raise
    raise ValueError("attempts must be at least 1")
