"""trio_gw.tls.versions: version spellings, Kong's ssl_protocols, range validation."""

from __future__ import annotations

import ssl

import pytest

from trio_gw.errors import ConfigError
from trio_gw.tls.versions import (
    DEFAULT_VERSION_RANGE,
    VersionRange,
    parse_ssl_protocols,
    parse_tls_version,
    parse_version_range,
    version_name,
)

V = ssl.TLSVersion


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1.0", V.TLSv1), ("1.1", V.TLSv1_1), ("1.2", V.TLSv1_2), ("1.3", V.TLSv1_3),
        (1.2, V.TLSv1_2), (1.0, V.TLSv1),  # unquoted YAML
        ("TLSv1", V.TLSv1), ("TLSv1.0", V.TLSv1), ("TLSv1.1", V.TLSv1_1), ("TLSv1.2", V.TLSv1_2),
        ("TLSv1_2", V.TLSv1_2), ("TLSv1_3", V.TLSv1_3), ("tlsv1.3", V.TLSv1_3), ("TLS1.2", V.TLSv1_2),
        ("VersionTLS12", V.TLSv1_2), (" 1.3 ", V.TLSv1_3),
        (769, V.TLSv1), (770, V.TLSv1_1), (771, V.TLSv1_2), (772, V.TLSv1_3), ("771", V.TLSv1_2),
        (V.TLSv1_2, V.TLSv1_2),
    ],
)  # fmt: skip
def test_version_spellings(value: object, expected: ssl.TLSVersion) -> None:
    assert parse_tls_version(value, path="ssl_min_version") is expected


@pytest.mark.parametrize(
    "value",
    ["1.4", "2.0", "TLSv1.4", "", "1", "12", "TLS", "latest", 768, 773, 0, -1, 1.5, True, None, [771],
     V.MAXIMUM_SUPPORTED, V.MINIMUM_SUPPORTED, V.SSLv3],
)  # fmt: skip
def test_unknown_versions_are_rejected_naming_the_value(value: object) -> None:
    with pytest.raises(ConfigError) as info:
        parse_tls_version(value, path="ssl_max_version")
    (problem,) = info.value.problems
    assert problem.path == "ssl_max_version"
    assert repr(value) in problem.message


@pytest.mark.parametrize("value", ["SSLv3", "sslv2", "SSLv3.0", 768])
def test_ssl_versions_get_a_specific_message(value: object) -> None:
    with pytest.raises(ConfigError, match="not supported"):
        parse_tls_version(value, path="ssl_min_version")


def test_default_range_is_tls12_to_tls13_and_quiet() -> None:
    assert DEFAULT_VERSION_RANGE == VersionRange(V.TLSv1_2, V.TLSv1_3)
    assert DEFAULT_VERSION_RANGE.warnings() == []
    assert DEFAULT_VERSION_RANGE.versions == (V.TLSv1_2, V.TLSv1_3)
    assert DEFAULT_VERSION_RANGE.describe() == "TLSv1.2 to TLSv1.3"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("TLSv1.2 TLSv1.3", VersionRange(V.TLSv1_2, V.TLSv1_3)),
        ("TLSv1.3", VersionRange(V.TLSv1_3, V.TLSv1_3)),
        ("TLSv1 TLSv1.1 TLSv1.2 TLSv1.3", VersionRange(V.TLSv1, V.TLSv1_3)),
        ("TLSv1.3,TLSv1.2", VersionRange(V.TLSv1_2, V.TLSv1_3)),
        (["TLSv1.2", "TLSv1.3"], VersionRange(V.TLSv1_2, V.TLSv1_3)),
        (["TLSv1.2 TLSv1.3"], VersionRange(V.TLSv1_2, V.TLSv1_3)),
        ([771, "1.3", "TLSv1.3"], VersionRange(V.TLSv1_2, V.TLSv1_3)),
    ],
)
def test_kong_ssl_protocols(value: object, expected: VersionRange) -> None:
    assert parse_ssl_protocols(value) == expected


def test_ssl_protocols_with_a_gap_is_rejected_naming_the_missing_version() -> None:
    with pytest.raises(ConfigError) as info:
        parse_ssl_protocols("TLSv1.1 TLSv1.3")
    (problem,) = info.value.problems
    assert problem.path == "ssl_protocols"
    assert "leaves out TLSv1.2" in problem.message


@pytest.mark.parametrize("value", ["", "  ", [], 772, None, {"TLSv1.2": True}, "TLSv1.2 TLSv9"])
def test_ssl_protocols_rejects_empty_and_malformed(value: object) -> None:
    with pytest.raises(ConfigError) as info:
        parse_ssl_protocols(value, path="x.ssl_protocols")
    assert [p.path for p in info.value.problems] == ["x.ssl_protocols"]


def test_range_round_trips_through_ssl_protocols() -> None:
    r = VersionRange(V.TLSv1_1, V.TLSv1_2)
    assert r.as_ssl_protocols() == "TLSv1.1 TLSv1.2"
    assert parse_ssl_protocols(r.as_ssl_protocols()) == r


def test_old_versions_only_when_asked_and_then_warned_about() -> None:
    r = parse_version_range("1.0", None, minimum_path="a", maximum_path="b")
    assert r == VersionRange(V.TLSv1, V.TLSv1_3)
    assert [w.split()[0] for w in r.warnings()] == ["TLSv1", "TLSv1.1"]
    assert all("insecure" in w for w in r.warnings())


def test_parse_version_range_defaults_missing_ends() -> None:
    assert (
        parse_version_range(None, None, minimum_path="a", maximum_path="b") == DEFAULT_VERSION_RANGE
    )
    assert parse_version_range(None, "1.2", minimum_path="a", maximum_path="b") == VersionRange(
        V.TLSv1_2, V.TLSv1_2
    )


def test_inverted_range_is_rejected_at_load_time() -> None:
    with pytest.raises(ConfigError) as info:
        parse_version_range(
            "1.3", "1.2", minimum_path="ssl_min_version", maximum_path="ssl_max_version"
        )
    (problem,) = info.value.problems
    assert problem.path == "ssl_min_version"
    assert "TLSv1.3" in problem.message and "TLSv1.2" in problem.message


def test_inverted_by_the_maximum_alone_names_the_maximum() -> None:
    with pytest.raises(ConfigError) as info:
        parse_version_range(None, "1.1", minimum_path="lo", maximum_path="hi")
    assert [p.path for p in info.value.problems] == ["hi"]


def test_the_dataclass_validates_on_construction() -> None:
    with pytest.raises(ConfigError):
        VersionRange(V.TLSv1_3, V.TLSv1_2)
    with pytest.raises(ConfigError):
        VersionRange(V.SSLv3, V.TLSv1_2)
    with pytest.raises(ConfigError):
        VersionRange(V.TLSv1_2, V.MAXIMUM_SUPPORTED)


def test_range_helpers() -> None:
    r = VersionRange(V.TLSv1_3, V.TLSv1_3)
    assert r.includes(V.TLSv1_3) and not r.includes(V.TLSv1_2)
    assert r.describe() == "TLSv1.3 only"
    assert version_name(V.TLSv1) == "TLSv1"
    assert hash(r) == hash(VersionRange(V.TLSv1_3, V.TLSv1_3))
