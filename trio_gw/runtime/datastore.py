"""Opening the configured datastore (``database: sqlite | postgres``); ``off`` has none."""

from __future__ import annotations

from pathlib import Path

from trio_gw.errors import ConfigError
from trio_gw.settings import Settings
from trio_gw.store import SealedKeyError, SqliteStore, Store, StoreError
from trio_gw.store.sqlite import DEFAULT_FILENAME


def sqlite_path(settings: Settings) -> Path:
    return Path(settings.prefix) / DEFAULT_FILENAME


def postgres_conninfo(settings: Settings) -> str:
    """A libpq connection string from Kong's ``pg_*`` settings (the password is never logged)."""
    parts = {
        "host": settings.pg_host,
        "port": str(settings.pg_port),
        "dbname": settings.pg_database,
        "user": settings.pg_user,
        "connect_timeout": str(max(1, int(settings.pg_timeout))),
    }
    if settings.pg_password:
        parts["password"] = settings.pg_password
    return " ".join(f"{k}={v}" for k, v in parts.items() if v)


def open_store(settings: Settings) -> Store | None:
    """The datastore of ``settings`` (blocking: call it in a worker thread).

    Raises:
        ConfigError: it cannot be opened; the message says why (wrong secret, unreachable server...).
    """
    secret = settings.private_key_encryption_secret
    try:
        if settings.database == "sqlite":
            path = sqlite_path(settings)
            path.parent.mkdir(parents=True, exist_ok=True)
            return SqliteStore.open(path, secret=secret)
        if settings.database == "postgres":
            try:
                from trio_gw.store.postgres import PostgresStore
            except ModuleNotFoundError as exc:
                if exc.name is None or not exc.name.startswith("psycopg"):
                    raise
                raise ConfigError(
                    "postgres needs the psycopg driver, which is not installed: pip install 'trio-gw[postgres]'",
                    path="database",
                ) from None
            return PostgresStore.open(postgres_conninfo(settings), secret=secret, schema=settings.pg_schema)
    except SealedKeyError as exc:
        raise ConfigError(str(exc), path="private_key_encryption_secret") from exc
    except StoreError as exc:
        raise ConfigError(str(exc), path="database") from exc
    return None
