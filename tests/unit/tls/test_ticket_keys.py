"""trio_gw.tls.ticket_keys: the shared ring, its schedule, its formats (nginx's files included)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_gw.errors import ConfigError
from trio_gw.tls.ticket_keys import (
    RotationPolicy,
    TicketKey,
    TicketKeyRing,
    decode_ring,
    encode_ring,
    generate_key,
    maintain,
    next_maintenance,
    nginx_key_bytes,
    parse_nginx_key,
    ring_from_nginx_files,
)

H = 3600
POLICY = RotationPolicy(interval=12 * H, lifetime=24 * H, lead=300)
T0 = 1_800_000_000


def counter_bytes() -> object:
    """A deterministic ``random_bytes``: 1, 2, 3 ... repeated."""
    n = itertools.count(1)

    def random_bytes(size: int) -> bytes:
        return bytes([next(n) % 256]) * size

    return random_bytes


def key(seed: int, not_before: int = 0) -> TicketKey:
    return TicketKey(bytes([seed]) * 16, bytes([seed + 1]) * 32, bytes([seed + 2]) * 32, not_before)


# -- keys and rings ----------------------------------------------------------------------


def test_a_generated_key_is_aes_256_and_never_shows_its_secrets() -> None:
    k = generate_key(T0, counter_bytes())  # type: ignore[arg-type]
    assert (len(k.name), len(k.hmac_key), len(k.aes_key), k.cipher) == (16, 32, 32, "AES-256-CBC")
    assert k.not_before == T0
    assert k.hmac_key.hex() not in repr(k) and k.aes_key.hex() not in repr(k) and k.name_hex in repr(k)


@pytest.mark.parametrize(
    ("name", "hmac", "aes"), [(b"x" * 15, b"h" * 32, b"a" * 32), (b"x" * 16, b"h" * 16, b"a" * 32),
                              (b"x" * 16, b"h" * 24, b"a" * 24)],
)  # fmt: skip
def test_malformed_keys_are_refused(name: bytes, hmac: bytes, aes: bytes) -> None:
    with pytest.raises(ValueError):
        TicketKey(name, hmac, aes)


def test_a_ring_finds_keys_by_name_and_refuses_empty_or_duplicate() -> None:
    ring = TicketKeyRing((key(1), key(10)))
    assert ring.find(key(10).name) == key(10) and ring.find(b"z" * 16) is None
    with pytest.raises(ValueError):
        TicketKeyRing(())
    with pytest.raises(ValueError):
        TicketKeyRing((key(1), key(1, 5)))


def test_the_first_started_key_encrypts_and_a_pending_one_waits() -> None:
    ring = TicketKeyRing((key(20, T0 + 100), key(10, T0), key(1, T0 - 100)))
    assert ring.encrypting(T0 + 99) == key(10, T0)
    assert ring.encrypting(T0 + 100) == key(20, T0 + 100)
    assert ring.encrypting(T0 - 1000) == key(1, T0 - 100)  # none started: the earliest
    assert ring.describe(T0) == "14141414 pending, 0a0a0a0a encrypts, 01010101 decrypts"


def test_scoping_derives_distinct_stable_keys_per_listener_policy() -> None:
    k = key(1)
    assert k.scoped(b"") is k
    a, a2, b = k.scoped(b"policy-a"), k.scoped(b"policy-a"), k.scoped(b"policy-b")
    assert a == a2 and a != b
    assert len({k.name, a.name, b.name}) == 3 and len({k.aes_key, a.aes_key, b.aes_key}) == 3
    assert (len(a.hmac_key), len(a.aes_key), a.not_before) == (32, 32, k.not_before)
    small = parse_nginx_key(bytes(range(48)), path="p").scoped(b"s")
    assert small.cipher == "AES-128-CBC"
    ring = TicketKeyRing((key(1), key(10)))
    assert [x.name for x in ring.scoped(b"s").keys] == [key(1).scoped(b"s").name, key(10).scoped(b"s").name]


# -- the schedule ------------------------------------------------------------------------


def test_a_first_ring_has_one_key_encrypting_now() -> None:
    ring = maintain(None, T0, POLICY, counter_bytes())  # type: ignore[arg-type]
    assert ring is not None and len(ring.keys) == 1 and ring.encrypting(T0).not_before == T0


def test_the_next_key_is_published_lead_seconds_before_it_encrypts_and_the_old_one_decrypts_a_lifetime() -> None:
    rnd = counter_bytes()
    ring = maintain(None, T0, POLICY, rnd)  # type: ignore[arg-type]
    assert ring is not None
    first = ring.keys[0]
    assert maintain(ring, T0 + 12 * H - 301, POLICY, rnd) is None  # type: ignore[arg-type]
    published = maintain(ring, T0 + 12 * H - 300, POLICY, rnd)  # type: ignore[arg-type]
    assert published is not None and len(published.keys) == 2
    second = published.keys[0]
    assert second.not_before == T0 + 12 * H
    assert published.encrypting(T0 + 12 * H - 1) == first  # not before every node has it
    assert published.encrypting(T0 + 12 * H) == second
    just_before = maintain(published, T0 + 36 * H - 1, POLICY, rnd)  # type: ignore[arg-type]
    assert just_before is not None and first in just_before.keys  # (a third key was published meanwhile)
    later = maintain(just_before, T0 + 36 * H, POLICY, rnd)  # type: ignore[arg-type]
    assert later is not None and first not in later.keys and second in later.keys


def test_a_late_maintenance_never_schedules_a_key_in_the_past() -> None:
    rnd = counter_bytes()
    ring = maintain(None, T0, POLICY, rnd)  # type: ignore[arg-type]
    assert ring is not None
    late = maintain(ring, T0 + 100 * H, POLICY, rnd)  # type: ignore[arg-type]
    assert late is not None and late.keys[0].not_before == T0 + 100 * H + 300
    assert late.encrypting(T0 + 100 * H) == ring.keys[0]  # the old key still encrypts until then


def test_next_maintenance_is_when_something_changes() -> None:
    rnd = counter_bytes()
    ring = maintain(None, T0, POLICY, rnd)  # type: ignore[arg-type]
    assert ring is not None
    at = next_maintenance(ring, T0, POLICY)
    assert at == T0 + 12 * H - 300
    assert maintain(ring, at - 1, POLICY, rnd) is None and maintain(ring, at, POLICY, rnd) is not None  # type: ignore[arg-type]
    assert next_maintenance(ring, T0 + 50 * H, POLICY) == T0 + 50 * H  # overdue: now


def test_rotation_policy_is_validated() -> None:
    with pytest.raises(ConfigError):
        RotationPolicy(interval=0)
    with pytest.raises(ConfigError, match="lead"):
        RotationPolicy(interval=300, lead=300)


@settings(max_examples=60, deadline=None)
@given(
    interval=st.integers(60, 48 * H), lifetime=st.integers(1, 7 * 24 * H), lead_fraction=st.floats(0, 0.9),
    steps=st.lists(st.integers(1, 6 * H), min_size=1, max_size=80),
)  # fmt: skip
def test_every_ticket_stays_decryptable_for_its_lifetime_and_every_key_is_published_before_use(
    interval: int, lifetime: int, lead_fraction: float, steps: list[int]
) -> None:
    """Simulate nodes running maintain() at arbitrary moments; check the two promises of the schedule."""
    policy = RotationPolicy(interval=interval, lifetime=lifetime, lead=int(interval * lead_fraction))
    rnd = counter_bytes()
    now = T0
    ring = maintain(None, now, policy, rnd)  # type: ignore[arg-type]
    assert ring is not None
    published = {ring.keys[0].name: now}
    issued: list[tuple[int, bytes]] = []  # (time, key name) of tickets issued
    for step in steps:
        # a ticket issued at every moment between maintenances, with the key encrypting then
        for t in (now, now + step - 1):
            k = ring.encrypting(t)
            assert k.not_before <= t or k.name == next(iter(published))
            if k.name != next(iter(published)):
                assert published[k.name] + policy.lead <= k.not_before <= t  # published at least `lead` before use
            issued.append((t, k.name))
        now += step
        ring = maintain(ring, now, policy, rnd) or ring  # type: ignore[arg-type]
        for k in ring.keys:
            published.setdefault(k.name, now)
        for t, name in issued:
            if now < t + lifetime:
                assert ring.find(name) is not None, "a ticket inside its lifetime lost its key"


# -- storage -----------------------------------------------------------------------------


def test_a_ring_round_trips_through_bytes() -> None:
    ring = TicketKeyRing((key(20, T0 + 5), key(10, T0), parse_nginx_key(bytes(range(48)), path="p")))
    assert decode_ring(encode_ring(ring)) == ring


@pytest.mark.parametrize("cut", [0, 5, 10, 20, -1])
def test_damaged_bytes_are_refused(cut: int) -> None:
    data = encode_ring(TicketKeyRing((key(1, T0),)))
    with pytest.raises(ValueError):
        decode_ring(data[:cut] if cut else b"")
    with pytest.raises(ValueError, match="trailing"):
        decode_ring(data + b"x")
    with pytest.raises(ValueError, match="format 9"):
        decode_ring(data[:8] + b"\x09" + data[9:])


# -- nginx's ssl_session_ticket_key files -------------------------------------------------


def test_an_80_byte_file_is_name_hmac_aes_as_nginx_reads_it() -> None:
    data = bytes(range(80))
    k = parse_nginx_key(data, path="ssl_session_ticket_key[0]")
    assert (k.name, k.hmac_key, k.aes_key) == (data[:16], data[16:48], data[48:80])
    assert k.cipher == "AES-256-CBC" and nginx_key_bytes(k) == data


def test_a_48_byte_file_is_name_aes_hmac_as_nginx_reads_it() -> None:
    data = bytes(range(48))
    k = parse_nginx_key(data, path="p")
    assert (k.name, k.aes_key, k.hmac_key) == (data[:16], data[16:32], data[32:48])
    assert k.cipher == "AES-128-CBC" and nginx_key_bytes(k) == data


def test_other_sizes_are_named_without_showing_the_bytes() -> None:
    secret = b"\xaa" * 64
    with pytest.raises(ConfigError) as info:
        parse_nginx_key(secret, path="ssl_session_ticket_key[1]")
    assert str(info.value) == ("ssl_session_ticket_key[1]: expected 80 (or 48) bytes as nginx writes them "
                               "(openssl rand 80), got 64")  # fmt: skip


def test_the_first_file_encrypts_and_all_decrypt() -> None:
    a, b = bytes(range(80)), bytes(range(100, 180))
    ring = ring_from_nginx_files([("k[0]", a), ("k[1]", b)])
    assert ring.encrypting(T0).name == a[:16] and ring.find(b[:16]) is not None


def test_bad_files_are_all_named_and_a_copied_file_is_caught() -> None:
    with pytest.raises(ConfigError) as info:
        ring_from_nginx_files([("k[0]", b"short"), ("k[1]", b"x" * 81)])
    assert [p.path for p in info.value.problems] == ["k[0]", "k[1]"]
    with pytest.raises(ConfigError, match=r"k\[0\]: two files hold keys with the same name"):
        ring_from_nginx_files([("k[0]", bytes(80)), ("k[1]", bytes(80))])
    with pytest.raises(ConfigError):
        ring_from_nginx_files([])
