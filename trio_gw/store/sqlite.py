"""The embedded datastore: one SQLite file (``database = sqlite``, the default).

The file lives under the node's ``prefix`` (``trio-gw.db``).  It runs in WAL
mode with ``synchronous=NORMAL``: readers (every worker process polling
:meth:`SqliteStore.version`) never block the writer, and a committed write
survives a process crash (a power loss may lose the last commits, never
corrupt the file).  ``secure_delete`` is on and the WAL is truncated after keys
are (re)sealed, so no superseded plaintext key stays in the file.  Writes take SQLite's write lock up front
(``BEGIN IMMEDIATE``), so the version check and the write are atomic across
processes.  The file is created readable by its owner only.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
from typing import Any, ClassVar, Final

from trio_gw.store._sql import SqlStore
from trio_gw.store.base import StoreError
from trio_gw.store.migrations import Cursor, migrate

__all__ = ["DEFAULT_FILENAME", "SqliteStore"]

#: The datastore's file name under ``prefix``.
DEFAULT_FILENAME: Final = "trio-gw.db"
#: How long a writer waits for another process's write lock (sqlite3's default is 5 s).
BUSY_TIMEOUT_SECONDS: Final = 10.0


class SqliteStore(SqlStore):
    """A :class:`~trio_gw.store.base.Store` in one SQLite file."""

    db_errors: ClassVar[tuple[type[BaseException], ...]] = (sqlite3.Error,)

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        secret: str | None,
    ) -> SqliteStore:
        """Open (creating and migrating if needed) the datastore file.

        Args:
            path: the database file, e.g. ``<prefix>/trio-gw.db``.
            secret: ``private_key_encryption_secret``, or ``None``.

        Returns:
            The open store.

        Raises:
            StoreError: the file cannot be opened, is not a trio-gw datastore,
                or is newer than this trio-gw.
            SealedKeyError: the keys are sealed and ``secret`` is missing or wrong.
        """
        _create_private(os.fspath(path))
        try:
            conn = sqlite3.connect(
                os.fspath(path), isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_SECONDS
            )
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA secure_delete=ON")  # freed pages are zeroed: no old key bytes linger
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the datastore {os.fspath(path)!r}: {exc}") from exc
        if str(mode).lower() != "wal":
            conn.close()
            raise StoreError(f"the datastore {os.fspath(path)!r} cannot use WAL mode (got {mode!r})")
        store = cls(conn)
        store._writer_path = os.path.realpath(os.fspath(path)) + ".writer"
        try:
            with store._transaction(write=True) as cur:
                migrate(cur)
            store._open_seal(secret)
        except BaseException:
            store.close()
            raise
        return store

    _writer_path = ""
    _writer_fd: int | None = None

    def __init__(self, connection: Any) -> None:
        super().__init__(connection)
        self._named_fds: dict[str, int] = {}

    def _cursor(self) -> Cursor:
        return self._conn.cursor()

    def _try_writer_lock(self) -> bool:
        """An advisory ``flock`` on ``<file>.writer`` beside the real file (processes of one host)."""
        if self._writer_fd is None:
            try:
                self._writer_fd = os.open(self._writer_path, os.O_CREAT | os.O_RDWR, 0o600)
            except OSError as exc:
                raise StoreError(f"cannot open the datastore's writer lock {self._writer_path!r}: {exc}") from exc
        try:
            fcntl.flock(self._writer_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def _release_writer_lock(self) -> None:
        if self._writer_fd is not None:
            fcntl.flock(self._writer_fd, fcntl.LOCK_UN)

    def _try_named_lock(self, name: str) -> bool:
        """An advisory ``flock`` on ``<file>.<name>.lock`` (processes of one host; one open file per lock)."""
        if name in self._named_fds:
            return False  # not re-entrant: held by this store already
        path = f"{self._writer_path.removesuffix('.writer')}.{name}.lock"
        try:
            fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
        except OSError as exc:
            raise StoreError(f"cannot open the datastore's lock {path!r}: {exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._named_fds[name] = fd
        return True

    def _release_named_lock(self, name: str) -> None:
        fd = self._named_fds.pop(name, None)
        if fd is not None:
            os.close(fd)  # closing the descriptor releases the flock

    def close(self) -> None:
        """Close the connection and the lock files."""
        if self._writer_fd is not None:
            os.close(self._writer_fd)
            self._writer_fd = None
        for name in list(self._named_fds):
            self._release_named_lock(name)
        super().close()

    def _begin_read(self, cur: Cursor) -> None:
        cur.execute("BEGIN")

    def _begin_write(self, cur: Cursor) -> None:
        cur.execute("BEGIN IMMEDIATE")

    def _scrub(self) -> None:
        """Checkpoint and truncate the WAL so superseded pages (old key bytes) leave the disk.

        Best effort: a reader in another process can keep the checkpoint from
        completing; the WAL is then truncated by a later checkpoint.
        """
        with self._lock:
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()

    def pragma(self, name: str) -> Any:
        """One PRAGMA's value (for tests and ``trio-gw status``)."""
        with self._lock:
            return self._conn.execute(f"PRAGMA {name}").fetchone()[0]


def _create_private(path: str) -> None:
    """Create the file mode 0600 if it is missing (SQLite gives its WAL files the same mode)."""
    try:
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    except OSError as exc:
        raise StoreError(f"cannot create the datastore {path!r}: {exc}") from exc
