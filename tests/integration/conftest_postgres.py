"""Fixtures: private PostgreSQL servers (``trio_gw.testing.postgres``) and a trustme PKI for TLS to them.

Registered for every integration test by ``tests/integration/conftest.py``.
Without PostgreSQL's programs the tests using these skip with the reason, and
fail under ``CI=true``: the cluster datastore must be tested there.

* ``private_postgres`` — one plain server for the session (trust over TCP);
  use a schema or table name of your own.
* ``fresh_postgres`` — a server of the test's own, to stop, kill and restart.
* ``pg_pki`` — a CA, a server certificate for ``127.0.0.1``/``localhost`` and a
  client certificate whose CN is the server's user (for ``hostssl ... cert``).
* ``tls_postgres`` — one server for the session with ``ssl = on``: loopback
  clients must use TLS, and present a client certificate from ``pg_pki``'s CA
  for the ``test`` user.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pytest
import trustme

from trio_gw.testing.postgres import PostgresServer, PostgresUnavailable, ServerTls, find_pg_bin

__all__ = ["PgPki", "fresh_postgres", "pg_pki", "private_postgres", "tls_postgres", "unavailable"]

#: hba lines of ``tls_postgres``: TLS only, and a client certificate (CN = user) for ``test``.
TLS_HBA = (
    "hostssl all test 127.0.0.1/32 cert",
    "hostssl all all 127.0.0.1/32 trust",
    "hostnossl all all 127.0.0.1/32 reject",
)


def unavailable(reason: str) -> NoReturn:
    """Skip the test with the reason, or fail it under ``CI=true``."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"PostgreSQL is needed in CI: {reason}")
    pytest.skip(reason)
    raise AssertionError("unreachable")  # pytest.skip raises


def _bin() -> Path:
    try:
        return find_pg_bin()
    except PostgresUnavailable as exc:
        unavailable(str(exc))


@dataclass(frozen=True)
class PgPki:
    """PEM files of a PKI for TLS between trio-gw and PostgreSQL."""

    ca: trustme.CA
    ca_file: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca_file: Path  # a CA that signed nothing here: the "wrong CA"
    other_client_cert: Path  # a client certificate from the other CA
    other_client_key: Path


@pytest.fixture(scope="session")
def pg_pki(tmp_path_factory: pytest.TempPathFactory) -> PgPki:
    d = tmp_path_factory.mktemp("pg-pki")
    ca, other = trustme.CA(), trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    client = ca.issue_cert("test", common_name="test")
    stranger = other.issue_cert("test", common_name="test")
    ca.cert_pem.write_to_path(str(d / "ca.pem"))
    other.cert_pem.write_to_path(str(d / "other-ca.pem"))
    for name, leaf in (("server", server), ("client", client), ("stranger", stranger)):
        (d / f"{name}.pem").write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
        leaf.private_key_pem.write_to_path(str(d / f"{name}.key"))
        (d / f"{name}.key").chmod(0o600)
    return PgPki(
        ca, d / "ca.pem", d / "server.pem", d / "server.key", d / "client.pem", d / "client.key",
        d / "other-ca.pem", d / "stranger.pem", d / "stranger.key",
    )  # fmt: skip


def _started(server: PostgresServer) -> PostgresServer:
    try:
        return server.start()
    except PostgresUnavailable as exc:
        server.close()
        unavailable(str(exc))


@pytest.fixture(scope="session")
def private_postgres() -> Iterator[PostgresServer]:
    server = _started(PostgresServer(bin_dir=_bin()))
    yield server
    server.close()


@pytest.fixture
def fresh_postgres() -> Iterator[PostgresServer]:
    server = _started(PostgresServer(bin_dir=_bin()))
    yield server
    server.close()


@pytest.fixture(scope="session")
def tls_postgres(pg_pki: PgPki) -> Iterator[PostgresServer]:
    tls = ServerTls(pg_pki.server_cert, pg_pki.server_key, ca_file=pg_pki.ca_file)
    server = _started(PostgresServer(bin_dir=_bin(), tls=tls, hba=TLS_HBA))
    yield server
    server.close()
