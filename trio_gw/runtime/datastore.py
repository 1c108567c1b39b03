"""Opening the configured datastore (``database: sqlite | postgres``); ``off`` has none."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from trio_gw.errors import ConfigError
from trio_gw.settings import Settings
from trio_gw.store import SealedKeyError, SqliteStore, Store, StoreError
from trio_gw.store.sqlite import DEFAULT_FILENAME
from trio_gw.tls.postgres import PgTlsPolicy
from trio_gw.tls.postgres_failures import FailureKind, explain_connect_error


class DatastoreUnreachable(ConfigError):
    """The datastore's server cannot be reached now (the settings may be right): retry, or serve the local cache."""


def sqlite_path(settings: Settings) -> Path:
    return Path(settings.prefix) / DEFAULT_FILENAME


def postgres_conninfo(settings: Settings, *, libpq_version: int | None = None) -> str:
    """A libpq connection string from Kong's ``pg_*`` and ``pg_ssl*`` settings (blocking: writes TLS files).

    The TLS material libpq reads is written under ``<prefix>/pg-tls/``
    (:mod:`trio_gw.runtime.pg_tls`).  The password is never logged.

    Args:
        settings: the node's settings.
        libpq_version: ``PQlibVersion()`` (default: that of the installed psycopg).

    Raises:
        ConfigError: a ``pg_ssl*`` setting or file cannot be used, naming it.
    """
    return conninfo_string(postgres_params(settings, libpq_version=libpq_version)[1])


def postgres_params(settings: Settings, *, libpq_version: int | None = None) -> tuple[PgTlsPolicy, dict[str, str]]:
    """The TLS policy and every libpq parameter of the node's settings (see :func:`postgres_conninfo`)."""
    from trio_gw.runtime.pg_tls import pg_tls_params

    if libpq_version is None:
        import psycopg

        libpq_version = psycopg.pq.version()
    parts = {
        "host": settings.pg_host,
        "port": str(settings.pg_port),
        "dbname": settings.pg_database,
        "user": settings.pg_user,
        "connect_timeout": str(max(1, int(settings.pg_timeout))),
    }
    if settings.pg_password:
        parts["password"] = settings.pg_password
    policy, tls = pg_tls_params(settings.as_mapping(), Path(settings.prefix), libpq_version=libpq_version)
    return policy, {**{k: v for k, v in parts.items() if v}, **tls}


def conninfo_string(params: Mapping[str, str]) -> str:
    """``key=value`` pairs as libpq parses them: values with spaces, quotes or backslashes are quoted."""
    return " ".join(f"{key}={_conninfo_value(value)}" for key, value in params.items())


def _conninfo_value(value: str) -> str:
    if value and not re.search(r"[\s'\\]", value):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def explain_postgres_failure(exc: StoreError, policy: PgTlsPolicy) -> ConfigError:
    """The start-up error for a datastore that could not be opened: one line naming the setting to fix.

    Args:
        exc: what :class:`~trio_gw.store.postgres.PostgresStore` raised (its cause is the driver's error).
        policy: the TLS policy the connection used.

    Returns:
        :class:`DatastoreUnreachable` when the server is merely away, else a
        :class:`ConfigError` naming the setting (``lua_ssl_trusted_certificate``,
        ``pg_ssl_cert``, ``pg_ssl_required``...) or ``database``.
    """
    cause = exc.__cause__
    if cause is None or type(cause).__module__.split(".")[0] != "psycopg":
        return ConfigError(str(exc), path="database")
    failure = explain_connect_error(str(cause), policy)
    if failure.kind is FailureKind.UNREACHABLE:
        return DatastoreUnreachable(failure.message, path=failure.setting)
    if failure.kind is FailureKind.MISCONFIGURED:
        return ConfigError(failure.message, path=failure.setting)
    return ConfigError(str(exc), path="database")


def open_store(settings: Settings) -> Store | None:
    """The datastore of ``settings`` (blocking: call it in a worker thread).

    Raises:
        DatastoreUnreachable: PostgreSQL cannot be reached now (a ConfigError: start-up stops today; a node
            with a local cache of its last good configuration may start from it instead).
        ConfigError: it cannot be opened; the message names the setting to fix (wrong secret, CA, client
            certificate, TLS required by a server that has none...).
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
            policy, params = postgres_params(settings)
            try:
                return PostgresStore.open(conninfo_string(params), secret=secret, schema=settings.pg_schema)
            except SealedKeyError:
                raise
            except StoreError as exc:
                raise explain_postgres_failure(exc, policy) from exc
    except SealedKeyError as exc:
        raise ConfigError(str(exc), path="private_key_encryption_secret") from exc
    except StoreError as exc:
        raise ConfigError(str(exc), path="database") from exc
    return None
