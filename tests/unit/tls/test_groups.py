"""Key-exchange groups (``ssl_ecdh_curve``): every spelling in, OpenSSL's names out, bad names refused by name."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trio_gw.errors import ConfigError
from trio_gw.tls.downstream import parse_downstream_policy
from trio_gw.tls.groups import DEFAULT_GROUPS, GROUPS, GroupPolicy, parse_ecdh_curve


@pytest.mark.parametrize("value", ["auto", "AUTO", " auto "])
def test_auto_keeps_openssls_list(value: str) -> None:
    assert parse_ecdh_curve(value) == GroupPolicy(())
    assert parse_ecdh_curve(value).openssl_list is None
    assert parse_ecdh_curve(value).describe() == "OpenSSL's key exchange groups"


def test_the_default_is_mozillas_tls_curves() -> None:
    assert GroupPolicy().names == DEFAULT_GROUPS == ("X25519", "P-256", "P-384")
    assert GroupPolicy().openssl_list == "X25519:P-256:P-384"


@pytest.mark.parametrize(
    ("value", "names"),
    [
        ("X25519:prime256v1:secp384r1", ("X25519", "P-256", "P-384")),  # nginx / Mozilla intermediate
        ("CurveP521, CurveP384, CurveP256, X25519", ("P-521", "P-384", "P-256", "X25519")),  # Traefik
        ("x25519 secp256r1", ("X25519", "P-256")),  # Caddy
        (["P-256", "ffdhe3072"], ("P-256", "ffdhe3072")),  # a YAML list
        ("P-384", ("P-384",)),
    ],
)
def test_every_spelling_maps_to_openssls_name_in_order(value: object, names: tuple[str, ...]) -> None:
    policy = parse_ecdh_curve(value)
    assert policy.names == names
    assert policy.openssl_list == ":".join(names)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("X25519:P-265", "unknown group 'P-265' (did you mean P-256?)"),
        ("secp256k1", "secp256k1 is not usable with TLS 1.3"),
        ("brainpoolP256r1:X25519", "brainpoolP256r1 is not usable with TLS 1.3"),
        ("prime256v1:P-256", "P-256 is listed twice (as P-256)"),
        ("auto:X25519", "'auto' cannot be combined"),
        (":: ,", "no group given"),
        (7, "expected 'auto' or a list of groups, got int"),
    ],
)
def test_bad_lists_are_refused_by_name(value: object, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_ecdh_curve(value)
    assert info.value.problems[0].path == "ssl_ecdh_curve"
    assert message in info.value.problems[0].message


def test_all_problems_of_one_list_are_reported_together() -> None:
    with pytest.raises(ConfigError) as info:
        parse_ecdh_curve("foo:secp256k1:X25519:x25519")
    message = info.value.problems[0].message
    assert "unknown group 'foo'" in message and "secp256k1" in message and "listed twice" in message


_SPELLINGS = sorted(s for spellings in GROUPS.values() for s in spellings)


@given(st.lists(st.sampled_from(_SPELLINGS), min_size=1, max_size=8), st.sampled_from([":", ",", " ", ": "]))
def test_a_valid_list_is_accepted_exactly_when_no_group_repeats(words: list[str], sep: str) -> None:
    value = sep.join(w.upper() if i % 2 else w for i, w in enumerate(words))
    canonical = [next(n for n, s in GROUPS.items() if w in s) for w in words]
    if len(set(canonical)) == len(canonical):
        assert parse_ecdh_curve(value).names == tuple(canonical)
    else:
        with pytest.raises(ConfigError, match="listed twice"):
            parse_ecdh_curve(value)


def test_the_listener_policy_carries_the_groups() -> None:
    assert parse_downstream_policy({}).groups == GroupPolicy() == parse_ecdh_curve("X25519:prime256v1:secp384r1")
    assert parse_downstream_policy({"ssl_ecdh_curve": "auto"}).groups.openssl_list is None
    policy = parse_downstream_policy({"ssl_ecdh_curve": "X25519:P-256"})
    assert policy.groups.names == ("X25519", "P-256")
    assert "key exchange groups X25519:P-256" in policy.describe()
    assert policy != parse_downstream_policy({})  # a change replaces the listener context


def test_a_bad_list_is_reported_with_the_other_problems() -> None:
    with pytest.raises(ConfigError) as info:
        parse_downstream_policy({"ssl_ecdh_curve": "P-999", "ssl_dhparam": "ffdhe1"})
    assert {p.path for p in info.value.problems} == {"ssl_ecdh_curve", "ssl_dhparam"}
