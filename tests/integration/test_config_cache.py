"""runtime.config_cache: the cache file under prefix — owner-only, atomic, keys sealed on disk, damage refused."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from trio_gw.model.entities import Certificate, Entities, Service
from trio_gw.runtime.config_cache import CACHE_FILENAME, ConfigCache, cache_source
from trio_gw.runtime.settings import load_settings
from trio_gw.store.config_cache import ConfigCacheError
from trio_gw.testing.pki import issue, make_ca

LEAF = issue(make_ca(), "api.example")
ENTITIES = Entities(
    certificates={"c": Certificate(id="c", cert=LEAF.chain_pem(), key=LEAF.key_pem())},
    services={"s": Service(id="s", name="orders", host="up.example")},
)
SOURCE = "postgres://127.0.0.1:5432/trio_gw#trio_gw"


def test_no_cache_yet_is_none(tmp_path: Path) -> None:
    assert ConfigCache(tmp_path, source=SOURCE, secret="s").read() is None


def test_written_owner_only_with_keys_sealed_on_disk_and_read_back(tmp_path: Path) -> None:
    cache = ConfigCache(tmp_path / "prefix", source=SOURCE, secret="cluster secret")
    cache.write(ENTITIES, version=7, now=1_800_000_000)
    cache.write(ENTITIES, version=8, now=1_800_000_001)  # replaced, atomically
    path = tmp_path / "prefix" / CACHE_FILENAME
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert b"PRIVATE KEY" not in path.read_bytes()
    assert [p.name for p in path.parent.iterdir()] == [CACHE_FILENAME]  # no temporary file left
    cached = ConfigCache(tmp_path / "prefix", source=SOURCE, secret="cluster secret").read()  # a fresh process
    assert cached is not None and cached.entities == ENTITIES and cached.version == 8


def test_a_corrupted_file_is_refused_naming_the_file(tmp_path: Path) -> None:
    cache = ConfigCache(tmp_path, source=SOURCE, secret=None)
    cache.write(ENTITIES, version=1, now=1)
    data = bytearray(cache.path.read_bytes())
    data[len(data) // 2] ^= 0x01
    cache.path.write_bytes(bytes(data))
    with pytest.raises(ConfigCacheError, match=f"^{cache.path}: the cache's digest does not match"):
        cache.read()


def test_the_source_names_the_datastore(tmp_path: Path) -> None:
    pg = load_settings(None, environ={}, overrides={"database": "postgres", "pg_host": "db", "pg_schema": "s1"})
    assert cache_source(pg.as_mapping()) == "postgres://db:5432/trio_gw#s1"
    assert cache_source(load_settings(None, environ={}, overrides={}).as_mapping()) == "sqlite"
