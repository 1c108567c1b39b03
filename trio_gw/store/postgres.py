"""The cluster datastore: PostgreSQL shared by several gateway nodes (``database = postgres``).

Every node opens the same database (one schema, ``trio_gw`` by default).  A
commit notifies the channel ``trio_gw_changes`` with the new version as
payload (delivered when the transaction commits), so other nodes learn of it
within a second: :meth:`PostgresStore.wait_for_change` blocks on a separate
listening connection.  Polling :meth:`version` works too.

Writers serialise on a transaction-scoped advisory lock keyed by the schema
(migrations included, so nodes starting together migrate once); ``load`` reads
in one ``REPEATABLE READ`` snapshot.  A broken connection is reopened on the
next call, so a node whose database went away keeps its last snapshot (the
runtime's job) and recovers when the database returns.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar, Final

import psycopg

from trio_gw.store._sql import SqlStore
from trio_gw.store.base import StoreError
from trio_gw.store.migrations import Cursor, migrate

__all__ = ["CHANNEL", "DEFAULT_SCHEMA", "PostgresStore"]

#: The LISTEN/NOTIFY channel; the payload is the new version.
CHANNEL: Final = "trio_gw_changes"
DEFAULT_SCHEMA: Final = "trio_gw"
#: Seconds to wait for the server when connecting.
CONNECT_TIMEOUT_SECONDS: Final = 5
_SCHEMA_NAME: Final = re.compile(r"[a-z_][a-z0-9_]{0,62}")


class _Cursor:
    """A psycopg cursor that takes ``?`` placeholders, as SQLite's does."""

    def __init__(self, cursor: psycopg.Cursor[Any]) -> None:
        self._cur = cursor

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> _Cursor:
        self._cur.execute(sql.replace("?", "%s").encode(), params)
        return self

    def executemany(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        if rows:
            self._cur.executemany(sql.replace("?", "%s").encode(), rows)

    def fetchone(self) -> Any:
        return self._cur.fetchone()

    def fetchall(self) -> list[Any]:
        return self._cur.fetchall()


class PostgresStore(SqlStore):
    """A :class:`~trio_gw.store.base.Store` in a PostgreSQL schema."""

    db_errors: ClassVar[tuple[type[BaseException], ...]] = (psycopg.Error,)

    def __init__(self, conninfo: str, schema: str) -> None:
        self._conninfo = conninfo
        self._schema = schema
        self._listener: psycopg.Connection[Any] | None = None
        self._named_locks: set[str] = set()
        super().__init__(self._connect())

    @classmethod
    def open(cls, conninfo: str, *, secret: str | None, schema: str = DEFAULT_SCHEMA) -> PostgresStore:
        """Connect, create and migrate the schema if needed, check the secret.

        Args:
            conninfo: a libpq connection string or URI.
            secret: ``private_key_encryption_secret``, or ``None``.
            schema: the schema holding trio-gw's tables (lower-case identifier).

        Returns:
            The open store.

        Raises:
            StoreError: the server cannot be reached or the schema is newer than this trio-gw.
            SealedKeyError: the keys are sealed and ``secret`` is missing or wrong.
        """
        if not _SCHEMA_NAME.fullmatch(schema):
            raise StoreError(f"invalid schema name {schema!r}: use lower-case letters, digits and '_'")
        store = cls(conninfo, schema)
        try:
            with store._transaction(write=True) as cur:
                migrate(cur)
            store._open_seal(secret)
        except BaseException:
            store.close()
            raise
        return store

    def _connect(self) -> psycopg.Connection[Any]:
        try:
            conn = psycopg.connect(self._conninfo, autocommit=True, connect_timeout=CONNECT_TIMEOUT_SECONDS)
            conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self._schema}"'.encode())
            conn.execute(f'SET search_path TO "{self._schema}"'.encode())
        except psycopg.Error as exc:
            raise StoreError(f"cannot connect to the datastore: {exc}") from exc
        return conn

    def _cursor(self) -> Cursor:
        if self._conn.broken or self._conn.closed:
            self._conn = self._connect()
        return _Cursor(self._conn.cursor())

    def _connection_lost(self) -> bool:
        return bool(self._conn.broken or self._conn.closed)

    def _begin_read(self, cur: Cursor) -> None:
        cur.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")

    def _begin_write(self, cur: Cursor) -> None:
        cur.execute("BEGIN")
        cur.execute("SELECT pg_advisory_xact_lock(hashtext(?))", (f"trio-gw:{self._schema}",))

    def _try_writer_lock(self) -> bool:
        """A session advisory lock on the key every commit's transaction also takes (``_begin_write``):
        while a node holds it, commits from anywhere else wait, and this node's own commit goes through."""
        with self._lock:
            row = self._cursor().execute("SELECT pg_try_advisory_lock(hashtext(?))",
                                         (f"trio-gw:{self._schema}",)).fetchone()
        return bool(row and row[0])

    def _release_writer_lock(self) -> None:
        with self._lock:
            if not (self._conn.broken or self._conn.closed):
                self._cursor().execute("SELECT pg_advisory_unlock(hashtext(?))", (f"trio-gw:{self._schema}",))

    def _try_named_lock(self, name: str) -> bool:
        """A session advisory lock on ``trio-gw:<schema>:<name>`` (released if the connection goes).

        Session advisory locks are re-entrant in PostgreSQL; this one is taken
        only by a store that does not hold it already, so one unlock frees it.
        """
        if name in self._named_locks:
            return False
        with self._lock:
            row = self._cursor().execute("SELECT pg_try_advisory_lock(hashtext(?))",
                                         (f"trio-gw:{self._schema}:{name}",)).fetchone()
        if row and row[0]:
            self._named_locks.add(name)
            return True
        return False

    def _release_named_lock(self, name: str) -> None:
        if name not in self._named_locks:
            return
        self._named_locks.discard(name)
        with self._lock:
            if not (self._conn.broken or self._conn.closed):
                self._cursor().execute("SELECT pg_advisory_unlock(hashtext(?))", (f"trio-gw:{self._schema}:{name}",))

    def _after_write(self, cur: Cursor, version: int) -> None:
        cur.execute("SELECT pg_notify(?, ?)", (CHANNEL, str(version)))

    def wait_for_change(self, timeout: float) -> int | None:
        """Block until another commit is notified, or ``timeout`` seconds pass.

        The first call starts listening; changes before it are not reported
        (compare :meth:`version` after starting).  Call from a worker thread.

        Args:
            timeout: seconds to wait.

        Returns:
            The notified version, or ``None`` on timeout.

        Raises:
            StoreError: the listening connection failed (it is reopened next time).
        """
        try:
            if self._listener is None or self._listener.broken or self._listener.closed:
                self._listener = psycopg.connect(
                    self._conninfo, autocommit=True, connect_timeout=CONNECT_TIMEOUT_SECONDS
                )
                self._listener.execute(f"LISTEN {CHANNEL}".encode())
            for notify in self._listener.notifies(timeout=timeout, stop_after=1):
                return int(notify.payload)
        except psycopg.Error as exc:
            raise StoreError(f"lost the datastore's change notifications: {exc}") from exc
        return None

    def close(self) -> None:
        """Close both connections."""
        if self._listener is not None:
            self._listener.close()
        super().close()
