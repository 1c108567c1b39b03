"""The shared ticket ring in a real SQLite datastore: first ring, rotation by compare-and-swap, sealing, reseal."""

from __future__ import annotations

from pathlib import Path

import pytest

from trio_gw.runtime.ticket_ring import TicketRing
from trio_gw.settings import default_settings
from trio_gw.store import SqliteStore
from trio_gw.store.ticket_keys import META_KEY, open_ticket_keys
from trio_gw.tls.ticket_policy import TicketSource

T0 = 1_800_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def ring_for(tmp_path: Path, clock: Clock, **settings: object) -> TicketRing:
    return TicketRing(default_settings(prefix=str(tmp_path), database="sqlite", ssl_session_ticket_rotation="1h",
                                       ssl_session_timeout="2h", **settings), clock=clock)


def test_the_first_process_stores_the_ring_and_the_next_reads_it(tmp_path: Path) -> None:
    store = SqliteStore.open(tmp_path / "gw.db", secret=None)
    clock = Clock()
    first, second = ring_for(tmp_path, clock), ring_for(tmp_path, clock)
    assert first.source is TicketSource.DATASTORE and first.origin == "local"  # until the datastore answers
    local = first.ring
    assert first.sync(store) is True and first.origin == "datastore" and first.ring != local
    second.sync(store)
    assert second.ring == first.ring and second.status()["keys"] == first.status()["keys"]
    assert first.sync(store) is False  # nothing due: the same ring
    store.close()


def test_two_processes_due_at_once_end_with_one_rotated_ring(tmp_path: Path) -> None:
    store = SqliteStore.open(tmp_path / "gw.db", secret=None)
    clock = Clock()
    a, b = ring_for(tmp_path, clock), ring_for(tmp_path, clock)
    a.sync(store)
    b.sync(store)
    clock.now = a.next_due()  # the next key's publication: both are due
    assert a.sync(store) is True and b.sync(store) is True
    assert a.ring is not None
    assert a.ring == b.ring and len(a.ring.keys) == 2  # b lost the race and took a's ring, not one of its own
    assert a.status()["keys"].split(", ")[0].endswith("pending")
    assert (a.rotations, b.rotations) == (1, 1)
    store.close()


def test_with_a_secret_the_ring_is_sealed_and_reseal_keeps_it(tmp_path: Path) -> None:
    plain = SqliteStore.open(tmp_path / "gw.db", secret=None)
    clock = Clock()
    ring = ring_for(tmp_path, clock)
    ring.sync(plain)
    assert str(plain.read_meta(META_KEY)).startswith("tgw-ring:1:")
    plain.close()
    sealed = SqliteStore.open(tmp_path / "gw.db", secret="s3cret")  # a secret configured later
    before = ring.ring
    ring.sync(sealed)
    stored = str(sealed.read_meta(META_KEY))
    assert stored.startswith("tgw-sealed") and ring.ring == before  # the same keys, sealed now
    sealed.reseal("s3cret", "another")
    resealed = str(sealed.read_meta(META_KEY))
    assert resealed != stored and open_ticket_keys(resealed, sealed.sealer) == before
    sealed.close()


def test_the_store_owns_its_own_meta_keys(tmp_path: Path) -> None:
    store = SqliteStore.open(tmp_path / "gw.db", secret=None)
    with pytest.raises(ValueError, match="belongs to the store"):
        store.swap_meta("version", "0", "99")
    assert store.swap_meta("x", None, "1") is True
    assert store.swap_meta("x", None, "2") is False  # someone else set it first
    assert store.swap_meta("x", "1", "2") is True and store.read_meta("x") == "2"
    assert store.version() == 0  # meta writes are not configuration changes
    store.close()


def test_files_are_read_on_every_reload(tmp_path: Path) -> None:
    key = tmp_path / "k1"
    key.write_bytes(bytes(range(80)))
    ring = ring_for(tmp_path, Clock(), ssl_session_ticket_key=[str(key)])
    assert ring.source is TicketSource.FILES and ring.ring is None
    ring.read_files()
    first = ring.ring
    assert first is not None and first.keys[0].name == bytes(range(16))
    key.write_bytes(bytes(range(1, 81)))
    ring.read_files()
    assert ring.ring != first and ring.keys is not None and ring.keys.ring == ring.ring
