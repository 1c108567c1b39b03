"""Properties of SNI selection, checked against a brute-force reference.

The reference scans every candidate for every rule, in the documented order
(trio_gw/tls/sni.py), using only trio_gw.tls.hostname's matching functions; the
index must agree with it on every name while doing dict lookups only.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from hypothesis import assume, example, given
from hypothesis import strategies as st

from trio_gw.tls.hostname import (
    InvalidServerName,
    is_ip_literal,
    matches_wildcard,
    normalize_server_name,
)
from trio_gw.tls.sni import (
    SniCandidate,
    SniIndex,
    SniRule,
    SniScope,
    SniSelection,
    select_certificate,
)

# A small alphabet of labels makes collisions between names, wildcards and
# queries likely, which is where the rules interact.
LABELS = st.sampled_from(["a", "b", "api", "www", "example", "com", "xn--bcher-kva", "1"])
# all-numeric names like "1.1.1.1" are IP literals, which SNI entities may not be
NAME = st.lists(LABELS, min_size=1, max_size=4).map(".".join).filter(lambda n: not is_ip_literal(n))
BASE = st.lists(LABELS, min_size=2, max_size=3).map(".".join)
SNI_ENTITY = st.one_of(
    NAME,
    BASE.map(lambda b: "*." + b),
    NAME.map(lambda n: n + ".*"),
    st.just("*"),
)
SAN_NAME = st.one_of(NAME, BASE.map(lambda b: "*." + b))


@dataclass(frozen=True)
class Config:
    candidates: tuple[SniCandidate, ...]
    defaults: tuple[str, ...]
    strict: bool


@st.composite
def configs(draw: st.DrawFn) -> Config:
    entities = draw(st.lists(SNI_ENTITY, unique=True, max_size=10))
    count = draw(st.integers(1, 6))
    owners = draw(st.lists(st.integers(0, count - 1), min_size=len(entities), max_size=len(entities)))
    candidates = []
    for i in range(count):
        names = tuple(e for e, owner in zip(entities, owners) if owner == i)
        sans: tuple[str, ...] = tuple(draw(st.lists(SAN_NAME, max_size=3)))
        if draw(st.booleans()) and names:
            sans = ()  # SANs of certificates with SNI entities are ignored; sometimes drop them
        scope = draw(st.sampled_from(SniScope))
        candidates.append(SniCandidate(f"c{i}", names, sans, scope, draw(st.integers(0, 3))))
    defaults = tuple(draw(st.lists(st.sampled_from(["ssl-rsa", "ssl-ecdsa"]), unique=True, max_size=2)))
    return Config(tuple(candidates), defaults, draw(st.booleans()))


QUERY = st.one_of(
    NAME,
    NAME.map(str.upper),
    NAME.map(lambda n: n + "."),
    st.sampled_from(["127.0.0.1", "::1", "", "bad name", "*.a.b"]),
    st.none(),
)


def _key(c: SniCandidate) -> tuple[bool, int, str]:
    return (c.scope is not SniScope.CUSTOM_DOMAIN, c.order, c.certificate_id)


def reference(config: Config, server_name: str | None) -> SniSelection | None:
    """Linear scan of the documented rules; slow and obviously right."""
    cands = sorted(config.candidates, key=_key)
    name: str | None = None
    if server_name is not None:
        try:
            name = normalize_server_name(server_name)
        except InvalidServerName:
            name = None
        if name is not None and is_ip_literal(name):
            name = None
    catch_all = next((SniSelection(c.certificate_id, SniRule.CATCH_ALL, "*") for c in cands if "*" in c.names), None)
    if config.defaults:
        fallback: SniSelection | None = SniSelection(config.defaults[0], SniRule.DEFAULT)
    else:
        first = min(cands, key=lambda c: (c.scope is not SniScope.GLOBAL, c.order, c.certificate_id))
        fallback = SniSelection(first.certificate_id, SniRule.FIRST_CONFIGURED)
    if name is None:
        return None if config.strict else (catch_all or fallback)
    rules: list[tuple[SniRule, Callable[[str], bool]]] = [
        (SniRule.EXACT, lambda n: n == name),
        (SniRule.WILDCARD_LEFT, lambda n: n.startswith("*.") and matches_wildcard(n, name)),
        (SniRule.WILDCARD_RIGHT, lambda n: n.endswith(".*") and "." in name and n[:-2] == name.rsplit(".", 1)[0]),
    ]
    for rule, test in rules:
        for c in cands:
            for n in c.names:
                if test(n):
                    return SniSelection(c.certificate_id, rule, n)
    san_holders = [c for c in cands if not c.names]
    for wildcard in (False, True):
        for c in san_holders:
            for n in c.san_names:
                if n.startswith("*.") == wildcard and (
                    matches_wildcard(n, name) if wildcard else n == name
                ):
                    return SniSelection(c.certificate_id, SniRule.SAN, n)
    if catch_all is not None:
        return catch_all
    return None if config.strict else fallback


def build(config: Config) -> SniIndex:
    return SniIndex.build(config.candidates, config.defaults, strict=config.strict)


@given(configs(), QUERY)
@example(Config((SniCandidate("c0", ("*.a.b",)), SniCandidate("c1", ("a.b.*",))), (), False), "x.a.b")
@example(Config((SniCandidate("c0", ("*",)),), (), True), None)
def test_index_agrees_with_reference(config: Config, query: str | None) -> None:
    assert select_certificate(build(config), query) == reference(config, query)


@given(configs(), NAME)
def test_exact_beats_any_wildcard(config: Config, name: str) -> None:
    exact = SniCandidate("exact-cert", (name,), order=99)
    others = tuple(c for c in config.candidates if name not in c.names)
    config = Config((*others, exact), config.defaults, config.strict)
    assert select_certificate(build(config), name) == SniSelection("exact-cert", SniRule.EXACT, name)


@given(BASE, LABELS, LABELS)
def test_leftmost_wildcard_covers_exactly_one_label(base: str, first: str, second: str) -> None:
    assume(not is_ip_literal(f"{first}.{base}"))  # IP literals never match names
    index = SniIndex.build([SniCandidate("wild", ("*." + base,))], strict=True)
    assert select_certificate(index, f"{first}.{base}") == SniSelection(
        "wild", SniRule.WILDCARD_LEFT, "*." + base
    )
    assert select_certificate(index, base) is None
    assert select_certificate(index, f"{first}.{second}.{base}") is None


@given(configs(), st.randoms(use_true_random=False), st.lists(QUERY, max_size=8))
def test_candidate_order_does_not_matter(config: Config, rnd: random.Random, queries: list[str | None]) -> None:
    shuffled = list(config.candidates)
    rnd.shuffle(shuffled)
    a = build(config)
    b = build(Config(tuple(shuffled), config.defaults, config.strict))
    assert a == b
    for q in queries:
        assert select_certificate(a, q) == select_certificate(b, q)


@given(configs(), NAME)
def test_case_and_trailing_dot_variants_select_the_same(config: Config, name: str) -> None:
    index = build(config)
    expected = select_certificate(index, name)
    for variant in (name.upper(), name + ".", name.title() + ".", name.swapcase()):
        assert select_certificate(index, variant) == expected


@given(configs(), st.one_of(st.text(), st.text(alphabet=".*-_aA0:%\u3002\u2024ü", max_size=300)))
@example(Config((SniCandidate("c0", ("*",)),), (), False), "\ud800")
@example(Config((SniCandidate("c0", ("*",)),), (), False), "a" * 70_000)
def test_select_never_raises(config: Config, text: str) -> None:
    result = select_certificate(build(config), text)
    assert result is None or isinstance(result, SniSelection)


@given(st.text())
def test_normalize_gives_a_fixed_point_or_a_declared_error(text: str) -> None:
    try:
        canonical = normalize_server_name(text)
    except InvalidServerName:
        return
    assert normalize_server_name(canonical) == canonical
    assert canonical == canonical.lower() and canonical.isascii()
    assume(not is_ip_literal(canonical))
    assert len(canonical) <= 253 and all(0 < len(label) <= 63 for label in canonical.split("."))
