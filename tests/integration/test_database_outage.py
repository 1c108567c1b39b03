"""A cluster that outlives its database: PostgreSQL stopped (or killed) under load, and a node started without it.

Every test starts its own PostgreSQL (``fresh_postgres``: ``initdb`` + ``postgres``
in a temporary directory, as the ``postgres`` user under root) and stops it
while two nodes, one with two workers, serve proxied requests in a loop.
Nothing on the request path touches the datastore, so no request may fail;
``/status`` says ``stale`` with the age, the metrics say so too, an Admin write
is answered 503 with the reason, and once PostgreSQL is back the next write is
served by every node.  A node that starts while PostgreSQL is away serves the
last good configuration it cached under ``prefix`` (private keys sealed as in
the datastore), and joins the cluster when PostgreSQL returns.
"""

from __future__ import annotations

import re
import ssl
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import trustme
import yaml

from trio_gw.testing.postgres import PostgresServer

from .cluster_tools import Load, add_route, call, status, upstream, wait_for
from .processes import Node, nodes  # noqa: F401  (fixture)

SECRET = "the cluster's shared secret"


def pg_settings(pg: PostgresServer, **more: Any) -> dict[str, Any]:
    return {"database": "postgres", "pg_host": pg.host, "pg_port": pg.port, "pg_user": pg.user,
            "pg_database": pg.database, "pg_schema": f"outage_{uuid.uuid4().hex[:10]}", "pg_timeout": 2,
            "private_key_encryption_secret": SECRET, **more}


def metric(node: Node, name: str) -> float:
    code, text = call(node.status_port, "GET", "/metrics")
    assert code == 200
    found = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    assert found, f"no {name} in /metrics"
    return float(found.group(1))


@pytest.mark.parametrize("how", ["stop", "kill"])
def test_nodes_serve_through_a_database_outage_and_the_next_write_propagates(
    tmp_path: Path, nodes: list[Node], fresh_postgres: PostgresServer, how: str
) -> None:
    settings = pg_settings(fresh_postgres)
    a = Node(tmp_path / "a", {**settings, "workers": 2})
    nodes.append(a)
    b = Node(tmp_path / "b", settings)
    nodes.append(b)
    with upstream() as url:
        add_route(a.admin_port, "before", url, "/before")
        wait_for(lambda: call(b.proxy_port, "GET", "/before/x")[0] == 200, "the route on B")
        # A's workers install the write from the change feed as B does (within ~100 ms, not at the
        # write's answer): the load starts once every worker of A has it, or its first request may 404.
        version = status(a)["database"]["version"]
        wait_for(lambda: all((w.get("store_version") or -1) >= version for w in status(a)["workers"]["list"]),
                 "the route on every worker of A")
        with Load(a.proxy_port, "/before/a", threads=4) as on_a, Load(b.proxy_port, "/before/b") as on_b:
            on_a.wait_for_more(50)
            (fresh_postgres.stop if how == "stop" else fresh_postgres.kill)()
            for node in (a, b):  # each check runs within its iteration: `node` needs no binding
                database = wait_for(lambda: (d := status(node)["database"])["state"] == "stale" and d, "stale")
                assert database["stale_seconds"] >= 0 and database["error"]
            on_a.wait_for_more(100)
            on_b.wait_for_more(50)
            stale = status(a)
            assert stale["database"]["stale_seconds"] > 0 and stale["workers"]["ready"] == 2
            assert all(w["datastore"] == "stale" for w in stale["workers"]["list"])
            assert metric(a, "trio_gw_datastore_reachable") == 0 and metric(a, "trio_gw_datastore_stale_seconds") > 0
            code, body = call(a.admin_port, "POST", "/services", {"name": "during", "url": url})
            assert code == 503 and body["name"] == "datastore" and "unavailable" in body["message"]

            fresh_postgres.start()  # the same port: the same server to its clients
            for node in (a, b):
                wait_for(lambda: status(node)["database"]["state"] == "ok", "reachable again", timeout=60)
            add_route(a.admin_port, "after", url, "/after")
            for node in (a, b):
                wait_for(lambda: call(node.proxy_port, "GET", "/after/x")[0] == 200, "the write after")
            on_a.wait_for_more(20)
        print(f"\nPostgreSQL {how}: under load before, during and after the outage, node A (2 workers) and node B "
              f"served {on_a.ok} and {on_b.ok} proxied requests, failed {len(on_a.failures)} and "
              f"{len(on_b.failures)}; A's /status said stale for {stale['database']['stale_seconds']:.1f} s")
        assert on_a.failures == [] and on_b.failures == [], (on_a.failures[:5], on_b.failures[:5])  # not one failed
        assert metric(a, "trio_gw_datastore_reachable") == 1
        assert all(w["datastore"] == "ok" for w in status(a)["workers"]["list"])


def test_a_node_that_starts_without_its_database_serves_the_cached_configuration(
    tmp_path: Path, nodes: list[Node], fresh_postgres: PostgresServer
) -> None:
    ca = trustme.CA()
    leaf = ca.issue_cert("api.example")
    settings = pg_settings(fresh_postgres, proxy_listen="127.0.0.1:0, 127.0.0.1:0 ssl", workers=2)
    first = Node(tmp_path / "a", settings)
    nodes.append(first)
    with upstream() as url:
        add_route(first.admin_port, "cached", url, "/cached")
        code, body = call(first.admin_port, "POST", "/certificates", {
            "cert": leaf.cert_chain_pems[0].bytes().decode(), "key": leaf.private_key_pem.bytes().decode(),
            "snis": ["api.example"]})
        assert code == 201, body
        cache_file = first.prefix / "last-good-config"
        version = status(first)["database"]["version"]
        cache = wait_for(lambda: cache_file.exists() and f'"version":{version},' in (text := cache_file.read_text())
                         and text, "the configuration cached")
        assert "PRIVATE KEY" not in cache and "tgw-sealed" in cache  # the key stays sealed on disk
        assert first.stop() == 0

        fresh_postgres.stop()
        again = Node(tmp_path / "a", settings)  # same prefix, PostgreSQL unreachable
        nodes.append(again)
        database = status(again)["database"]
        assert database["state"] == "stale" and database["serving_cache"] is True and database["stale_seconds"] >= 0
        assert call(again.proxy_port, "GET", "/cached/x")[0] == 200
        assert _served_subject(again, ca) == "api.example"  # the sealed key opened with the secret
        code, body = call(again.admin_port, "POST", "/services", {"name": "refused", "url": url})
        assert code == 503 and body["name"] == "datastore"
        assert "serving the configuration cached" in again.log()

        fresh_postgres.start()
        wait_for(lambda: status(again)["database"]["state"] == "ok", "joined the cluster", timeout=60)
        assert status(again)["database"]["serving_cache"] is False
        add_route(again.admin_port, "later", url, "/later")
        wait_for(lambda: call(again.proxy_port, "GET", "/later/x")[0] == 200, "the next write")


def _served_subject(node: Node, ca: trustme.CA) -> str:
    import json
    import socket

    ready = json.loads((node.prefix / "trio-gw.ready.json").read_text())
    port = next(li["port"] for li in ready["listeners"]["proxy"] if li["ssl"])
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="api.example") as tls:
            cert = tls.getpeercert()
    assert cert is not None  # a verified handshake: always a certificate
    return str(cert["subjectAltName"][0][1])  # the certificate uploaded, verified against its CA


def test_without_a_cache_an_unreachable_database_still_stops_start_up(
    tmp_path: Path, fresh_postgres: PostgresServer
) -> None:
    fresh_postgres.stop()
    conf = tmp_path / "gw.yaml"
    conf.write_text(yaml.safe_dump({**pg_settings(fresh_postgres), "prefix": str(tmp_path / "data"),
                                    "proxy_listen": "127.0.0.1:0", "admin_listen": "off", "status_listen": "off"}))
    done = subprocess.run([sys.executable, "-m", "trio_gw", "run", "-c", str(conf)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.startswith("trio-gw: configuration error: pg_host: PostgreSQL cannot be reached")
    assert "there is no cached configuration under prefix" in done.stderr


def test_the_first_read_after_a_database_restart_succeeds(fresh_postgres: PostgresServer) -> None:
    from trio_gw.store.postgres import PostgresStore

    store = PostgresStore.open(fresh_postgres.conninfo(), secret=None, schema=f"reread_{uuid.uuid4().hex[:8]}")
    try:
        assert store.version() == 0
        fresh_postgres.stop()
        fresh_postgres.start()
        # The open connection died with the server; the read finds out and is made again on a new one.
        assert store.version() == 0
        assert store.load_versioned()[1] == 0 and store.read_meta("ticket_keys") is None
    finally:
        store.close()
