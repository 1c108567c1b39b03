"""The private PostgreSQL of ``trio_gw.testing.postgres``: start, stop, kill, restart, TLS, and always gone after.

These tests need PostgreSQL's programs; they skip without them, and fail under ``CI=true``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from trio_gw.testing.postgres import PostgresServer, PostgresUnavailable, find_pg_bin, reap_orphans

from .conftest_postgres import PgPki

pytestmark = pytest.mark.postgres


def _query(conninfo: str, sql: str) -> list[tuple[object, ...]]:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        cur = conn.execute(sql.encode())
        return cur.fetchall() if cur.description else []


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return True
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"


# -- finding the programs ----------------------------------------------------------------


def test_the_programs_are_found_together(private_postgres: PostgresServer) -> None:
    found = find_pg_bin()
    assert all((found / tool).exists() for tool in ("initdb", "pg_ctl", "postgres", "createdb"))


def test_pg_bin_wins_and_a_directory_without_the_programs_is_passed_over(tmp_path: Path) -> None:
    real = find_pg_bin()
    assert find_pg_bin({"PG_BIN": str(real), "PATH": ""}, debian_root=str(tmp_path)) == real
    (tmp_path / "99" / "bin").mkdir(parents=True)  # a newer major without the programs
    (tmp_path / "15").symlink_to(real.parent)
    assert find_pg_bin({"PATH": ""}, debian_root=str(tmp_path)) == tmp_path / "15" / "bin"


def test_no_programs_anywhere_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(PostgresUnavailable, match="initdb, pg_ctl, postgres, createdb were not found together"):
        find_pg_bin({"PG_BIN": str(tmp_path), "PATH": str(tmp_path)}, debian_root=str(tmp_path))


# -- a plain server ----------------------------------------------------------------------


def test_a_private_server_serves_the_test_database_on_loopback(private_postgres: PostgresServer) -> None:
    pg = private_postgres
    assert pg.host == "127.0.0.1" and pg.port > 0
    rows = _query(pg.conninfo(), "SELECT current_user, current_database(), current_setting('ssl'), "
                                 "current_setting('listen_addresses'), inet_server_port()")  # fmt: skip
    assert rows == [("test", "test", "off", "127.0.0.1", pg.port)]
    assert (pg.data_dir / "PG_VERSION").exists()
    if os.geteuid() == 0:  # CI: the server runs as the postgres OS user, never as root
        assert pg.data_dir.stat().st_uid == pg.directory.stat().st_uid != 0


def test_stop_refuses_connections_and_start_serves_again_on_the_same_port(fresh_postgres: PostgresServer) -> None:
    pg = fresh_postgres
    port = pg.port
    _query(pg.conninfo(), "CREATE TABLE kept (x int); INSERT INTO kept VALUES (1)")
    pg.stop()
    assert not pg.is_running()
    with pytest.raises(psycopg.OperationalError, match="refused"):
        psycopg.connect(pg.conninfo(connect_timeout=2))
    pg.start()
    assert pg.port == port
    assert _query(pg.conninfo(), "SELECT x FROM kept") == [(1,)]


def test_kill_drops_connections_and_a_restart_recovers_what_was_committed(fresh_postgres: PostgresServer) -> None:
    pg = fresh_postgres
    port = pg.port
    _query(pg.conninfo(), "CREATE TABLE kept (x int); INSERT INTO kept VALUES (1)")
    open_tx = psycopg.connect(pg.conninfo())
    open_tx.execute(b"INSERT INTO kept VALUES (2)")  # never committed
    row = open_tx.execute(b"SELECT pg_backend_pid()").fetchone()
    assert row is not None
    backend = int(row[0])
    postmaster = pg.postmaster_pid()
    assert postmaster is not None
    # As on a busy machine, the backend does not run between the kill and the query below. It is in a
    # session of its own (PostgreSQL's children call setsid), so killing the postmaster's process group
    # missed it, and a backend that ran again before it noticed its postmaster's death answered the query.
    os.kill(backend, signal.SIGSTOP)
    try:
        pg.kill()
        assert _gone(postmaster) and _gone(backend) and not pg.is_running()
    finally:
        with contextlib.suppress(OSError):
            os.kill(backend, signal.SIGKILL)
    with pytest.raises(psycopg.OperationalError):
        open_tx.execute(b"SELECT 1")
    open_tx.close()
    pg.start()
    assert pg.port == port and pg.postmaster_pid() != postmaster
    assert _query(pg.conninfo(), "SELECT x FROM kept") == [(1,)]


def test_close_removes_everything_and_is_idempotent() -> None:
    try:
        pg = PostgresServer().start()
    except PostgresUnavailable as exc:
        pytest.skip(str(exc)) if os.environ.get("CI") != "true" else pytest.fail(str(exc))
    directory, postmaster = pg.directory, pg.postmaster_pid()
    assert postmaster is not None
    pg.close()
    pg.close()
    assert not directory.exists() and _gone(postmaster)


def test_the_context_manager_closes_on_an_error() -> None:
    seen: list[Path] = []
    with pytest.raises(ZeroDivisionError), PostgresServer() as pg:
        seen.append(pg.directory)
        1 / 0  # noqa: B018
    assert seen and not seen[0].exists()


def test_a_bad_setting_fails_start_with_the_server_log() -> None:
    with pytest.raises(PostgresUnavailable, match="did not become ready(?s:.*)no_such_setting"):
        with PostgresServer(settings={"no_such_setting": "1"}):
            pass


# -- always stops ------------------------------------------------------------------------

_CHILD = """
import sys, time
from trio_gw.testing.postgres import PostgresServer
pg = PostgresServer().start()
print(pg.directory, pg.postmaster_pid(), flush=True)
if sys.argv[1] == "wait":
    time.sleep(120)
"""


def _child(mode: str) -> tuple[subprocess.Popen[str], Path, int]:
    proc = subprocess.Popen([sys.executable, "-c", _CHILD, mode], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    directory, pid = proc.stdout.readline().split()
    return proc, Path(directory), int(pid)


def test_a_test_process_that_exits_without_closing_stops_its_server_at_exit(private_postgres: PostgresServer) -> None:
    proc, directory, postmaster = _child("exit")
    assert proc.wait(timeout=60) == 0
    assert not directory.exists() and _gone(postmaster)


def test_the_server_of_a_killed_test_process_is_reaped_by_the_next_one(private_postgres: PostgresServer) -> None:
    proc, directory, postmaster = _child("wait")
    proc.send_signal(signal.SIGKILL)  # no atexit, no finally: the server is orphaned
    proc.wait(timeout=10)
    assert directory.exists() and not _gone(postmaster)
    assert directory in reap_orphans()
    assert not directory.exists() and _gone(postmaster)


def test_reaping_leaves_the_servers_of_live_processes_alone(private_postgres: PostgresServer) -> None:
    assert private_postgres.directory not in reap_orphans()
    assert private_postgres.is_running()


# -- TLS ---------------------------------------------------------------------------------


def _tls(pg: PostgresServer, pki: PgPki, **params: object) -> str:
    values: dict[str, object] = {"sslmode": "verify-full", "sslrootcert": pki.ca_file, "sslcertmode": "allow"}
    values.update(params)
    return pg.conninfo(**values)


def test_tls_server_accepts_a_verified_client_certificate(tls_postgres: PostgresServer, pg_pki: PgPki) -> None:
    info = _tls(tls_postgres, pg_pki, sslcert=pg_pki.client_cert, sslkey=pg_pki.client_key)
    rows = _query(info, "SELECT ssl, client_dn FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
    assert rows[0][0] is True and str(rows[0][1]).endswith("/CN=test")


def test_tls_server_refuses_a_client_without_certificate(tls_postgres: PostgresServer, pg_pki: PgPki) -> None:
    with pytest.raises(psycopg.OperationalError, match="requires a valid client certificate"):
        psycopg.connect(_tls(tls_postgres, pg_pki, sslcertmode="disable"))


def test_tls_server_refuses_plaintext(tls_postgres: PostgresServer) -> None:
    with pytest.raises(psycopg.OperationalError, match="no encryption"):
        psycopg.connect(tls_postgres.conninfo(sslmode="disable"))


def test_tls_server_is_not_trusted_under_another_ca(tls_postgres: PostgresServer, pg_pki: PgPki) -> None:
    with pytest.raises(psycopg.OperationalError, match="certificate verify failed"):
        psycopg.connect(_tls(tls_postgres, pg_pki, sslrootcert=pg_pki.other_ca_file))
