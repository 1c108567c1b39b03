"""Node secrets (sealed like keys, resealed with them) and cluster-wide named locks, on SQLite files."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from trio_gw.store import SealedKeyError, SqliteStore, StoreError
from trio_gw.store.secrets import open_secret, seal_secret
from trio_gw.store.sealing import Sealer


def test_secrets_are_sealed_with_the_datastore(tmp_path: Path) -> None:
    path = tmp_path / "trio-gw.db"
    store = SqliteStore.open(path, secret="s3cret")
    assert store.read_secret("acme_account:x") is None
    store.write_secret("acme_account:x", '{"key_pem": "-----BEGIN PRIVATE KEY-----"}')
    store.write_secret("acme_challenge:http-01:T", "key.auth")
    assert store.read_secret("acme_account:x") == '{"key_pem": "-----BEGIN PRIVATE KEY-----"}'
    assert store.read_secrets("acme_challenge:") == {"acme_challenge:http-01:T": "key.auth"}
    version = store.version()
    store.delete_secret("acme_challenge:http-01:T")
    assert store.read_secrets("acme_challenge:") == {} and store.version() == version  # not a config change
    store.close()
    with sqlite3.connect(path) as db:
        (raw,) = db.execute("SELECT value FROM meta WHERE key = 'secret:acme_account:x'").fetchone()
    assert raw.startswith("tgw-sealed:1:") and "PRIVATE KEY" not in raw
    with pytest.raises(SealedKeyError):
        SqliteStore.open(path, secret="wrong")
    resealed = SqliteStore.open(path, secret="s3cret")
    resealed.reseal("s3cret", "n3w")
    resealed.close()
    reopened = SqliteStore.open(path, secret="n3w")
    assert reopened.read_secret("acme_account:x") is not None  # resealed with the keys
    reopened.close()


def test_a_sealed_blob_opens_only_under_its_own_name() -> None:
    sealer = Sealer.create("s")
    blob = seal_secret("value", sealer, "a")
    assert open_secret(blob, sealer, "a") == "value"
    with pytest.raises(SealedKeyError):
        open_secret(blob, sealer, "b")
    with pytest.raises(SealedKeyError):
        open_secret(blob, None, "a")
    assert open_secret(seal_secret("plain", None, "a"), None, "a") == "plain"
    with pytest.raises(StoreError):
        open_secret("-----BEGIN garbage", None, "a")


def test_named_locks_exclude_other_stores_of_the_same_file(tmp_path: Path) -> None:
    path = tmp_path / "trio-gw.db"
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "trio-gw.db").symlink_to(path)  # another node's prefix, one datastore
    first, second = SqliteStore.open(path, secret=None), SqliteStore.open(tmp_path / "b" / "trio-gw.db", secret=None)
    try:
        assert first.try_lock("acme")
        assert not first.try_lock("acme")  # not re-entrant
        assert not second.try_lock("acme")
        assert second.try_lock("other")  # locks are by name
        first.unlock("acme")
        assert second.try_lock("acme")
        first.unlock("acme")  # not held: nothing happens
        assert not first.try_lock("acme")
    finally:
        first.close()
        second.close()
    third = SqliteStore.open(path, secret=None)
    assert third.try_lock("acme")  # closing released every lock
    third.close()
