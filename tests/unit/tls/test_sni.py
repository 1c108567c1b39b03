"""SNI certificate selection: the merged Kong + Tyk rules of trio_gw.tls.sni."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import pytest
import trustme
from cryptography import x509
from cryptography.x509.oid import NameOID

from trio_gw.errors import ConfigError
from trio_gw.testing.pki import Issued, cn_only_leaf
from trio_gw.tls.sni import (
    SniCandidate,
    SniIndex,
    SniRule,
    SniScope,
    SniSelection,
    select_certificate,
)

GLOBAL = SniScope.GLOBAL
DOMAIN = SniScope.CUSTOM_DOMAIN


def _select(index: SniIndex, name: str | None) -> tuple[str, str] | None:
    found = select_certificate(index, name)
    return None if found is None else (found.certificate_id, found.rule.value)


@pytest.fixture
def kong_index() -> SniIndex:
    return SniIndex.build(
        [
            SniCandidate("exact", ("api.example.com",), order=5),
            SniCandidate("left", ("*.example.com",), order=4),
            SniCandidate("right", ("api.example.*", "example.*"), order=3),
            SniCandidate("star", ("*",), order=2),
        ],
        ["ssl-cert"],
    )


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("api.example.com", ("exact", "exact")),  # exact beats *.example.com and api.example.*
        ("www.example.com", ("left", "wildcard_left")),
        ("api.example.org", ("right", "wildcard_right")),
        ("example.net", ("right", "wildcard_right")),
        ("a.b.example.com", ("star", "catch_all")),  # * covers one label only
        ("example.com", ("right", "wildcard_right")),  # not the apex of *.example.com
        ("unknown.test", ("star", "catch_all")),
        (None, ("star", "catch_all")),
    ],
)
def test_kong_order(kong_index: SniIndex, name: str | None, expected: tuple[str, str]) -> None:
    assert _select(kong_index, name) == expected


@pytest.mark.parametrize(
    "name", ["API.EXAMPLE.COM", "api.example.com.", "Api.Example.Com.", "ＡＰＩ.example.com"]
)
def test_case_and_trailing_dot_are_ignored(kong_index: SniIndex, name: str) -> None:
    assert _select(kong_index, name) == ("exact", "exact")


def test_idna_names_in_config_and_input() -> None:
    index = SniIndex.build([SniCandidate("idn", ("bücher.example", "*.bücher.example"))])
    assert select_certificate(index, "xn--bcher-kva.example") == SniSelection(
        "idn", SniRule.EXACT, "xn--bcher-kva.example"
    )
    assert select_certificate(index, "BÜCHER.example.") == SniSelection(
        "idn", SniRule.EXACT, "xn--bcher-kva.example"
    )
    assert _select(index, "shop.xn--bcher-kva.example") == ("idn", "wildcard_left")


def test_selection_reports_the_matched_name(kong_index: SniIndex) -> None:
    assert select_certificate(kong_index, "WWW.example.com") == SniSelection(
        "left", SniRule.WILDCARD_LEFT, "*.example.com"
    )
    assert select_certificate(kong_index, "example.net") == SniSelection(
        "right", SniRule.WILDCARD_RIGHT, "example.*"
    )
    assert select_certificate(kong_index, "zzz") == SniSelection("star", SniRule.CATCH_ALL, "*")


def test_default_then_first_configured() -> None:
    candidates = [
        SniCandidate("api", ("api.example.com",), order=2),
        SniCandidate("old", ("old.example.com",), order=1),
        SniCandidate("tied", ("tied.example.com",), order=1),
        SniCandidate("bound", (), ("x.example.org",), DOMAIN, order=0),
    ]
    with_default = SniIndex.build(candidates, ["ssl-rsa", "ssl-ecdsa"])
    assert select_certificate(with_default, "nope.test") == SniSelection("ssl-rsa", SniRule.DEFAULT)
    assert select_certificate(with_default, None) == SniSelection("ssl-rsa", SniRule.DEFAULT)
    # Tyk: no match and no ssl_cert → the first configured certificate; global
    # ones first (a custom-domain certificate is not everybody's default), ties by id.
    without = SniIndex.build(candidates)
    assert select_certificate(without, "nope.test") == SniSelection("old", SniRule.FIRST_CONFIGURED)
    only_bound = SniIndex.build(candidates[3:])
    assert _select(only_bound, None) == ("bound", "first_configured")


def test_nothing_configured_selects_nothing() -> None:
    index = SniIndex.build([])
    assert select_certificate(index, "api.example.com") is None
    assert select_certificate(index, None) is None


@pytest.mark.parametrize("name", [None, "127.0.0.1", "::1", "bad name!", "", "a" * 300])
def test_no_usable_name_gets_the_fallback(name: str | None) -> None:
    index = SniIndex.build([SniCandidate("api", ("api.example.com",))], ["ssl"])
    assert _select(index, name) == ("ssl", "default")


def test_strict_mode() -> None:
    candidates = [SniCandidate("api", ("api.example.com",)), SniCandidate("saned", (), ("b.example.org",))]
    strict = SniIndex.build(candidates, ["ssl"], strict=True)
    assert strict.strict
    assert _select(strict, "api.example.com") == ("api", "exact")
    assert _select(strict, "b.example.org") == ("saned", "san")
    assert select_certificate(strict, "other.example.com") is None
    assert select_certificate(strict, None) is None
    assert select_certificate(strict, "127.0.0.1") is None
    assert select_certificate(strict, "garbage name") is None


def test_strict_mode_keeps_an_explicit_catch_all_for_named_clients() -> None:
    index = SniIndex.build([SniCandidate("star", ("*",))], ["ssl"], strict=True)
    assert _select(index, "anything.example") == ("star", "catch_all")
    assert select_certificate(index, None) is None


# --- Tyk: certificates without SNI entities are selected by their SAN/CN ---


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def _cert_names(cert: trustme.LeafCert | Issued) -> tuple[str, ...]:
    """dNSNames of a real certificate, or its CN when it has none (RFC 6125 §6.4.4)."""
    if isinstance(cert, Issued):
        parsed = cert.cert
    else:
        parsed = x509.load_pem_x509_certificate(cert.cert_chain_pems[0].bytes())
    try:
        ext = parsed.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        dns = ext.value.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        dns = []
    if dns:
        return tuple(dns)
    return tuple(str(a.value) for a in parsed.subject.get_attributes_for_oid(NameOID.COMMON_NAME))


def test_san_and_cn_selection_with_real_certificates(ca: trustme.CA) -> None:
    wildcard = ca.issue_cert("*.apps.example.com", "apps.example.com")
    # trustme would give it an empty SAN (refused by cryptography 51): built with cryptography
    cn_only = cn_only_leaf(Issued.from_trustme(ca), "Legacy.Example")
    multi = ca.issue_cert("a.example.net", "b.example.net", "127.0.0.1")
    assert _cert_names(cn_only) == ("Legacy.Example",)
    index = SniIndex.build(
        [
            SniCandidate("wildcard", (), _cert_names(wildcard), order=1),
            SniCandidate("cn-only", (), _cert_names(cn_only), order=2),
            SniCandidate("multi", (), _cert_names(multi), order=3),
        ]
    )
    assert select_certificate(index, "shop.apps.example.com") == SniSelection(
        "wildcard", SniRule.SAN, "*.apps.example.com"
    )
    assert _select(index, "apps.example.com") == ("wildcard", "san")
    assert _select(index, "legacy.example") == ("cn-only", "san")
    assert _select(index, "b.example.net") == ("multi", "san")
    assert _select(index, "x.y.apps.example.com") == ("wildcard", "first_configured")


def test_san_is_ignored_when_the_certificate_has_sni_entities() -> None:
    index = SniIndex.build(
        [SniCandidate("explicit", ("api.example.com",), ("other.example.com",)), SniCandidate("x", ("*",))]
    )
    assert _select(index, "other.example.com") == ("x", "catch_all")


def test_sni_entities_beat_san_and_san_beats_catch_all() -> None:
    index = SniIndex.build(
        [
            SniCandidate("entity-wildcard", ("*.example.com",)),
            SniCandidate("san-exact", (), ("api.example.com", "api.example.org")),
            SniCandidate("star", ("*",)),
        ]
    )
    assert _select(index, "api.example.com") == ("entity-wildcard", "wildcard_left")
    assert _select(index, "api.example.org") == ("san-exact", "san")
    assert _select(index, "www.example.org") == ("star", "catch_all")


def test_san_precedence_exact_then_custom_domain_then_order() -> None:
    index = SniIndex.build(
        [
            SniCandidate("global-exact", (), ("api.example.com",), GLOBAL, order=9),
            SniCandidate("domain-wild", (), ("*.example.com",), DOMAIN, order=1),
            SniCandidate("global-wild", (), ("*.example.com",), GLOBAL, order=0),
            SniCandidate("domain-shop", (), ("shop.example.com",), DOMAIN, order=7),
            SniCandidate("global-shop", (), ("shop.example.com",), GLOBAL, order=0),
            SniCandidate("late-twin", (), ("twin.example.com",), GLOBAL, order=8),
            SniCandidate("early-twin", (), ("twin.example.com",), GLOBAL, order=3),
        ]
    )
    assert _select(index, "api.example.com") == ("global-exact", "san")  # exact before wildcard
    assert _select(index, "www.example.com") == ("domain-wild", "san")  # custom domain first
    assert _select(index, "shop.example.com") == ("domain-shop", "san")
    assert _select(index, "twin.example.com") == ("early-twin", "san")  # then lowest order
    assert any("twin.example.com" in w and "'early-twin' is served" in w for w in index.warnings)
    assert not any("shop.example.com" in w for w in index.warnings)  # scope settles it


def test_unusable_san_entries_are_skipped_with_a_warning() -> None:
    index = SniIndex.build(
        [SniCandidate("c", (), ("*.com", "f*o.example.com", "example.*", "10.0.0.1", "ok.example.com", "bad name"))]
    )
    assert _select(index, "ok.example.com") == ("c", "san")
    assert _select(index, "foo.example.com") == ("c", "first_configured")
    assert len(index.warnings) == 5
    assert all(w.startswith("certificate 'c': SAN ") for w in index.warnings)


# --- building: every configuration problem is reported, with both certificates named ---


def test_duplicate_sni_names_name_both_certificates() -> None:
    with pytest.raises(ConfigError) as info:
        SniIndex.build(
            [
                SniCandidate("b", ("API.example.com.", "*.Example.com")),
                SniCandidate("a", ("api.example.com", "*.example.com", "*")),
                SniCandidate("c", ("*",)),
            ]
        )
    messages = [p.message for p in info.value.problems]
    assert messages == [
        "SNI 'api.example.com' is bound to both certificate 'a' and 'b'",
        "SNI '*.example.com' is bound to both certificate 'a' and 'b'",
        "SNI '*' is bound to both certificate 'a' and 'c'",
    ]
    assert info.value.problems[0].path == "certificates[b].snis[0]"


@pytest.mark.parametrize(
    ("names", "fragment"),
    [
        (("api.example.com", "API.example.com"), "listed twice"),
        (("*", "*"), "listed twice"),
        (("*.com",), "at least two labels"),
        (("f*o.example.com",), "whole leftmost or rightmost label"),
        (("*foo.example.com",), "whole leftmost or rightmost label"),
        (("a.*.example.com",), "whole leftmost or rightmost label"),
        (("*.example.*",), "only one wildcard"),
        (("10.0.0.1",), "must not be an IP"),
        (("*.10.0.0.1",), "must not be an IP"),
        (("api.example.com:443",), "port"),
        (("",), "empty"),
        (("*.",), "empty"),
        (("bad name.example",), "characters"),
    ],
)
def test_invalid_sni_names(names: tuple[str, ...], fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment) as info:
        SniIndex.build([SniCandidate("cert-1", names)])
    assert info.value.problems[-1].path.startswith("certificates[cert-1].snis[")


def test_all_problems_are_reported_at_once() -> None:
    with pytest.raises(ConfigError) as info:
        SniIndex.build(
            [SniCandidate("", ("x.example",)), SniCandidate("a", ("*.com", "a:1")), SniCandidate("a", ())],
            ["ssl", "ssl", ""],
        )
    paths = [p.path for p in info.value.problems]
    assert paths == [
        "certificates[0]",
        "certificates[a].snis[0]",
        "certificates[a].snis[1]",
        "certificates[a]",
        "ssl_cert[1]",
        "ssl_cert[2]",
    ]


def test_select_never_raises_on_hostile_input(kong_index: SniIndex) -> None:
    for name in ["\x00", "\ud800", "a" * 100_000, "..", "*", "*.example.com", "ex\u2024ample.com", "[::1]", "é" * 500]:
        found = select_certificate(kong_index, name)
        assert found is not None and found.rule is SniRule.CATCH_ALL


# --- cost: selection touches a constant number of dict entries ---


class CountingDict(dict[str, Any]):
    lookups = 0

    def get(self, key: str, default: Any = None) -> Any:
        CountingDict.lookups += 1
        return super().get(key, default)

    def __getitem__(self, key: str) -> Any:
        CountingDict.lookups += 1
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        CountingDict.lookups += 1
        return super().__contains__(key)


def _counting(index: SniIndex) -> SniIndex:
    changes: dict[str, Any] = {}
    for f in dataclasses.fields(index):
        value = getattr(index, f.name)
        if isinstance(value, Mapping):
            changes[f.name] = CountingDict(value)
    return dataclasses.replace(index, **changes)


def _index_of(size: int) -> SniIndex:
    candidates = []
    for i in range(size):
        candidates.append(SniCandidate(f"e{i}", (f"host{i}.example.com", f"*.zone{i}.example.com", f"brand{i}.*")))
        candidates.append(SniCandidate(f"s{i}", (), (f"san{i}.example.org", f"*.sanzone{i}.example.org")))
    return SniIndex.build(candidates, ["ssl"])


QUERIES = [
    "host3.example.com",
    "x.zone3.example.com",
    "brand3.net",
    "san3.example.org",
    "x.sanzone3.example.org",
    "miss.example.com",
    "a.b.c.d.e.f.g.h",
    None,
]


def test_selection_work_does_not_grow_with_the_number_of_certificates() -> None:
    per_size = {}
    for size in (10, 3000):
        index = _counting(_index_of(size))
        # Only plain dicts and a few scalars: no list is scanned at selection time.
        for f in dataclasses.fields(index):
            assert isinstance(getattr(index, f.name), (CountingDict, SniSelection, bool, tuple, type(None)))
        counts = []
        for name in QUERIES:
            CountingDict.lookups = 0
            assert select_certificate(index, name) is not None
            counts.append(CountingDict.lookups)
        per_size[size] = counts
    assert per_size[10] == per_size[3000]
    assert max(per_size[3000]) <= 5
