"""TLS and mTLS to PostgreSQL with Kong's pg_ssl* names, against private servers with a trustme PKI.

``tls_postgres`` requires TLS from loopback and, for the user ``test``, a client
certificate from ``pg_pki``'s CA (``hostssl all test 127.0.0.1/32 cert``).
Every refusal is a one-line start-up error naming the setting to fix.
"""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from trio_gw.errors import ConfigError
from trio_gw.model.entities import Entities, Service
from trio_gw.runtime.datastore import DatastoreUnreachable, open_store, postgres_conninfo
from trio_gw.runtime.settings import Settings, load_settings
from trio_gw.testing.postgres import PostgresServer, ServerTls

from .conftest_postgres import PgPki

pytestmark = pytest.mark.postgres


def pg_settings(tmp_path: Path, pg: PostgresServer, **values: Any) -> Settings:
    base: dict[str, Any] = {
        "prefix": str(tmp_path / "gw"), "database": "postgres", "pg_host": pg.host, "pg_port": pg.port,
        "pg_user": pg.user, "pg_database": pg.database, "pg_timeout": 5, "pg_schema": f"tls_{tmp_path.name[-20:]}",
    }  # fmt: skip
    base.update(values)
    return load_settings(None, environ={}, overrides=base)


def mtls(pki: PgPki, **values: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "pg_ssl": True, "pg_ssl_verify": True, "lua_ssl_trusted_certificate": [str(pki.ca_file)],
        "pg_ssl_cert": str(pki.client_cert), "pg_ssl_cert_key": str(pki.client_key),
    }  # fmt: skip
    base.update(values)
    return base


def session_facts(settings: Settings) -> tuple[Any, ...]:
    with psycopg.connect(postgres_conninfo(settings), autocommit=True) as conn:
        row = conn.execute(b"SELECT ssl, version, client_dn FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()
    assert row is not None
    return tuple(row)


def open_error(settings: Settings) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        store = open_store(settings)
        assert store is not None
        store.close()
    return info.value


# -- it works ----------------------------------------------------------------------------


def test_mtls_to_postgres_stores_and_loads(tmp_path: Path, tls_postgres: PostgresServer, pg_pki: PgPki) -> None:
    settings = pg_settings(tmp_path, tls_postgres, **mtls(pg_pki))
    store = open_store(settings)
    assert store is not None
    try:
        store.commit(store.load(), Entities(services={"s": Service(id="s", name="orders", host="up.example")}))
        assert store.load().services["s"].name == "orders"
    finally:
        store.close()
    is_tls, version, client_dn = session_facts(settings)
    assert is_tls is True and version == "TLSv1.2"  # Kong's default pg_ssl_version = tlsv1_2: that version
    assert client_dn.endswith("/CN=test")


@pytest.mark.parametrize(("pg_ssl_version", "negotiated"), [("tlsv1_3", "TLSv1.3"), ("any", "TLSv1.3")])
def test_pg_ssl_version_is_what_is_negotiated(
    tmp_path: Path, tls_postgres: PostgresServer, pg_pki: PgPki, pg_ssl_version: str, negotiated: str
) -> None:
    settings = pg_settings(tmp_path, tls_postgres, **mtls(pg_pki, pg_ssl_version=pg_ssl_version))
    assert session_facts(settings)[1] == negotiated


def test_system_and_a_file_are_combined_and_the_files_are_owner_only(
    tmp_path: Path, tls_postgres: PostgresServer, pg_pki: PgPki
) -> None:
    loose_key = tmp_path / "loose.key"
    loose_key.write_bytes(pg_pki.client_key.read_bytes())
    loose_key.chmod(0o644)  # libpq refuses such a key; trio-gw hands it an owner-only copy
    settings = pg_settings(tmp_path, tls_postgres, **mtls(
        pg_pki, lua_ssl_trusted_certificate=["system", str(pg_pki.ca_file)], pg_ssl_cert_key=str(loose_key)))
    assert session_facts(settings)[0] is True
    written = tmp_path / "gw" / "pg-tls"
    assert stat.S_IMODE(written.stat().st_mode) == 0o700
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in written.iterdir()} == {
        "trusted.pem": 0o600, "client.pem": 0o600, "client.key": 0o600,
    }  # fmt: skip
    bundle = (written / "trusted.pem").read_text()
    assert bundle.count("BEGIN CERTIFICATE") > 10 and pg_pki.ca.cert_pem.bytes().decode().strip() in bundle


def test_prefer_uses_tls_when_offered_and_plain_tcp_otherwise(
    tmp_path: Path, tls_postgres: PostgresServer, private_postgres: PostgresServer, pg_pki: PgPki
) -> None:
    with psycopg.connect(postgres_conninfo(pg_settings(tmp_path, tls_postgres, **mtls(pg_pki))), autocommit=True) as c:
        c.execute(b"DO $$ BEGIN CREATE ROLE other LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$")
    with_tls = pg_settings(tmp_path, tls_postgres, pg_ssl=True, pg_user="other")  # hostssl all all ... trust
    assert session_facts(with_tls)[0] is True
    plain = pg_settings(tmp_path, private_postgres, pg_ssl=True)
    assert session_facts(plain)[0] is False


# -- it refuses, naming the setting ------------------------------------------------------


def test_a_wrong_ca_names_lua_ssl_trusted_certificate(tmp_path: Path, tls_postgres: PostgresServer, pg_pki: PgPki) -> None:
    error = open_error(pg_settings(tmp_path, tls_postgres, **mtls(
        pg_pki, lua_ssl_trusted_certificate=[str(pg_pki.other_ca_file)])))
    assert str(error).startswith("lua_ssl_trusted_certificate: PostgreSQL's certificate is not issued by a CA of")
    assert "certificate verify failed" in str(error) and "\n" not in str(error)


def test_a_missing_client_certificate_names_pg_ssl_cert(tmp_path: Path, tls_postgres: PostgresServer, pg_pki: PgPki) -> None:
    error = open_error(pg_settings(tmp_path, tls_postgres, **mtls(pg_pki, pg_ssl_cert=None, pg_ssl_cert_key=None)))
    assert str(error).startswith("pg_ssl_cert: PostgreSQL requires a client certificate: set pg_ssl_cert and")


def test_a_client_certificate_of_another_ca_names_pg_ssl_cert(
    tmp_path: Path, tls_postgres: PostgresServer, pg_pki: PgPki
) -> None:
    error = open_error(pg_settings(tmp_path, tls_postgres, **mtls(
        pg_pki, pg_ssl_cert=str(pg_pki.other_client_cert), pg_ssl_cert_key=str(pg_pki.other_client_key))))
    assert str(error).startswith("pg_ssl_cert: PostgreSQL does not trust the client certificate")


def test_a_client_certificate_for_another_user_names_pg_ssl_cert(
    tmp_path: Path, tls_postgres: PostgresServer, pg_pki: PgPki
) -> None:
    d = tmp_path / "nobody"
    d.mkdir()
    leaf = pg_pki.ca.issue_cert("nobody", common_name="nobody")
    leaf.cert_chain_pems[0].write_to_path(str(d / "c.pem"))
    leaf.private_key_pem.write_to_path(str(d / "c.key"))
    error = open_error(pg_settings(tmp_path, tls_postgres, **mtls(
        pg_pki, pg_ssl_cert=str(d / "c.pem"), pg_ssl_cert_key=str(d / "c.key"))))
    assert str(error).startswith("pg_ssl_cert: PostgreSQL refused the client certificate for pg_user")


def test_plaintext_against_a_tls_only_server_names_pg_ssl(tmp_path: Path, tls_postgres: PostgresServer) -> None:
    error = open_error(pg_settings(tmp_path, tls_postgres))
    assert str(error).startswith("pg_ssl: PostgreSQL accepts only TLS connections from this host")


@pytest.mark.parametrize("flag", ["pg_ssl_required", "pg_ssl_verify"])
def test_required_tls_against_a_server_without_it_names_the_setting(
    tmp_path: Path, private_postgres: PostgresServer, pg_pki: PgPki, flag: str
) -> None:
    values = {"pg_ssl": True, flag: True, "lua_ssl_trusted_certificate": [str(pg_pki.ca_file)]}
    error = open_error(pg_settings(tmp_path, private_postgres, **values))
    assert str(error).startswith(f"{flag}: PostgreSQL does not offer TLS, and {flag} = on requires it")


def test_an_unusable_key_is_named_before_any_connection(tmp_path: Path, tls_postgres: PostgresServer, pg_pki: PgPki) -> None:
    error = open_error(pg_settings(tmp_path, tls_postgres, **mtls(pg_pki, pg_ssl_cert_key=str(pg_pki.other_client_key))))
    assert str(error) == "pg_ssl_cert_key: does not match the certificate of pg_ssl_cert"
    error = open_error(pg_settings(tmp_path, tls_postgres, **mtls(pg_pki, pg_ssl_cert=str(tmp_path / "none.pem"))))
    assert str(error).startswith("pg_ssl_cert: cannot read")


def test_an_unreachable_server_is_told_apart_from_a_misconfiguration(
    tmp_path: Path, fresh_postgres: PostgresServer, pg_pki: PgPki
) -> None:
    fresh_postgres.stop()
    error = open_error(pg_settings(tmp_path, fresh_postgres))
    assert isinstance(error, DatastoreUnreachable)
    assert str(error).startswith("pg_host: PostgreSQL cannot be reached (libpq: Connection refused)")


@pytest.fixture(scope="module")
def named_postgres(tmp_path_factory: pytest.TempPathFactory, pg_pki: PgPki) -> Any:
    """A TLS 1.2-only server whose certificate names db.example only (not 127.0.0.1)."""
    d = tmp_path_factory.mktemp("named")
    leaf = pg_pki.ca.issue_cert("db.example")
    leaf.cert_chain_pems[0].write_to_path(str(d / "s.pem"))
    leaf.private_key_pem.write_to_path(str(d / "s.key"))
    tls = ServerTls(d / "s.pem", d / "s.key", max_protocol_version="TLSv1.2")
    with PostgresServer(tls=tls, hba=("hostssl all all 127.0.0.1/32 trust",)) as pg:
        yield pg


def test_verification_checks_the_host_name(tmp_path: Path, named_postgres: PostgresServer, pg_pki: PgPki) -> None:
    values = {"pg_ssl": True, "pg_ssl_verify": True, "lua_ssl_trusted_certificate": [str(pg_pki.ca_file)]}
    error = open_error(pg_settings(tmp_path, named_postgres, **values))
    assert str(error).startswith("pg_host: PostgreSQL's certificate does not name pg_host")
    required_only = pg_settings(tmp_path, named_postgres, pg_ssl=True, pg_ssl_required=True)
    assert session_facts(required_only)[0] is True  # without pg_ssl_verify, names are not checked (Kong)


def test_no_common_version_names_pg_ssl_version(tmp_path: Path, named_postgres: PostgresServer) -> None:
    error = open_error(pg_settings(tmp_path, named_postgres, pg_ssl=True, pg_ssl_required=True,
                                   pg_ssl_version="tlsv1_3"))  # fmt: skip
    assert str(error).startswith("pg_ssl_version: PostgreSQL and pg_ssl_version have no TLS version in common")


# -- as a user sees it -------------------------------------------------------------------


def test_start_up_stops_with_one_line_naming_the_setting(tmp_path: Path, tls_postgres: PostgresServer, pg_pki: PgPki) -> None:
    conf = {
        "prefix": str(tmp_path / "gw"), "database": "postgres", "proxy_listen": "127.0.0.1:0",
        "admin_listen": "off", "status_listen": "off", "pg_host": tls_postgres.host, "pg_port": tls_postgres.port,
        "pg_user": "test", "pg_database": "test", **mtls(pg_pki, lua_ssl_trusted_certificate=[str(pg_pki.other_ca_file)]),
    }  # fmt: skip
    path = tmp_path / "gw.yaml"
    path.write_text(yaml.safe_dump(conf))
    result = subprocess.run([sys.executable, "-m", "trio_gw", "run", "-c", str(path)],
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "trio-gw: configuration error: lua_ssl_trusted_certificate: PostgreSQL's certificate is not issued by")


def test_a_wrong_trusted_file_is_named_by_its_index(tmp_path: Path, tls_postgres: PostgresServer, pg_pki: PgPki) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate")
    error = open_error(pg_settings(tmp_path, tls_postgres, **mtls(
        pg_pki, lua_ssl_trusted_certificate=[str(pg_pki.ca_file), str(junk)])))
    assert str(error).startswith("lua_ssl_trusted_certificate[1]: not a PEM CA bundle")
