"""store.config_cache: the last good configuration as bytes — round trip, keys sealed, damage refused."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_gw.model.entities import Certificate, Consumer, Entities, Plugin, Route, Service
from trio_gw.store.base import SealedKeyError
from trio_gw.store.config_cache import ConfigCacheError, decode_config_cache, encode_config_cache
from trio_gw.store.sealing import Sealer
from trio_gw.testing.pki import issue, make_ca

SOURCE = "postgres://127.0.0.1:5432/trio_gw#trio_gw"
SECRET = "cluster secret"
LEAF = issue(make_ca(), "api.example")
ENTITIES = Entities(
    certificates={"c": Certificate(id="c", cert=LEAF.chain_pem(), key=LEAF.key_pem(), tags=("t",))},
    services={"s": Service(id="s", name="orders", host="up.example", ca_certificates=("x",))},
    routes={"r": Route(id="r", name="orders-api", service="s", paths=("/orders",))},
    consumers={"u": Consumer(id="u", username="alice")},
    plugins={"p": Plugin(id="p", name="cors", config={"origins": ["*"], "max_age": 3600})},
)


@pytest.fixture(scope="module")
def sealer() -> Sealer:
    return Sealer.create(SECRET, n=2**10)


@pytest.fixture(scope="module")
def sealed(sealer: Sealer) -> bytes:
    return encode_config_cache(ENTITIES, version=42, written_at=1_800_000_000, source=SOURCE, sealer=sealer)


def test_round_trip_with_sealed_keys(sealed: bytes) -> None:
    cached = decode_config_cache(sealed, secret=SECRET, source=SOURCE)
    assert cached.entities == ENTITIES
    assert (cached.version, cached.written_at, cached.source) == (42, 1_800_000_000, SOURCE)


def test_keys_are_sealed_in_the_bytes(sealed: bytes) -> None:
    assert b"PRIVATE KEY" not in sealed and b"tgw-sealed:1:" in sealed
    assert LEAF.key_pem().splitlines()[1].encode() not in sealed


def test_without_a_secret_it_is_what_the_datastore_holds_then() -> None:
    plain = encode_config_cache(ENTITIES, version=1, written_at=1, source="sqlite", sealer=None)
    assert decode_config_cache(plain, secret=None, source="sqlite").entities == ENTITIES


def test_sealed_keys_need_the_right_secret(sealed: bytes) -> None:
    with pytest.raises(SealedKeyError, match="set private_key_encryption_secret"):
        decode_config_cache(sealed, secret=None, source=SOURCE)
    with pytest.raises(SealedKeyError, match="does not open this datastore"):
        decode_config_cache(sealed, secret="wrong", source=SOURCE)


def test_a_cache_of_another_datastore_is_refused(sealed: bytes) -> None:
    with pytest.raises(ConfigCacheError, match="written for the datastore 'postgres://127.0.0.1:5432/trio_gw#trio_gw', "
                                               "not this node's 'postgres://db:5432/trio_gw#trio_gw'"):  # fmt: skip
        decode_config_cache(sealed, secret=SECRET, source="postgres://db:5432/trio_gw#trio_gw")


@pytest.mark.parametrize(
    ("damage", "says"),
    [
        (lambda b: b[: len(b) // 2], "cut short"),
        (lambda b: b[:-2] + (b"1" if b[-2:-1] == b"0" else b"0") + b"\n", "digest does not match"),
        (lambda b: b.replace(b'"version":42', b'"version":43'), "digest does not match"),
        (lambda b: b"hello\n" + b, "no header"),
        (lambda b: b"", "no header"),
        (lambda b: b.replace(b"config cache 1", b"config cache 9", 1), "format '9'"),
        (lambda b: b + b"more\n", "extra lines"),
    ],
)  # fmt: skip
def test_a_damaged_or_foreign_file_is_refused_saying_why(sealed: bytes, damage: object, says: str) -> None:
    with pytest.raises(ConfigCacheError, match=says):
        decode_config_cache(damage(sealed), secret=SECRET, source=SOURCE)  # type: ignore[operator]


@settings(max_examples=60, deadline=None)
@given(position=st.integers(min_value=0), bit=st.integers(0, 7))
def test_any_flipped_bit_is_refused_never_a_different_configuration(sealed: bytes, position: int, bit: int) -> None:
    i = position % len(sealed)
    damaged = sealed[:i] + bytes([sealed[i] ^ (1 << bit)]) + sealed[i + 1 :]
    with pytest.raises((ConfigCacheError, SealedKeyError)):
        decode_config_cache(damaged, secret=SECRET, source=SOURCE)
