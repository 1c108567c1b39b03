"""The relational schema, as an ordered list of migrations shared by SQLite and PostgreSQL.

``schema_version`` holds one row: how many migrations of :data:`MIGRATIONS` have
run.  Opening a datastore runs the missing ones, in order, inside the same
write transaction that reads the version, so concurrent processes opening one
database migrate it once.  A datastore written by a newer trio-gw (a version
beyond this list) is refused rather than misread.

Rules for new migrations: append, never edit a released one; use SQL that both
SQLite and PostgreSQL accept (``?`` placeholders, translated for PostgreSQL).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Final

from trio_gw.store.base import StoreError
from trio_gw.store.codec import load_row

__all__ = ["MIGRATIONS", "Cursor", "Migration", "migrate", "schema_version"]

#: A DB-API cursor (``sqlite3.Cursor`` or ``psycopg.Cursor``) whose ``execute``
#: takes ``?`` placeholders (see ``store._sql.Session``).
Cursor = Any
Migration = Callable[[Cursor], None]

#: The tables of schema version 1 (later kinds get their own migration).
_V1_KINDS: Final = ("certificates", "ca_certificates", "snis", "services", "routes", "consumers", "plugins")
_UNIQUE_COLUMN_SQL: Final = {
    "snis": "name TEXT NOT NULL UNIQUE",
    "services": "name TEXT UNIQUE",
    "routes": "name TEXT UNIQUE",
    "consumers": "username TEXT UNIQUE, custom_id TEXT UNIQUE",
}


def _create_tables(cur: Cursor) -> None:
    """1: one table per kind (id, JSON data, Kong's unique columns) and ``meta``."""
    cur.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    cur.execute("INSERT INTO meta (key, value) VALUES ('version', '0')")
    for kind in _V1_KINDS:
        extra = _UNIQUE_COLUMN_SQL.get(kind)
        columns = f"id TEXT PRIMARY KEY, data TEXT NOT NULL{', ' + extra if extra else ''}"
        cur.execute(f"CREATE TABLE {kind} ({columns})")


def _plugin_scope(cur: Cursor) -> None:
    """2: plugins are unique per (name, route, service, consumer), as Kong's ``cache_key``.

    Adds the scope columns, fills them from each row's JSON, then indexes them
    (NULL scopes compared as ``''`` so two global plugins of one name clash).
    """
    for column in ("name", "route", "service", "consumer"):
        cur.execute(f"ALTER TABLE plugins ADD COLUMN {column} TEXT")
    rows = cur.execute("SELECT id, data FROM plugins").fetchall()
    for plugin_id, text in rows:
        data = load_row(f"plugins {plugin_id}", text)
        cur.execute(
            "UPDATE plugins SET name = ?, route = ?, service = ?, consumer = ? WHERE id = ?",
            (data.get("name"), data.get("route"), data.get("service"), data.get("consumer"), plugin_id),
        )
    cur.execute(
        "CREATE UNIQUE INDEX plugins_scope ON plugins "
        "(name, COALESCE(route, ''), COALESCE(service, ''), COALESCE(consumer, ''))"
    )


def _credentials(cur: Cursor) -> None:
    """3: consumer credentials (client certificates, API keys, subscriptions), one table for every kind."""
    cur.execute("CREATE TABLE credentials (id TEXT PRIMARY KEY, data TEXT NOT NULL)")


#: Every migration, in order; ``schema_version`` counts how many have run.
MIGRATIONS: Final[Sequence[Migration]] = (_create_tables, _plugin_scope, _credentials)


def schema_version(cur: Cursor) -> int:
    """The number of migrations a database has had (0 for an empty one)."""
    cur.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    row = cur.execute("SELECT version FROM schema_version").fetchone()
    return 0 if row is None else int(row[0])


def migrate(cur: Cursor, migrations: Sequence[Migration] = MIGRATIONS) -> tuple[int, int]:
    """Bring a database to the latest schema; call inside a write transaction.

    Args:
        cur: a cursor in the open write transaction.
        migrations: the list to apply (tests pass a prefix to build old databases).

    Returns:
        The schema version before and after.

    Raises:
        StoreError: the database is newer than this trio-gw.
    """
    before = schema_version(cur)
    if before > len(migrations):
        raise StoreError(
            f"the datastore has schema version {before}, newer than this trio-gw supports "
            f"({len(migrations)}); upgrade trio-gw"
        )
    for step in migrations[before:]:
        step(cur)
    if before == 0:
        cur.execute("INSERT INTO schema_version (version) VALUES (?)", (len(migrations),))
    elif before < len(migrations):
        cur.execute("UPDATE schema_version SET version = ?", (len(migrations),))
    return before, len(migrations)
