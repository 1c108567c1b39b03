"""Properties of the TLS policy parsers (trio_gw.tls.versions/ciphers/session/downstream).

Invariant for every parser: any input gives a value or ``ConfigError``, nothing else.
"""

from __future__ import annotations

import ssl

from hypothesis import example, given
from hypothesis import strategies as st

from trio_gw.errors import ConfigError
from trio_gw.tls.ciphers import (
    CIPHER_TABLE,
    PRESETS,
    CipherPreset,
    CipherSuite,
    parse_cipher_names,
    parse_cipher_policy,
    select_cipher_suite,
)
from trio_gw.tls.downstream import (
    DOWNSTREAM_SETTING_KEYS,
    parse_downstream_policy,
    parse_upstream_policy,
)
from trio_gw.tls.session import parse_duration
from trio_gw.tls.versions import (
    SUPPORTED_VERSIONS,
    VersionRange,
    parse_ssl_protocols,
    parse_version_range,
)

USABLE = [s for s in CIPHER_TABLE if s.refusal is None]
REFUSED = [s for s in CIPHER_TABLE if s.refusal is not None]
KNOWN = {n.upper() for s in CIPHER_TABLE for n in (s.iana_name, s.openssl_name)}

versions = st.sampled_from(SUPPORTED_VERSIONS)
version_spellings = st.one_of(
    versions,
    versions.map(int),
    versions.map(str).map(lambda s: s.replace("TLSVersion.", "")),
    st.sampled_from(["1.0", "1.1", "1.2", "1.3", "TLSv1", "TLSv1.2", "771", 1.2]),
    st.text(max_size=8),
    st.integers(-5, 1000),
    st.floats(allow_nan=False),
    st.none(),
)
suite_names = st.sampled_from(USABLE).flatmap(
    lambda s: st.sampled_from([s.iana_name, s.openssl_name, s.openssl_name.lower()])
)
bad_names = st.text(
    alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-", min_size=1, max_size=40
).filter(lambda n: n.upper() not in KNOWN)


@given(version_spellings, version_spellings)
@example("²", "1.3")
@example("TLSv1.3", 771)
def test_any_accepted_range_has_min_at_most_max(low: object, high: object) -> None:
    try:
        r = parse_version_range(low, high, minimum_path="lo", maximum_path="hi")
    except ConfigError as exc:
        assert {p.path for p in exc.problems} <= {"lo", "hi"}
        return
    assert r.minimum <= r.maximum
    assert r.minimum in SUPPORTED_VERSIONS and r.maximum in SUPPORTED_VERSIONS


@given(versions, versions)
def test_ranges_round_trip_through_their_kong_spelling(
    a: ssl.TLSVersion, b: ssl.TLSVersion
) -> None:
    r = VersionRange(min(a, b), max(a, b))
    assert parse_ssl_protocols(r.as_ssl_protocols()) == r
    assert bool(r.warnings()) == (r.minimum < ssl.TLSVersion.TLSv1_2)


@given(st.lists(st.sampled_from(SUPPORTED_VERSIONS), min_size=1))
def test_ssl_protocols_accepts_exactly_the_contiguous_sets(listed: list[ssl.TLSVersion]) -> None:
    chosen = sorted(set(listed))
    contiguous = SUPPORTED_VERSIONS.index(chosen[-1]) - SUPPORTED_VERSIONS.index(
        chosen[0]
    ) + 1 == len(chosen)
    try:
        r = parse_ssl_protocols(" ".join(str(int(v)) for v in listed))
    except ConfigError as exc:
        assert not contiguous
        assert "leaves out" in str(exc)
        return
    assert contiguous and r.versions == tuple(chosen)


@given(st.lists(suite_names, min_size=1, max_size=12), st.sampled_from([":", ",", " ", "list"]))
def test_any_list_of_valid_names_is_accepted(names: list[str], sep: str) -> None:
    value: object = names if sep == "list" else sep.join(names)
    policy = parse_cipher_policy(None, value)
    suites = [select_cipher_suite(n) for n in names]
    codes = list(
        dict.fromkeys(s.code for s in suites if s is not None)
    )  # order kept, duplicates dropped
    assert [s.code for s in policy.suites] == [c for c in codes if c >> 8 != 0x13]
    assert [s.code for s in policy.tls13_suites] == [c for c in codes if c >> 8 == 0x13]
    assert parse_cipher_policy(None, policy.as_setting()) == policy  # the setting round-trips
    assert policy.openssl_ciphers is None or "TLS_" not in policy.openssl_ciphers


@given(st.lists(suite_names, max_size=8), bad_names, st.integers(0, 8))
@example([], "ECDHE-RSA-AES128-GCM-SHA265", 0)
@example(["AES128-SHA"], "HIGH", 1)
def test_any_list_with_an_invalid_name_is_rejected_naming_it(
    names: list[str], bad: str, at: int
) -> None:
    names.insert(min(at, len(names)), bad)
    try:
        parse_cipher_names(names, path="ssl_ciphers")
    except ConfigError as exc:
        assert any(repr(bad) in p.message for p in exc.problems)
        assert {p.path for p in exc.problems} == {"ssl_ciphers"}
    else:
        raise AssertionError(f"{bad!r} was accepted")


@given(st.sampled_from(REFUSED), st.lists(suite_names, max_size=4))
def test_refused_suites_are_never_accepted(refused: CipherSuite, names: list[str]) -> None:
    try:
        parse_cipher_names([*names, refused.openssl_name], path="p")
    except ConfigError:
        return
    raise AssertionError(f"{refused!r} was accepted")


def test_presets_are_subsets_of_the_table() -> None:
    for preset in PRESETS.values():
        for name in preset.tls12_names:
            suite = select_cipher_suite(name)
            assert suite is not None and suite.refusal is None and not suite.is_tls13, name
    assert set(PRESETS) | {CipherPreset.CUSTOM} == set(CipherPreset)


WORDS = ["modern", "intermediate", "old", "custom", "fips", "TLSv1.2 TLSv1.3", "TLSv1 TLSv1.3"]
WORDS += ["5m", "1d", "on", "off"]
settings_values = st.one_of(
    st.none(), version_spellings, st.booleans(), suite_names, st.sampled_from(WORDS)
)


@given(st.dictionaries(st.sampled_from(DOWNSTREAM_SETTING_KEYS), settings_values))
def test_downstream_parser_gives_a_policy_or_config_errors_on_known_keys(
    settings: dict[str, object],
) -> None:
    try:
        policy = parse_downstream_policy(settings)
    except ConfigError as exc:
        assert {p.path for p in exc.problems} <= set(DOWNSTREAM_SETTING_KEYS)
        return
    assert policy.versions.minimum <= policy.versions.maximum
    if policy.versions.minimum <= ssl.TLSVersion.TLSv1_2:
        assert policy.ciphers.openssl_ciphers is not None
    assert (policy.ciphers.security_level == 0) == (
        policy.versions.minimum < ssl.TLSVersion.TLSv1_2
    )
    assert policy.options_to_set & ssl.OP_NO_RENEGOTIATION
    assert not policy.options_to_set & policy.options_to_clear
    assert parse_downstream_policy(settings) == policy  # deterministic


@given(
    st.dictionaries(
        st.sampled_from(["proxy_ssl_min_version", "proxy_ssl_max_version"]), version_spellings
    )
)
def test_upstream_parser_gives_a_policy_or_config_errors(settings: dict[str, object]) -> None:
    try:
        policy = parse_upstream_policy(settings)
    except ConfigError as exc:
        assert {p.path for p in exc.problems} <= {
            "proxy_ssl_min_version",
            "proxy_ssl_max_version",
            "proxy_ssl_ciphers",
        }
        return
    assert policy.versions.minimum <= policy.versions.maximum


@given(
    st.one_of(
        st.text(max_size=12), st.integers(), st.floats(allow_nan=False), st.none(), st.booleans()
    )
)
@example("²")
@example("1h 30m")
def test_durations_are_non_negative_or_rejected(value: object) -> None:
    try:
        assert parse_duration(value, path="t") >= 0
    except ConfigError as exc:
        assert [p.path for p in exc.problems] == ["t"]
