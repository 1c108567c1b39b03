"""PostgresStore against the PostgreSQL at 127.0.0.1:5432 (database ``test``).

Without the server these tests skip, except under CI (``CI=true``) where they
fail: the cluster datastore must be tested there.  Each test gets its own schema,
dropped afterwards.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import uuid
from collections.abc import Iterator

import pytest

from trio_gw.model.entities import Certificate, Consumer, Entities, Plugin, Service
from trio_gw.store import SealedKeyError, StoreConflict, StoreError, replace_all
from trio_gw.testing.pki import issue, make_ca

pytestmark = pytest.mark.postgres

try:
    import psycopg
except ImportError:  # the [postgres] extra is not installed
    if os.environ.get("CI") == "true":
        raise
    pytest.skip("psycopg is not installed", allow_module_level=True)

from trio_gw.store.postgres import CHANNEL, PostgresStore

CANDIDATES = [f"host=127.0.0.1 port=5432 dbname=test user={user}" for user in ("postgres", "root")]
SECRET = "cluster secret"


def _server() -> str | None:
    for conninfo in CANDIDATES:
        try:
            psycopg.connect(conninfo, connect_timeout=3).close()
        except psycopg.Error:
            continue
        return conninfo
    return None


@pytest.fixture(scope="module")
def conninfo() -> str:
    found = _server()
    if found is None:
        message = "PostgreSQL is not reachable at 127.0.0.1:5432 (database 'test')"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return found


@pytest.fixture
def schema(conninfo: str) -> Iterator[str]:
    name = f"trio_gw_test_{uuid.uuid4().hex[:12]}"
    yield name
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'.encode())


@pytest.fixture(scope="module")
def entities() -> Entities:
    root = make_ca()
    leaf = issue(root, "api.example")
    return Entities(
        certificates={"c": Certificate(id="c", cert=leaf.chain_pem(), key=leaf.key_pem(), tags=("t",))},
        services={"s": Service(id="s", host="up.example", name="svc", ca_certificates=("x",))},
        consumers={"u": Consumer(id="u", username="alice")},
        plugins={"p": Plugin(id="p", name="cors", config={"origins": ["*"], "max_age": 3600}),
                 # Kong's legacy ssl plugin holds a private key in its config: sealed like a certificate's
                 "ssl": Plugin(id="ssl", name="ssl", config={"cert": leaf.chain_pem(), "key": leaf.key_pem()})},
    )


def test_round_trip_and_restart(conninfo: str, schema: str, entities: Entities) -> None:
    store = PostgresStore.open(conninfo, secret=SECRET, schema=schema)
    assert store.load() == Entities()
    assert store.commit(Entities(), entities) == 1
    store.close()
    again = PostgresStore.open(conninfo, secret=SECRET, schema=schema)
    assert again.load() == entities
    assert again.version() == 1
    again.close()


def test_keys_are_sealed_in_the_database(conninfo: str, schema: str, entities: Entities) -> None:
    store = PostgresStore.open(conninfo, secret=SECRET, schema=schema)
    store.commit(Entities(), entities)
    with psycopg.connect(conninfo) as conn:
        rows = [row for kind in ("certificates", "plugins")
                for row in conn.execute(f'SELECT id, data FROM "{schema}".{kind}'.encode()).fetchall()]
    assert not [(row_id, "PRIVATE KEY") for row_id, data in rows if "PRIVATE KEY" in data]
    assert {row_id for row_id, data in rows if "tgw-sealed:1:" in data} == {"c", "ssl"}
    assert store.load() == entities  # and both open again
    store.close()
    with pytest.raises(SealedKeyError, match="different secret"):
        PostgresStore.open(conninfo, secret="other", schema=schema)
    with pytest.raises(SealedKeyError, match="set private_key_encryption_secret"):
        PostgresStore.open(conninfo, secret=None, schema=schema)


def test_two_nodes_conflict_and_a_failed_commit_leaves_nothing(
    conninfo: str, schema: str, entities: Entities
) -> None:
    a = PostgresStore.open(conninfo, secret=None, schema=schema)
    b = PostgresStore.open(conninfo, secret=None, schema=schema)
    base_b = b.load()
    a.commit(a.load(), entities)
    with pytest.raises(StoreConflict):
        b.commit(base_b, Entities())
    fresh = b.load()
    clash = dataclasses.replace(fresh, services={}, consumers={"x": Consumer(id="x", username="dup"),
                                                              "y": Consumer(id="y", username="dup")})  # fmt: skip
    with pytest.raises(StoreError, match="unique"):
        b.commit(fresh, clash)
    assert b.load() == entities and b.version() == 1
    assert replace_all(b, Entities()) == 2
    assert a.load() == Entities()
    a.close()
    b.close()


def test_a_commit_is_notified_to_other_nodes(conninfo: str, schema: str, entities: Entities) -> None:
    writer = PostgresStore.open(conninfo, secret=None, schema=schema)
    watcher = PostgresStore.open(conninfo, secret=None, schema=schema)
    assert watcher.wait_for_change(0.05) is None  # starts listening
    thread = threading.Timer(0.1, lambda: writer.commit(Entities(), entities))
    thread.start()
    assert watcher.wait_for_change(5.0) == 1  # woken by the notification, not by the timeout (None)
    thread.join()
    assert watcher.load() == entities
    writer.close()
    watcher.close()


def test_the_channel_is_the_documented_one() -> None:
    assert CHANNEL == "trio_gw_changes"


def test_bad_schema_names_and_unreachable_servers(conninfo: str) -> None:
    with pytest.raises(StoreError, match="invalid schema name"):
        PostgresStore.open(conninfo, secret=None, schema='x"; drop')
    with pytest.raises(StoreError, match="cannot connect"):
        PostgresStore.open("host=127.0.0.1 port=1 dbname=test connect_timeout=1", secret=None, schema="x")


def test_a_lost_connection_is_reopened(conninfo: str, schema: str, entities: Entities) -> None:
    store = PostgresStore.open(conninfo, secret=None, schema=schema)
    store.commit(Entities(), entities)

    def terminate() -> None:
        with psycopg.connect(conninfo, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (store._conn.info.backend_pid,))

    terminate()
    assert store.load() == entities  # the read found its connection dead and was made again on a new one
    terminate()
    with pytest.raises(StoreError, match="datastore error"):
        store.commit(entities, Entities())  # a write is never repeated: it might have landed
    assert store.load() == entities  # it did not; the next call reconnects
    store.close()


def test_node_secrets_and_named_locks(conninfo: str, schema: str) -> None:
    """The ACME account and challenge answers as sealed node secrets; one renewer per cluster."""
    first = PostgresStore.open(conninfo, schema=schema, secret=SECRET)
    second = PostgresStore.open(conninfo, schema=schema, secret=SECRET)
    try:
        first.write_secret("acme_account:x", "account")
        first.write_secret("acme_challenge:http-01:T", "key.auth")
        assert second.read_secret("acme_account:x") == "account"
        assert second.read_secrets("acme_challenge:") == {"acme_challenge:http-01:T": "key.auth"}
        second.delete_secret("acme_challenge:http-01:T")
        assert first.read_secrets("acme_challenge:") == {}
        assert first.try_lock("acme") and not first.try_lock("acme")  # not re-entrant in a session either
        assert not second.try_lock("acme")
        first.unlock("acme")
        assert second.try_lock("acme")
    finally:
        first.close()
        second.close()
    third = PostgresStore.open(conninfo, schema=schema, secret=SECRET)
    try:
        assert third.try_lock("acme")  # a closed session released its lock
    finally:
        third.close()
