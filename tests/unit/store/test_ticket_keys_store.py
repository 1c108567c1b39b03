"""store.ticket_keys: a ring at rest is sealed like a private key, and opens only where it was sealed."""

from __future__ import annotations

import pytest

from trio_gw.store.base import SealedKeyError, StoreError
from trio_gw.store.sealing import Sealer
from trio_gw.store.ticket_keys import open_ticket_keys, seal_ticket_keys
from trio_gw.tls.ticket_keys import TicketKeyRing, encode_ring, generate_key

RING = TicketKeyRing((generate_key(1_800_000_000), generate_key(1_799_000_000)))


@pytest.fixture(scope="module")
def sealer() -> Sealer:
    return Sealer.create("cluster secret", n=2**10)


def test_sealed_ring_round_trips_and_shows_no_key_bytes(sealer: Sealer) -> None:
    stored = seal_ticket_keys(RING, sealer)
    assert stored.startswith("tgw-sealed:1:")
    assert all(k.aes_key.hex() not in stored and k.name.hex() not in stored for k in RING.keys)
    assert open_ticket_keys(stored, sealer) == RING


def test_without_a_secret_the_ring_is_stored_plain_and_read_back() -> None:
    stored = seal_ticket_keys(RING, None)
    assert stored.startswith("tgw-ring:1:") and open_ticket_keys(stored, None) == RING


def test_a_sealed_ring_needs_the_secret(sealer: Sealer) -> None:
    with pytest.raises(SealedKeyError, match="set private_key_encryption_secret"):
        open_ticket_keys(seal_ticket_keys(RING, sealer), None)
    with pytest.raises(SealedKeyError):
        open_ticket_keys(seal_ticket_keys(RING, sealer), Sealer.create("another secret", n=2**10))


def test_a_sealed_private_key_cannot_be_passed_off_as_a_ring(sealer: Sealer) -> None:
    moved = sealer.seal("-----BEGIN PRIVATE KEY-----", kind="certificates", entity_id="c", field="key")
    with pytest.raises(SealedKeyError, match="does not open"):
        open_ticket_keys(moved, sealer)


@pytest.mark.parametrize("stored", ["", "garbage", "tgw-ring:1:!!!", "tgw-ring:1:" + "QUJD"])
def test_damaged_text_is_a_store_error(stored: str) -> None:
    with pytest.raises(StoreError):
        open_ticket_keys(stored, None)


def test_the_plain_form_is_the_ring_bytes_in_base64() -> None:
    import base64

    assert base64.b64decode(seal_ticket_keys(RING, None)[len("tgw-ring:1:") :]) == encode_ring(RING)
