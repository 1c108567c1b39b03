"""Bounded runs of the fuzz target ``forwarded-cert`` (see ``fuzz/README.md``).

Invariant (``fuzz/targets/forwarded_cert.py``): any header value(s), in any
format (base64, URL-encoded PEM with the AWS ALB quirks, RFC 9440, Envoy XFCC
first or last element), give a ``ForwardedCertificate`` or
``ForwardedCertificateError``, nothing else; what parses is made of
certificates that re-encode to the same DER, and formatted again in every
format it parses back to the same DER.  Hypothesis mutates real certificates
(EC chain, RSA, Ed25519; generated at run time) in every header format, and
builds XFCC elements from quoting and escaping edge cases.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Literal

from hypothesis import example, given
from hypothesis import strategies as st

# fuzz/ is a source-tree package next to tests/, not installed with trio_gw.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from fuzz.strategies import mutated
from fuzz.targets import forwarded_cert as target
from trio_gw.testing.pki import Issued, chain_of_depth, issue
from trio_gw.tls.forwarded_cert import (
    ForwardedCertificate,
    format_client_cert_chain_rfc9440,
    format_client_cert_rfc9440,
    format_xfcc,
    parse_forwarded_certificate,
)

_GENERATED = sorted(target.generated_seeds().items())
_SEEDS = [data for _, data in _GENERATED] + list(target.SEEDS.values())

_ROOT_LEAF = chain_of_depth(1)
#: A leaf with names that need XFCC quoting and escaping in Subject, URI and DNS.
_AWKWARD = issue(_ROOT_LEAF.parents[0], 'a,b;c="d"\\e.example', common_name='CN "quoted", \\ back;slash',
                 uris=["spiffe://td/ns/a;b=c,d", 'urn:x:"q"'])
_LEAVES = [_ROOT_LEAF, _AWKWARD]


@given(mutated(st.sampled_from(_SEEDS)))
@example(target.SEEDS["xfcc-unterminated"])
@example(target.SEEDS["rfc9440-params"])
def test_mutated_headers(data: bytes) -> None:
    target.fuzz_one(data)


@given(st.binary(max_size=400))
def test_any_bytes(data: bytes) -> None:
    target.fuzz_one(data)


_XFCC_TOKENS = st.sampled_from(['"', "\\", ",", ";", "=", " ", "Cert", "cert", "Hash", "Chain", "By", "x", "%2D",
                                "-----BEGIN CERTIFICATE-----", "\t"])


@given(st.lists(_XFCC_TOKENS, max_size=24).map("".join), st.sampled_from(_GENERATED[:3]))
def test_xfcc_token_soup_around_a_real_element(soup: str, seed: tuple[str, bytes]) -> None:
    """Separators and quotes before and after a real XFCC element."""
    element = format_xfcc(_ROOT_LEAF.cert_der())
    for value in (soup + element, element + soup, soup + "," + element, element + "," + soup):
        target.fuzz_one(target.encode_input("xfcc", value.encode("latin-1")))
    target.fuzz_one(seed[1])


@given(
    leaf=st.sampled_from(_LEAVES),
    by=st.none() | st.text(max_size=20),
    include=st.lists(st.booleans(), min_size=5, max_size=5),
    hops=st.lists(st.sampled_from(_LEAVES), max_size=3),
    first=st.booleans(),
)
def test_format_xfcc_round_trip(
    leaf: Issued, by: str | None, include: list[bool], hops: list[Issued], first: bool
) -> None:
    """``format_xfcc`` output, among other hops' elements, parses back to the same DER (any ``by``)."""
    leaf_der = leaf.cert_der()
    chain = [p.cert_der() for p in leaf.parents[:-1]]
    hash_, subject, uri, dns, with_chain = include
    element = format_xfcc(leaf_der, chain, by=by, include_hash=hash_, include_subject=subject, include_uri=uri,
                          include_dns=dns, include_chain=with_chain)
    others = [format_xfcc(h.cert_der()) for h in hops]
    value = ",".join([element, *others] if first else [*others, element])
    found = parse_forwarded_certificate(value, "xfcc", xfcc_element="first" if first else "last")
    assert found == ForwardedCertificate(leaf_der, tuple(chain) if with_chain else ())


def test_rfc9440_round_trip() -> None:
    for leaf in _LEAVES:
        chain = [p.cert_der() for p in leaf.parents]
        found = parse_forwarded_certificate(format_client_cert_rfc9440(leaf.cert_der()), "rfc9440",
                                            chain_value=format_client_cert_chain_rfc9440(chain))
        assert found == ForwardedCertificate(leaf.cert_der(), tuple(chain))


def test_generated_seeds_parse() -> None:
    """The seeds are real: every encoding of a certificate gives its leaf (XFCC first and last alike)."""
    leaves: dict[str, set[bytes]] = {}
    for name, data in _GENERATED:
        if "." not in name:
            continue
        fmt, value, chain = target.decode_input(data)
        elements: tuple[Literal["first", "last"], ...] = ("first", "last")
        for element in elements:
            found = target.parse(value, fmt, chain, element)
            assert found is not None, (name, element)
            leaves.setdefault(name.split(".")[0], set()).add(found.leaf_der)
    assert set(leaves) == {"ec", "rsa", "ed25519"}
    assert all(len(ders) == 1 for ders in leaves.values()), leaves.keys()
    seeds = dict(_GENERATED)
    fmt, value, _ = target.decode_input(seeds["xfcc-two-hops"])
    first, last = target.parse(value, fmt, None, "first"), target.parse(value, fmt, None, "last")
    assert first is not None and last is not None and first.leaf_der != last.leaf_der
    fmt, value, _ = target.decode_input(seeds["xfcc-hash-mismatch"])
    assert target.parse(value, fmt) is None
