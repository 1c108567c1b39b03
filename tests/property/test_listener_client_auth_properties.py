"""Invariants of ``ListenerClientAuth.asks_for`` (which handshakes are asked for a client certificate).

- It agrees with the router: an SNI is asked exactly when, as a Host header,
  it matches one of the patterns (``HostPattern.matches``), whatever the case
  or a trailing dot; no SNI is always asked.
- A listener that requests nothing never asks; one that requires a
  certificate, or has no host list (every host), always asks.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from trio_gw.http._candidates import parse_host_pattern
from trio_gw.tls.listener_client_auth import NO_CLIENT_AUTH, ListenerClientAuth

ANCHOR = "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----"
labels = st.sampled_from(["a", "b", "ex", "com", "x-y", "1", "api"])
names = st.lists(labels, min_size=1, max_size=4).map(".".join)
patterns = st.one_of(
    names,
    st.lists(labels, min_size=2, max_size=3).map(lambda ls: "*." + ".".join(ls)),
    st.lists(labels, min_size=1, max_size=3).map(lambda ls: ".".join(ls) + ".*"),
)
sni_forms = st.tuples(names, st.booleans(), st.booleans()).map(
    lambda t: (t[0].upper() if t[1] else t[0]) + ("." if t[2] else ""))


def router_matches(pattern_texts: list[str], sni: str) -> bool:
    host = sni.lower()
    host = host[:-1] if host.endswith(".") else host
    return any(parse_host_pattern(p).matches(host, 443) for p in pattern_texts)


@given(st.lists(patterns, max_size=6), sni_forms)
def test_asks_exactly_when_the_router_would_match(hosts: list[str], sni: str) -> None:
    auth = ListenerClientAuth.build([ANCHOR], partial_chain=False, hosts=hosts)
    assert auth.asks_for(sni) == router_matches(hosts, sni)
    assert auth.asks_for(None) and auth.asks_for("")


@given(st.lists(patterns, min_size=1, max_size=6), st.data())
def test_a_sni_matching_any_pattern_is_asked(hosts: list[str], data: st.DataObject) -> None:
    pattern = data.draw(st.sampled_from(hosts))
    fill = data.draw(names)
    sni = pattern.replace("*", fill)  # "*.b.com" -> "fill.b.com", "a.*" -> "a.fill"
    auth = ListenerClientAuth.build([ANCHOR], partial_chain=False, hosts=hosts)
    assert auth.asks_for(sni) and auth.asks_for(sni.upper() + ".")


@given(st.one_of(st.none(), st.lists(patterns, max_size=4)), st.one_of(st.none(), sni_forms))
def test_never_asks_without_a_request_and_always_with_a_requirement(hosts: list[str] | None, sni: str | None) -> None:
    assert not NO_CLIENT_AUTH.asks_for(sni)
    frozen = None if hosts is None else frozenset(hosts)
    assert not ListenerClientAuth(request_certificate=False, certificate_hosts=frozen).asks_for(sni)
    required = ListenerClientAuth.build([ANCHOR], partial_chain=False, hosts=hosts, require_certificate=True)
    assert required.asks_for(sni)
    by_hand = ListenerClientAuth(request_certificate=True, require_certificate=True, certificate_hosts=frozen)
    assert by_hand.asks_for(sni)
    assert ListenerClientAuth.build([ANCHOR], partial_chain=False, hosts=None).asks_for(sni)
