"""The relational datastore logic shared by SQLite and PostgreSQL.

Theory of operation
-------------------
Tables are those of ``store.migrations``; the ``meta`` table holds ``version``
(the change counter) and, once a secret was configured, ``seal`` (the
:class:`~trio_gw.store.sealing.SealRecord`).

*Optimistic concurrency.*  The store remembers, for each ``Entities`` object it
handed out (weakly, by identity), the version it was read or written at.
``commit(old, new)`` opens a write transaction (the backend's exclusive lock)
and compares that version with the stored one; an ``old`` the store did not
hand out is compared by content instead.  Either mismatch is a
:class:`StoreConflict`.  The difference is then written kind by kind (deletes
first, so renames and swaps of unique names work) and the version bumped, all
in one transaction: any failure rolls everything back.

*Sealing.*  Every read and write first checks that the stored seal record is
still the one this process opened the store with; a reseal by another process
makes this one fail loudly instead of writing keys under a stale key.  Writes
with a secret also seal any key still stored in clear.

Backends subclass :class:`SqlStore` and supply the connection and transaction
statements.  All methods hold a lock: one store object may be shared by
threads, one operation at a time.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
import weakref
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, ClassVar, TypeVar

from trio_gw.model.entities import Entities
from trio_gw.store.base import SealedKeyError, StoreConflict, StoreError
from trio_gw.store.codec import (
    KINDS,
    UNIQUE_COLUMNS,
    Changes,
    decode_entity,
    diff,
    dump_row,
    entity_data,
    load_row,
)
from trio_gw.store.migrations import Cursor
from trio_gw.store.secrets import SECRET_PREFIX, open_secret, seal_secret
from trio_gw.store.ticket_keys import META_KEY as TICKET_KEYS_META
from trio_gw.store.ticket_keys import open_ticket_keys, seal_ticket_keys
from trio_gw.store.sealing import (
    SEALED_FIELDS,
    Sealer,
    SealRecord,
    has_plain_fields,
    seal_fields,
    unseal_fields,
)

__all__ = ["WRITER_WAIT_SECONDS", "SqlStore"]

T = TypeVar("T")

#: ``meta`` keys the store itself owns (:meth:`SqlStore.swap_meta` refuses them).
_OWN_META = frozenset({"version", "seal"})

#: How long a writer waits for the datastore-wide writer lock before answering "busy".
WRITER_WAIT_SECONDS = 30.0

_NO_SECRET = "this datastore's private keys are sealed; set private_key_encryption_secret to open it"
_RESEALED = (
    "the datastore was resealed with another secret since this process opened it; "
    "restart with the current private_key_encryption_secret"
)


class SqlStore(ABC):
    """A :class:`~trio_gw.store.base.Store` over a DB-API connection (see subclasses)."""

    #: Exceptions of the driver that mean "the database failed" (wrapped in StoreError).
    db_errors: ClassVar[tuple[type[BaseException], ...]] = ()

    def __init__(self, connection: Any) -> None:
        self._conn = connection
        self._lock = threading.Lock()
        self._closed = False
        self._sealer: Sealer | None = None
        self._seal_json: str | None = None
        self._known: dict[int, tuple[weakref.ref[Entities], int]] = {}

    # -- backend hooks ---------------------------------------------------------------

    @abstractmethod
    def _cursor(self) -> Cursor:
        """A cursor taking ``?`` placeholders."""
        ...

    @abstractmethod
    def _begin_read(self, cur: Cursor) -> None:
        """Start a transaction that sees one consistent snapshot."""
        ...

    @abstractmethod
    def _begin_write(self, cur: Cursor) -> None:
        """Start a transaction holding the write lock (one writer at a time)."""
        ...

    @abstractmethod
    def _try_writer_lock(self) -> bool:
        """Take the datastore-wide writer lock if it is free; whether it was taken."""
        ...

    @abstractmethod
    def _release_writer_lock(self) -> None:
        """Give the writer lock back."""
        ...

    @abstractmethod
    def _try_named_lock(self, name: str) -> bool:
        """Take the cluster-wide lock ``name`` if it is free (not re-entrant); whether it was taken."""
        ...

    @abstractmethod
    def _release_named_lock(self, name: str) -> None:
        """Give the lock ``name`` back."""
        ...

    def _after_write(self, cur: Cursor, version: int) -> None:
        """Called inside the write transaction, after the version is bumped."""

    def _scrub(self) -> None:
        """Called after keys were rewritten (sealed or resealed): drop old copies kept by the backend."""

    # -- transactions ----------------------------------------------------------------

    @contextmanager
    def _transaction(self, *, write: bool) -> Iterator[Cursor]:
        """Hold the lock and a transaction; commit on success, roll back on any error."""
        with self._lock:
            if self._closed:
                raise StoreError("the store is closed")
            cur = self._cursor()
            try:
                (self._begin_write if write else self._begin_read)(cur)
                yield cur
                cur.execute("COMMIT")
            except BaseException as exc:
                self._rollback(cur)
                if self.db_errors and isinstance(exc, self.db_errors):
                    raise StoreError(f"datastore error: {exc}") from exc
                raise

    def _rollback(self, cur: Cursor) -> None:
        try:
            cur.execute("ROLLBACK")
        except self.db_errors:
            pass  # no transaction was open (BEGIN itself failed): nothing to undo

    # -- the Store interface ---------------------------------------------------------

    def load(self) -> Entities:
        """Read the whole configuration (see :meth:`trio_gw.store.base.Store.load`)."""
        return self.load_versioned()[0]

    def load_versioned(self) -> tuple[Entities, int]:
        """The whole configuration and the version it is at, read in one transaction."""
        entities, version = self._read_retrying(self._load_versioned)
        self._remember(entities, version)
        return entities, version

    def _load_versioned(self) -> tuple[Entities, int]:
        with self._transaction(write=False) as cur:
            self._check_seal(cur)
            return self._read_entities(cur), _read_version(cur)

    def version(self) -> int:
        """The change counter (see :meth:`trio_gw.store.base.Store.version`)."""
        return self._read_retrying(self._version)

    def _version(self) -> int:
        with self._transaction(write=False) as cur:
            return _read_version(cur)

    def _read_retrying(self, read: Callable[[], T]) -> T:
        """A read, tried once more on a new connection when the first one found its connection dead.

        A database that restarted leaves every open connection broken, and the
        first use of one is what finds out; the read itself is safe to repeat.
        Writes are never repeated (a commit may have landed).
        """
        try:
            return read()
        except StoreError:
            if not self._connection_lost():
                raise
        return read()

    def _connection_lost(self) -> bool:
        """Whether the backend's connection is known dead (the next cursor opens a new one)."""
        return False

    def commit(self, old: Entities, new: Entities) -> int:
        """Write the difference in one transaction (see :meth:`trio_gw.store.base.Store.commit`)."""
        changes = diff(old, new)
        with self._transaction(write=True) as cur:
            self._check_seal(cur)
            version = _read_version(cur)
            expected = self._version_of(old)
            if expected is not None and expected != version:
                raise StoreConflict(f"the datastore changed (version {expected} → {version}); load and retry")
            if expected is None and self._read_entities(cur) != old:
                raise StoreConflict("the datastore does not hold the configuration being replaced; load and retry")
            swept = self._seal_plain_rows(cur, changes)
            if changes or swept:
                self._write(cur, changes)
                version += 1
                cur.execute("UPDATE meta SET value = ? WHERE key = 'version'", (str(version),))
                self._after_write(cur, version)
        if swept:
            self._scrub()
        self._remember(new, version)
        return version

    def read_meta(self, key: str) -> str | None:
        """One value of the ``meta`` table (``None``: not set), e.g. the session-ticket key ring."""
        def read() -> str | None:
            with self._transaction(write=False) as cur:
                return _read_meta(cur, key)

        return self._read_retrying(read)

    def swap_meta(self, key: str, expected: str | None, value: str) -> bool:
        """Set a ``meta`` value if it still holds ``expected`` (compare-and-swap, in one write transaction).

        The configuration's version is not bumped: nothing reloads because of it.
        Two nodes rotating the ticket keys at the same moment both call this with
        the ring they read; one wins, the other reads the winner's.

        Args:
            key: the meta key (not ``version`` or ``seal``, which the store owns).
            expected: the value read before (``None``: not set yet).
            value: the new value.

        Returns:
            Whether the value was written.

        Raises:
            ValueError: ``key`` is one the store owns.
            StoreError: the datastore failed.
        """
        if key in _OWN_META:
            raise ValueError(f"the meta key {key!r} belongs to the store")
        with self._transaction(write=True) as cur:
            if _read_meta(cur, key) != expected:
                return False
            cur.execute("DELETE FROM meta WHERE key = ?", (key,))
            cur.execute("INSERT INTO meta (key, value) VALUES (?, ?)", (key, value))
        return True

    def acquire_writer(self, timeout: float = WRITER_WAIT_SECONDS) -> None:
        """Hold the datastore-wide writer lock: one writer of the whole cluster at a time.

        A write reads, computes, compiles and commits; holding this lock for the
        whole of it means writers on other nodes and processes wait their turn
        instead of losing compare-and-swap races to each other (which is what
        keeps a burst of writes on several nodes from starving one of them).
        The compare-and-swap in :meth:`commit` still guards correctness, so a
        writer that does not take the lock (``trio-gw config load``) is safe too.

        Raises:
            StoreError: the lock stayed taken for ``timeout`` seconds, or the
                datastore failed.
        """
        deadline = time.monotonic() + timeout
        delay = 0.002
        while True:
            try:
                if self._try_writer_lock():
                    return
            except self.db_errors as exc:
                raise StoreError(f"datastore error: {exc}") from exc
            if time.monotonic() >= deadline:
                raise StoreError(f"the datastore is busy: another writer held it for {timeout:.0f} s")
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    def release_writer(self) -> None:
        """Give the writer lock of :meth:`acquire_writer` back (never raises: a lost connection released it)."""
        try:
            self._release_writer_lock()
        except self.db_errors:
            pass

    # -- node secrets and cluster-wide locks (the ACME account, one renewer per cluster) --

    def read_secret(self, name: str) -> str | None:
        """A node secret kept beside the configuration (:mod:`trio_gw.store.secrets`), or ``None``.

        Raises:
            SealedKeyError: it is sealed and does not open with this process's secret.
            StoreError: the datastore failed.
        """
        with self._transaction(write=False) as cur:
            self._check_seal(cur)
            stored = _read_meta(cur, SECRET_PREFIX + name)
        return None if stored is None else open_secret(stored, self._sealer, name)

    def write_secret(self, name: str, value: str) -> None:
        """Keep a node secret (sealed when a secret is configured), replacing the previous one.

        Not a configuration change: the version does not move, no node reloads.

        Raises:
            StoreError: the datastore failed.
        """
        with self._transaction(write=True) as cur:
            self._check_seal(cur)
            cur.execute("DELETE FROM meta WHERE key = ?", (SECRET_PREFIX + name,))
            cur.execute("INSERT INTO meta (key, value) VALUES (?, ?)",
                        (SECRET_PREFIX + name, seal_secret(value, self._sealer, name)))

    def read_secrets(self, prefix: str) -> dict[str, str]:
        """Every node secret whose name starts with ``prefix``, opened (the ACME challenges being answered).

        Raises:
            SealedKeyError: one does not open; StoreError: the datastore failed.
        """
        with self._transaction(write=False) as cur:
            self._check_seal(cur)
            rows = cur.execute("SELECT key, value FROM meta WHERE key LIKE ?",
                               (SECRET_PREFIX + prefix.replace("%", "") + "%",)).fetchall()
        found = {}
        for key, stored in rows:
            name = str(key)[len(SECRET_PREFIX):]
            if name.startswith(prefix):
                found[name] = open_secret(str(stored), self._sealer, name)
        return found

    def delete_secret(self, name: str) -> None:
        """Forget a node secret (nothing happens when there is none).

        Raises:
            StoreError: the datastore failed.
        """
        with self._transaction(write=True) as cur:
            cur.execute("DELETE FROM meta WHERE key = ?", (SECRET_PREFIX + name,))

    def try_lock(self, name: str) -> bool:
        """Take the cluster-wide lock ``name`` without waiting (every node and process of the datastore).

        Not re-entrant within a process's own store object: callers serialise
        their own tasks.  A node that dies releases it (its connection or file
        descriptor goes).

        Raises:
            StoreError: the datastore failed.
        """
        try:
            return self._try_named_lock(name)
        except self.db_errors as exc:
            raise StoreError(f"datastore error: {exc}") from exc

    def unlock(self, name: str) -> None:
        """Give the lock of :meth:`try_lock` back (never raises: a lost connection released it)."""
        try:
            self._release_named_lock(name)
        except self.db_errors:
            pass

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._conn.close()

    def reseal(self, old_secret: str | None, new_secret: str | None) -> int:
        """Re-encrypt every private key (and the session-ticket key ring) under ``new_secret``, in one transaction.

        ``trio-gw keys reseal`` calls this.  A fresh salt is drawn even when the
        secret stays the same, so processes still running with the old seal
        record stop writing (they get :class:`SealedKeyError`) until restarted.

        Args:
            old_secret: the secret the datastore is sealed with (``None`` if it is not).
            new_secret: the secret to seal with from now on; ``None`` stores keys
                in clear.

        Returns:
            The new version (bumped, so every node reloads and notices).

        Raises:
            SealedKeyError: ``old_secret`` does not open the datastore.
            StoreConflict: another process resealed at the same time.

        .. warning:: ``new_secret=None`` writes every private key in clear; it is
           meant only for moving away from sealing.
        """
        with self._transaction(write=False) as cur:
            stored = _read_meta(cur, "seal")
        old = _open_sealer(old_secret, stored)
        new = Sealer.create(new_secret) if new_secret else None
        with self._transaction(write=True) as cur:
            if _read_meta(cur, "seal") != stored:
                raise StoreConflict("the datastore was resealed meanwhile; retry")
            for kind in SEALED_FIELDS:
                for row_id, text in cur.execute(f"SELECT id, data FROM {kind}").fetchall():
                    plain = unseal_fields(old, kind, row_id, load_row(f"{kind} {row_id}", text))
                    sealed = seal_fields(new, kind, row_id, plain)
                    cur.execute(f"UPDATE {kind} SET data = ? WHERE id = ?", (dump_row(f"{kind} {row_id}", sealed), row_id))
            ring = _read_meta(cur, TICKET_KEYS_META)
            if ring is not None:
                resealed = seal_ticket_keys(open_ticket_keys(ring, old), new)
                cur.execute("UPDATE meta SET value = ? WHERE key = ?", (resealed, TICKET_KEYS_META))
            for key, text in cur.execute("SELECT key, value FROM meta WHERE key LIKE ?", (SECRET_PREFIX + "%",)).fetchall():
                name = key[len(SECRET_PREFIX):]
                cur.execute("UPDATE meta SET value = ? WHERE key = ?",
                            (seal_secret(open_secret(text, old, name), new, name), key))
            self._store_seal(cur, new)
            version = _read_version(cur) + 1
            cur.execute("UPDATE meta SET value = ? WHERE key = 'version'", (str(version),))
            self._after_write(cur, version)
        self._sealer, self._seal_json = new, (new.record.to_json() if new else None)
        self._scrub()
        return version

    @property
    def sealer(self) -> Sealer | None:
        """What seals secrets at rest (``None`` without ``private_key_encryption_secret``)."""
        return self._sealer

    @property
    def sealed(self) -> bool:
        """Whether private keys are sealed (a secret is configured)."""
        return self._sealer is not None

    # -- opening ---------------------------------------------------------------------

    def _open_seal(self, secret: str | None) -> None:
        """Set up sealing at open: check the secret, or seal a datastore for the first time."""
        with self._transaction(write=False) as cur:
            stored = _read_meta(cur, "seal")
        if stored is None and secret is not None:
            fresh = Sealer.create(secret)
            with self._transaction(write=True) as cur:
                stored = _read_meta(cur, "seal")  # another process may have won the race
                if stored is None:
                    self._store_seal(cur, fresh)
                    self._sealer, self._seal_json = fresh, fresh.record.to_json()
                    return
        self._sealer, self._seal_json = _open_sealer(secret, stored), stored

    def _store_seal(self, cur: Cursor, sealer: Sealer | None) -> None:
        cur.execute("DELETE FROM meta WHERE key = 'seal'")
        if sealer is not None:
            cur.execute("INSERT INTO meta (key, value) VALUES ('seal', ?)", (sealer.record.to_json(),))

    # -- rows ------------------------------------------------------------------------

    def _check_seal(self, cur: Cursor) -> None:
        if _read_meta(cur, "seal") != self._seal_json:
            raise SealedKeyError(_RESEALED if self._seal_json else _NO_SECRET)

    def _read_entities(self, cur: Cursor) -> Entities:
        kinds: dict[str, dict[str, Any]] = {}
        for kind in KINDS:
            rows = cur.execute(f"SELECT id, data FROM {kind} ORDER BY id").fetchall()
            kinds[kind] = {i: self._decode(kind, i, text) for i, text in rows}
        return Entities(**kinds)

    def _decode(self, kind: str, entity_id: str, text: str) -> Any:
        data = unseal_fields(self._sealer, kind, entity_id, load_row(f"{kind} {entity_id}", text))
        return decode_entity(kind, entity_id, data)

    def _write(self, cur: Cursor, changes: Mapping[str, Changes]) -> None:
        for kind, change in changes.items():
            gone = [(i,) for i in change.deletes] + [(e.id,) for e in change.upserts]
            cur.executemany(f"DELETE FROM {kind} WHERE id = ?", gone)
        for kind, change in changes.items():
            columns = ("id", "data", *UNIQUE_COLUMNS[kind])
            sql = f"INSERT INTO {kind} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
            cur.executemany(sql, [self._row(kind, e) for e in change.upserts])

    def _row(self, kind: str, entity: Any) -> tuple[Any, ...]:
        data = seal_fields(self._sealer, kind, entity.id, entity_data(entity))
        unique = tuple(getattr(entity, c) for c in UNIQUE_COLUMNS[kind])
        return (entity.id, dump_row(f"{kind} {entity.id}", data), *unique)

    def _seal_plain_rows(self, cur: Cursor, changes: Mapping[str, Changes]) -> bool:
        """Seal keys left in clear (datastore written before a secret was set)."""
        if self._sealer is None:
            return False
        swept = False
        for kind in SEALED_FIELDS:
            change = changes.get(kind, Changes())
            touched = set(change.deletes) | {e.id for e in change.upserts}
            for row_id, text in cur.execute(f"SELECT id, data FROM {kind}").fetchall():
                data = load_row(f"{kind} {row_id}", text)
                if row_id not in touched and has_plain_fields(kind, data):
                    sealed = seal_fields(self._sealer, kind, row_id, data)
                    cur.execute(f"UPDATE {kind} SET data = ? WHERE id = ?", (dump_row(f"{kind} {row_id}", sealed), row_id))
                    swept = True
        return swept

    # -- versions of handed-out configurations ---------------------------------------

    def _remember(self, entities: Entities, version: int) -> None:
        key = id(entities)
        known = self._known
        self._known[key] = (weakref.ref(entities, lambda _: known.pop(key, None)), version)

    def _version_of(self, entities: Entities) -> int | None:
        entry = self._known.get(id(entities))
        return entry[1] if entry is not None and entry[0]() is entities else None


def _open_sealer(secret: str | None, stored: str | None) -> Sealer | None:
    if stored is None:
        return None
    if secret is None:
        raise SealedKeyError(_NO_SECRET)
    return Sealer.open(secret, SealRecord.parse(stored))


def _read_meta(cur: Cursor, key: str) -> str | None:
    row = cur.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return None if row is None else str(row[0])


def _read_version(cur: Cursor) -> int:
    value = _read_meta(cur, "version")
    if value is None:
        raise StoreError("the datastore has no version counter (not a trio-gw datastore?)")
    return int(value)
