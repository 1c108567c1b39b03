"""A cluster over mutual TLS to PostgreSQL: every connection of every process (stores and change feeds) is TLS
with the node's client certificate, a write propagates through LISTEN over TLS, and a node with workers whose
client certificate is missing stops at start with one line naming ``pg_ssl_cert``."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from trio_gw.testing.postgres import PostgresServer

from .cluster_tools import add_route, call, status, upstream, wait_for
from .conftest_postgres import PgPki
from .processes import Node, nodes  # noqa: F401  (fixture)

pytestmark = pytest.mark.postgres


def mtls_settings(pg: PostgresServer, pki: PgPki, **more: Any) -> dict[str, Any]:
    return {"database": "postgres", "pg_host": pg.host, "pg_port": pg.port, "pg_user": "test", "pg_database": "test",
            "pg_schema": f"mtls_{uuid.uuid4().hex[:10]}", "pg_ssl": True, "pg_ssl_verify": True,
            "lua_ssl_trusted_certificate": [str(pki.ca_file)], "pg_ssl_cert": str(pki.client_cert),
            "pg_ssl_cert_key": str(pki.client_key), "db_update_frequency": "30s", **more}


def test_two_nodes_over_mutual_tls_share_writes_through_listen(
    tmp_path: Path, nodes: list[Node], tls_postgres: PostgresServer, pg_pki: PgPki
) -> None:
    settings = mtls_settings(tls_postgres, pg_pki)
    a = Node(tmp_path / "a", {**settings, "workers": 2})
    nodes.append(a)
    b = Node(tmp_path / "b", settings)
    nodes.append(b)
    with upstream() as url:
        add_route(a.admin_port, "over-tls", url, "/tls")
        wait_for(lambda: call(b.proxy_port, "GET", "/tls/x")[0] == 200, "the write on node B", timeout=10)
    with psycopg.connect(tls_postgres.conninfo(host=str(tls_postgres.socket_dir)), autocommit=True) as admin:
        rows = admin.execute(b"SELECT s.ssl, s.client_dn, a.query FROM pg_stat_ssl s JOIN pg_stat_activity a "
                             b"USING (pid) WHERE a.usename = 'test' AND a.client_addr IS NOT NULL").fetchall()
    assert rows and all(ssl and "CN=test" in (dn or "") for ssl, dn, _ in rows), rows
    listening = [q for _, _, q in rows if q.startswith("LISTEN")]
    assert len(listening) >= 4  # the feeds of A's supervisor and two workers, and of B
    assert status(a)["database"]["feed"]["listening"] and status(b)["database"]["feed"]["listening"]


def test_a_node_with_workers_and_no_client_certificate_stops_naming_the_setting(
    tmp_path: Path, tls_postgres: PostgresServer, pg_pki: PgPki
) -> None:
    conf = tmp_path / "gw.yaml"
    settings = mtls_settings(tls_postgres, pg_pki, workers=2, prefix=str(tmp_path / "data"),
                             proxy_listen="127.0.0.1:0", admin_listen="off", status_listen="off")
    del settings["pg_ssl_cert"], settings["pg_ssl_cert_key"]
    conf.write_text(yaml.safe_dump(settings))
    done = subprocess.run([sys.executable, "-m", "trio_gw", "run", "-c", str(conf)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("trio-gw:")]
    assert len(lines) == 1 and lines[0].startswith(
        "trio-gw: configuration error: pg_ssl_cert: PostgreSQL requires a client certificate"), done.stderr
