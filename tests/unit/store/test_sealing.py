"""Sealing: the right secret opens, a wrong one is named as such, blobs cannot move."""

from __future__ import annotations

import json
from typing import Any

import pytest

from trio_gw.store.base import SealedKeyError, StoreError
from trio_gw.store.sealing import (
    Sealer,
    SealRecord,
    has_plain_fields,
    is_sealed,
    seal_fields,
    unseal_fields,
)
from trio_gw.testing.pki import make_ca

WRONG = "private_key_encryption_secret does not open this datastore (it was sealed with a different secret)"
KEY = make_ca().key_pem()


@pytest.fixture(scope="module")
def sealer() -> Sealer:
    return Sealer.create("correct horse battery staple")


def test_seal_then_unseal(sealer: Sealer) -> None:
    token = sealer.seal(KEY, kind="certificates", entity_id="c1", field="key")
    assert is_sealed(token)
    assert "PRIVATE KEY" not in token
    assert sealer.unseal(token, kind="certificates", entity_id="c1", field="key") == KEY


def test_every_seal_uses_a_fresh_nonce(sealer: Sealer) -> None:
    one = sealer.seal("k", kind="certificates", entity_id="c1", field="key")
    two = sealer.seal("k", kind="certificates", entity_id="c1", field="key")
    assert one != two


def test_the_right_secret_reopens_the_record(sealer: Sealer) -> None:
    record = SealRecord.parse(sealer.record.to_json())
    assert record == sealer.record
    again = Sealer.open("correct horse battery staple", record)
    token = sealer.seal(KEY, kind="certificates", entity_id="c1", field="key")
    assert again.unseal(token, kind="certificates", entity_id="c1", field="key") == KEY


def test_a_wrong_secret_is_reported_clearly(sealer: Sealer) -> None:
    with pytest.raises(SealedKeyError) as info:
        Sealer.open("incorrect horse", sealer.record)
    assert str(info.value) == WRONG


def test_an_empty_secret_is_refused() -> None:
    with pytest.raises(SealedKeyError, match="is empty"):
        Sealer.create("")


@pytest.mark.parametrize(
    "where",
    [
        {"kind": "certificates", "entity_id": "c2", "field": "key"},  # moved to another certificate
        {"kind": "certificates", "entity_id": "c1", "field": "key_alt"},  # moved to the other field
        {"kind": "ca_certificates", "entity_id": "c1", "field": "key"},  # moved to another kind
    ],
)
def test_a_blob_moved_elsewhere_does_not_open(sealer: Sealer, where: dict[str, str]) -> None:
    token = sealer.seal(KEY, kind="certificates", entity_id="c1", field="key")
    with pytest.raises(SealedKeyError, match="does not open"):
        sealer.unseal(token, **where)


def test_a_tampered_blob_does_not_open(sealer: Sealer) -> None:
    token = sealer.seal("secret key", kind="certificates", entity_id="c1", field="key")
    flipped = token[:-6] + ("A" if token[-6] != "A" else "B") + token[-5:]
    for bad in (flipped, "tgw-sealed:1:!!!", "tgw-sealed:1:AAAA"):
        with pytest.raises(SealedKeyError, match="certificates c1: key"):
            sealer.unseal(bad, kind="certificates", entity_id="c1", field="key")


def test_a_blob_of_another_datastore_does_not_open(sealer: Sealer) -> None:
    other = Sealer.create("correct horse battery staple")  # same secret, other salt
    token = other.seal(KEY, kind="certificates", entity_id="c1", field="key")
    with pytest.raises(SealedKeyError):
        sealer.unseal(token, kind="certificates", entity_id="c1", field="key")


def test_seal_fields_seals_only_the_key_fields(sealer: Sealer) -> None:
    row: dict[str, Any] = {"cert": "CERT", "key": KEY, "key_alt": None, "tags": []}
    sealed = seal_fields(sealer, "certificates", "c1", row)
    assert sealed["cert"] == "CERT" and sealed["key_alt"] is None
    assert is_sealed(sealed["key"])
    assert not has_plain_fields("certificates", sealed)
    assert has_plain_fields("certificates", row)
    assert unseal_fields(sealer, "certificates", "c1", sealed) == row
    assert seal_fields(sealer, "services", "s", {"host": "h"}) == {"host": "h"}


def test_without_a_sealer_plain_passes_and_sealed_is_refused(sealer: Sealer) -> None:
    row = {"cert": "CERT", "key": KEY}
    assert seal_fields(None, "certificates", "c1", row) == row
    assert unseal_fields(None, "certificates", "c1", row) == row
    sealed = seal_fields(sealer, "certificates", "c1", row)
    with pytest.raises(SealedKeyError, match="set private_key_encryption_secret"):
        unseal_fields(None, "certificates", "c1", sealed)


def test_record_format_is_documented_json(sealer: Sealer) -> None:
    record = json.loads(sealer.record.to_json())
    assert record["kdf"] == "scrypt" and record["aead"] == "AES-256-GCM"
    assert (record["n"], record["r"], record["p"]) == (2**15, 8, 1)


@pytest.mark.parametrize(
    "text",
    ["not json", "{}", '{"format": 2, "kdf": "scrypt", "aead": "AES-256-GCM"}',
     '{"format": 1, "kdf": "scrypt", "aead": "AES-256-GCM", "salt": "*", "check": "", "n": 1, "r": 1, "p": 1}'],
)  # fmt: skip
def test_an_unreadable_record_is_a_store_error(text: str) -> None:
    with pytest.raises(StoreError, match="seal record cannot be read"):
        SealRecord.parse(text)
