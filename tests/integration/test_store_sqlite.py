"""SqliteStore on real files: round trip, restart, atomicity, conflicts, migrations, sealing."""

from __future__ import annotations

import dataclasses
import os
import sqlite3
import stat
import threading
from pathlib import Path

import pytest

from trio_gw.model.declarative import dump_declarative, parse_declarative
from trio_gw.model.entities import (
    SNI,
    CACertificate,
    Certificate,
    Consumer,
    Entities,
    Plugin,
    Route,
    Service,
)
from trio_gw.store import (
    SealedKeyError,
    SqliteStore,
    StoreConflict,
    StoreError,
    export_entities,
    replace_all,
)
from trio_gw.store.migrations import MIGRATIONS, migrate
from trio_gw.testing.pki import Issued, issue, make_ca, rsa_and_ec_leaves

SECRET = "s3cret passphrase for tests"
WRONG = "private_key_encryption_secret does not open this datastore (it was sealed with a different secret)"
NOW = 1_750_000_000


@pytest.fixture(scope="module")
def pki() -> tuple[Issued, Issued, Issued, Issued]:
    root = make_ca()
    rsa_leaf, ec_leaf = rsa_and_ec_leaves(root, "api.example")
    return root, rsa_leaf, ec_leaf, issue(root, "other.example")


@pytest.fixture(scope="module")
def entities(pki: tuple[Issued, Issued, Issued, Issued]) -> Entities:
    root, rsa_leaf, ec_leaf, other = pki
    certs = {
        "c1": Certificate(id="c1", cert=rsa_leaf.chain_pem(), key=rsa_leaf.key_pem(),
                          cert_alt=ec_leaf.chain_pem(), key_alt=ec_leaf.key_pem(), tags=("edge",)),
        "c2": Certificate(id="c2", cert=other.chain_pem(), key=other.key_pem(fmt="traditional")),
    }  # fmt: skip
    return Entities(
        certificates=certs,
        ca_certificates={"ca": CACertificate(id="ca", cert=root.cert_pem(), cert_digest="00" * 32)},
        snis={"s1": SNI(id="s1", name="api.example", certificate="c1")},
        services={
            "sv": Service(id="sv", host="up.example", name="svc", protocol="https", client_certificate="c2",
                          ca_certificates=("ca",), tls_verify=True),
        },
        routes={"r": Route(id="r", name="rt", service="sv", paths=("/a",), headers={"x-a": ("1", "2")})},
        consumers={"u": Consumer(id="u", username="alice", custom_id="A")},
        plugins={"p": Plugin(id="p", name="mtls-auth", route="r", config={"ca_certificates": ["ca"]}),
                 # Kong's legacy ssl plugin holds a private key in its config: sealed like a certificate's
                 "ssl": Plugin(id="ssl", name="ssl", route="r", config={"cert": other.chain_pem(),
                                                                         "key": other.key_pem(), "only_https": True})},
    )


def open_store(path: Path, secret: str | None = None) -> SqliteStore:
    return SqliteStore.open(path / "trio-gw.db", secret=secret)


def raw_bytes(path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in path.iterdir() if p.name.startswith("trio-gw.db"))


def test_round_trip_and_restart(tmp_path: Path, entities: Entities) -> None:
    store = open_store(tmp_path)
    assert store.load() == Entities() and store.version() == 0
    assert store.commit(Entities(), entities) == 1
    assert store.load() == entities
    store.close()
    again = open_store(tmp_path)
    loaded = again.load()
    assert loaded == entities
    assert isinstance(loaded.routes["r"].paths, tuple)
    assert again.version() == 1
    again.close()


def test_updates_deletes_and_version(tmp_path: Path, entities: Entities) -> None:
    store = open_store(tmp_path)
    store.commit(Entities(), entities)
    old = store.load()
    services = {"sv": dataclasses.replace(old.services["sv"], port=8443)}
    new = dataclasses.replace(old, services=services, consumers={})
    assert store.commit(old, new) == 2
    assert store.load() == new
    assert store.commit(new, new) == 2  # nothing to write: no bump


def test_unique_names_can_be_swapped_in_one_commit(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    first = Entities(services={"a": Service(id="a", host="h", name="one"), "b": Service(id="b", host="h", name="two")})
    store.commit(Entities(), first)
    swapped = Entities(services={"a": Service(id="a", host="h", name="two"), "b": Service(id="b", host="h", name="one")})
    store.commit(first, swapped)
    assert store.load() == swapped


@pytest.mark.parametrize(
    "duplicate",
    [
        {"snis": {"s1": SNI(id="s1", name="x.example", certificate="c"), "s2": SNI(id="s2", name="x.example", certificate="c")}},
        {"consumers": {"a": Consumer(id="a", custom_id="same"), "b": Consumer(id="b", custom_id="same")}},
        {"plugins": {"a": Plugin(id="a", name="cors"), "b": Plugin(id="b", name="cors")}},
    ],
)  # fmt: skip
def test_uniqueness_is_enforced_and_a_failed_commit_leaves_nothing(
    tmp_path: Path, entities: Entities, duplicate: dict[str, object]
) -> None:
    store = open_store(tmp_path)
    store.commit(Entities(), entities)
    before = store.load()
    # every other kind changes too, and plugins (written last) carry the clash or follow it
    bad = dataclasses.replace(before, services={}, routes={}, certificates={}, **duplicate)  # type: ignore[arg-type]
    with pytest.raises(StoreError, match="UNIQUE"):
        store.commit(before, bad)
    assert store.load() == entities
    assert store.version() == 1


def test_a_commit_failing_half_way_leaves_nothing(
    tmp_path: Path, entities: Entities, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_store(tmp_path)

    def fail(cur: object, version: int) -> None:
        raise RuntimeError("power cut")

    monkeypatch.setattr(store, "_after_write", fail)
    with pytest.raises(RuntimeError, match="power cut"):
        store.commit(Entities(), entities)
    monkeypatch.undo()
    assert store.load() == Entities()
    assert store.version() == 0
    assert store.commit(Entities(), entities) == 1  # the store is still usable


def test_two_stores_on_one_file_conflict(tmp_path: Path, entities: Entities) -> None:
    a, b = open_store(tmp_path), open_store(tmp_path)
    base_a, base_b = a.load(), b.load()
    a.commit(base_a, entities)
    assert b.version() == 1  # a watcher polling the counter sees the write
    with pytest.raises(StoreConflict):
        b.commit(base_b, Entities(consumers={"z": Consumer(id="z", username="zed")}))
    fresh = b.load()
    assert fresh == entities
    b.commit(fresh, dataclasses.replace(fresh, consumers={}))
    assert a.load().consumers == {}


def test_concurrent_writers_serialise(tmp_path: Path) -> None:
    stores = [open_store(tmp_path), open_store(tmp_path)]
    errors: list[BaseException] = []

    def add(store: SqliteStore, prefix: str) -> None:
        try:
            for n in range(15):
                for _ in range(50):  # retry on conflict, as the Admin API does
                    old = store.load()
                    consumers = {**old.consumers, f"{prefix}{n}": Consumer(id=f"{prefix}{n}")}
                    try:
                        store.commit(old, dataclasses.replace(old, consumers=consumers))
                        break
                    except StoreConflict:
                        continue
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=add, args=(store, p)) for store, p in zip(stores, "ab")]
    threads.append(threading.Thread(target=add, args=(stores[0], "c")))  # one store shared by two threads
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(stores[1].load().consumers) == 45
    assert stores[1].version() == 45


def test_an_unknown_old_is_compared_by_content(tmp_path: Path, entities: Entities) -> None:
    store = open_store(tmp_path)
    store.commit(Entities(), entities)
    with pytest.raises(StoreConflict):
        store.commit(Entities(), Entities())
    copy = dataclasses.replace(entities)  # equal content, not handed out by this store
    assert store.commit(copy, Entities()) == 2


def test_wal_mode_and_private_file(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    assert store.pragma("journal_mode") == "wal"
    assert store.pragma("synchronous") == 1  # NORMAL
    assert stat.S_IMODE(os.stat(tmp_path / "trio-gw.db").st_mode) == 0o600


def test_an_old_database_is_migrated(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "trio-gw.db", isolation_level=None)
    migrate(conn.cursor(), MIGRATIONS[:1])
    conn.execute("INSERT INTO plugins (id, data) VALUES ('p', '{\"name\": \"cors\"}')")
    conn.close()
    store = open_store(tmp_path)
    assert store.load().plugins == {"p": Plugin(id="p", name="cors")}
    with pytest.raises(StoreError, match="UNIQUE"):  # the scope index added by migration 2 is there
        store.commit(store.load(), Entities(plugins={"p": Plugin(id="p", name="cors"), "q": Plugin(id="q", name="cors")}))
    store.close()
    conn = sqlite3.connect(tmp_path / "trio-gw.db")
    assert conn.execute("SELECT version FROM schema_version").fetchall() == [(len(MIGRATIONS),)]
    assert conn.execute("SELECT name FROM plugins").fetchall() == [("cors",)]


def test_a_newer_database_is_refused(tmp_path: Path) -> None:
    open_store(tmp_path).close()
    conn = sqlite3.connect(tmp_path / "trio-gw.db", isolation_level=None)
    conn.execute("UPDATE schema_version SET version = 99")
    conn.close()
    with pytest.raises(StoreError, match="schema version 99, newer"):
        open_store(tmp_path)


def test_a_corrupt_row_is_reported(tmp_path: Path) -> None:
    open_store(tmp_path).close()
    conn = sqlite3.connect(tmp_path / "trio-gw.db", isolation_level=None)
    conn.execute("INSERT INTO services (id, data) VALUES ('x', '{\"host\": 5}')")
    conn.close()
    with pytest.raises(StoreError, match="services x: host: expected str"):
        open_store(tmp_path).load()


def test_not_a_database(tmp_path: Path) -> None:
    (tmp_path / "trio-gw.db").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError):
        open_store(tmp_path)
    with pytest.raises(StoreError, match="cannot create"):
        SqliteStore.open(tmp_path / "missing" / "x.db", secret=None)


def test_a_closed_store_refuses_work(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    store.close()
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.load()


def test_declarative_round_trip(tmp_path: Path, pki: tuple[Issued, Issued, Issued, Issued]) -> None:
    root, rsa_leaf, ec_leaf, _ = pki
    document = {
        "_format_version": "3.0",
        "certificates": [{"cert": rsa_leaf.chain_pem(), "key": rsa_leaf.key_pem(), "cert_alt": ec_leaf.chain_pem(),
                          "key_alt": ec_leaf.key_pem(), "snis": [{"name": "api.example"}]}],
        "ca_certificates": [{"cert": root.cert_pem()}],
        "services": [{"name": "svc", "url": "https://up.example:8443/v1",
                      "routes": [{"name": "rt", "paths": ["/a"], "headers": {"x-a": ["1"]}}]}],
        "consumers": [{"username": "alice"}],
        "plugins": [{"name": "cors", "config": {"origins": ["*"]}}],
    }  # fmt: skip
    parsed = parse_declarative(document, now=NOW)
    store = open_store(tmp_path, SECRET)
    replace_all(store, parsed)
    assert export_entities(store) == parsed
    store.close()
    again = open_store(tmp_path, SECRET)
    assert dump_declarative(again.load(), include_keys=True) == dump_declarative(parsed, include_keys=True)


# -- private keys sealed at rest ------------------------------------------------------------


def key_material(entities: Entities) -> list[bytes]:
    """Every base64 line of every private key, and the PEM labels."""
    lines = [b"PRIVATE KEY"]
    keys = [pem for cert in entities.certificates.values() for pem in (cert.key, cert.key_alt)]
    keys += [p.config.get("key") for p in entities.plugins.values()]
    for pem in keys:
        lines += [line.encode() for line in (pem or "").splitlines() if len(line) >= 40]
    return lines


def assert_no_plain_keys(path: Path, entities: Entities) -> None:
    data = raw_bytes(path)
    assert data, "nothing on disk?"
    for needle in key_material(entities):
        assert needle not in data


def test_sealed_file_holds_no_plaintext_key(tmp_path: Path, entities: Entities) -> None:
    store = open_store(tmp_path, SECRET)
    assert store.sealed
    store.commit(Entities(), entities)
    assert_no_plain_keys(tmp_path, entities)  # while open: the WAL too
    store.close()
    assert_no_plain_keys(tmp_path, entities)
    assert b"BEGIN CERTIFICATE" in raw_bytes(tmp_path)  # the test would see plaintext
    again = open_store(tmp_path, SECRET)
    assert again.load() == entities


def test_the_unsealed_file_does_show_keys(tmp_path: Path, entities: Entities) -> None:
    store = open_store(tmp_path)
    store.commit(Entities(), entities)
    store.close()
    assert b"PRIVATE KEY" in raw_bytes(tmp_path)  # so the negative checks above mean something


def test_a_wrong_or_missing_secret_is_reported(tmp_path: Path, entities: Entities) -> None:
    store = open_store(tmp_path, SECRET)
    store.commit(Entities(), entities)
    store.close()
    with pytest.raises(SealedKeyError) as info:
        open_store(tmp_path, "not the secret")
    assert str(info.value) == WRONG
    with pytest.raises(SealedKeyError, match="set private_key_encryption_secret"):
        open_store(tmp_path)


def test_swapped_blobs_do_not_open(tmp_path: Path, entities: Entities) -> None:
    store = open_store(tmp_path, SECRET)
    store.commit(Entities(), entities)
    conn = sqlite3.connect(tmp_path / "trio-gw.db", isolation_level=None)
    conn.execute(
        "UPDATE certificates SET data = json_set(data, '$.key', "
        "(SELECT json_extract(data, '$.key') FROM certificates WHERE id = 'c2')) WHERE id = 'c1'"
    )
    conn.close()
    with pytest.raises(SealedKeyError, match="certificates c1: key: the sealed value does not open"):
        store.load()


def test_a_plain_database_gets_sealed_on_the_next_write(tmp_path: Path, entities: Entities) -> None:
    store = open_store(tmp_path)
    store.commit(Entities(), entities)
    store.close()
    store = open_store(tmp_path, SECRET)
    assert store.load() == entities  # plain keys still read
    old = store.load()
    store.commit(old, dataclasses.replace(old, consumers={}))  # touches no certificate
    assert_no_plain_keys(tmp_path, entities)
    store.close()
    assert open_store(tmp_path, SECRET).load().certificates == entities.certificates


def test_reseal_seals_a_plain_database(tmp_path: Path, entities: Entities) -> None:
    store = open_store(tmp_path)
    store.commit(Entities(), entities)
    store.close()
    store = open_store(tmp_path, SECRET)
    store.reseal(SECRET, SECRET)
    assert_no_plain_keys(tmp_path, entities)
    assert store.load() == entities


def test_reseal_changes_the_secret(tmp_path: Path, entities: Entities) -> None:
    store = open_store(tmp_path, SECRET)
    bystander = open_store(tmp_path, SECRET)  # another process, started before the reseal
    store.commit(Entities(), entities)
    before = bystander.load()
    with pytest.raises(SealedKeyError, match="does not open"):
        store.reseal("wrong", "new secret")
    assert store.reseal(SECRET, "new secret") == 2
    assert store.load() == entities
    assert bystander.version() == 2
    with pytest.raises(SealedKeyError, match="resealed"):
        bystander.load()
    with pytest.raises(SealedKeyError, match="resealed"):
        bystander.commit(before, Entities())
    store.close()
    with pytest.raises(SealedKeyError, match="different secret"):
        open_store(tmp_path, SECRET)
    assert open_store(tmp_path, "new secret").load() == entities
    assert_no_plain_keys(tmp_path, entities)


def test_reseal_to_no_secret_unseals(tmp_path: Path, entities: Entities) -> None:
    store = open_store(tmp_path, SECRET)
    store.commit(Entities(), entities)
    store.reseal(SECRET, None)
    assert not store.sealed
    store.close()
    assert open_store(tmp_path).load() == entities


def test_credentials_round_trip_and_migration_from_version_2(tmp_path: Path) -> None:
    from trio_gw.model.credentials import Credential

    conn = sqlite3.connect(tmp_path / "trio-gw.db", isolation_level=None)
    migrate(conn.cursor(), MIGRATIONS[:2])  # a datastore written before credentials existed
    conn.close()
    store = open_store(tmp_path)
    assert store.load().credentials == {}
    creds = {
        "k": Credential(id="k", kind="key_auth", consumer="u", key="s3cret", bound_certificates=("ab" * 32,)),
        "m": Credential(id="m", kind="mtls_auth", consumer="u", fingerprint="cd" * 32, status="scheduled",
                        valid_from=NOW, valid_until=NOW + 60),
    }
    wanted = Entities(consumers={"u": Consumer(id="u", username="alice")}, credentials=creds)
    store.commit(store.load(), wanted)
    store.close()
    again = open_store(tmp_path)
    assert again.load() == wanted
    revoked = dataclasses.replace(wanted, credentials={"k": creds["k"]})
    again.commit(again.load(), revoked)
    assert again.load().credentials == {"k": creds["k"]}
    again.close()


def test_every_plugin_secret_field_is_sealed() -> None:
    """A plugin config field the Admin API never shows (a private key) is sealed at rest too."""
    import trio_gw.plugins  # noqa: F401  (registers every plugin)
    from trio_gw.plugins.base import REGISTRY
    from trio_gw.store.sealing import SEALED_FIELDS

    secret = {f"config.{field}" for spec in REGISTRY.values() for field in spec.secret_fields}
    assert secret and secret <= set(SEALED_FIELDS["plugins"])
