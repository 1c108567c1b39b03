"""Bounded runs of the fuzz target ``cert-upload`` (see ``fuzz/README.md``).

Invariant (``fuzz/targets/cert_upload.py``): any uploaded Certificate or CA
Certificate fields give an entity or ``ConfigError``, nothing else; every
problem names a field; no message and no ``redact_certificate`` output holds
private-key material; accepted entities are consistent (key matches leaf, CA
flag, digest, CRL issuer) and validating them again changes nothing.
Hypothesis combines a deterministic pool of real certificates, keys and CRLs
(valid pairs, mismatched keys, expired and future leaves, non-CAs, foreign and
forged CRLs, encrypted and unsupported keys) with byte patches inside their DER.
"""

from __future__ import annotations

import sys
from pathlib import Path

from hypothesis import example, given
from hypothesis import strategies as st

# fuzz/ is a source-tree package next to tests/, not installed with trio_gw.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from fuzz.strategies import mutated
from fuzz.targets import cert_upload as target
from trio_gw.errors import ConfigError
from trio_gw.model.certificates import (
    parse_ca_certificate_entity,
    parse_certificate_entity,
)

_GENERATED = sorted(target.generated_seeds().items())
_SEEDS = [data for _, data in _GENERATED] + list(target.SEEDS.values())
_POOL = len(target.pool())


@st.composite
def _reference(draw: st.DrawFn) -> bytes:
    """``@`` and a pool item, with up to two DER patches."""
    patches = draw(st.lists(st.tuples(st.integers(0, 0xFFFF), st.integers(0, 255)), max_size=2))
    return target.ref(target.pool()[draw(st.integers(0, _POOL - 1))].name, *patches)


_FIELD = st.one_of(
    st.just(b""),
    st.lists(_reference(), min_size=1, max_size=3).map(b"".join),
    st.sampled_from([b"#e", b"#n", b"#i", b"#b", b"#l", b"#d", b"a,,b", b"x.example", b"sha256:00"]),
    st.binary(max_size=12).map(lambda b: b.replace(b"|", b"/")),
)


@given(st.integers(0, 7), st.lists(_FIELD, min_size=1, max_size=len(target.FIELDS)),
       st.sampled_from([b"", b"", b"id", b"passphrase", b"snis.name", b"tags[0]"]))
def test_entities_from_the_pool(flags: int, fields: list[bytes], extra: bytes) -> None:
    target.fuzz_one(bytes([0x30 | flags]) + b"|".join([*fields, *([b""] * (len(target.FIELDS) - len(fields))),
                                                       extra]))


def _ca_with_patched_crl(position: int, value: int) -> bytes:
    return target.encode_input({"cert": target.ref("root"), "crls": target.ref("root.crl", (position, value))},
                               ca=True)


@given(mutated(st.sampled_from(_SEEDS)))
@example(target.SEEDS["types"])
@example(dict(_GENERATED)["valid-dual"])
@example(_ca_with_patched_crl(8, 0))  # was: x509.InvalidVersion (CRL version 0) escaped from _crls
@example(_ca_with_patched_crl(27, 0))  # was: ValueError from the lazily parsed CRL issuer name escaped
@example(_ca_with_patched_crl(29, 0xF4))  # likewise (an invalid issuer attribute value)
def test_mutated_seeds(data: bytes) -> None:
    target.fuzz_one(data)


@given(st.binary(max_size=200))
def test_any_bytes(data: bytes) -> None:
    target.fuzz_one(data)


def test_pool_is_deterministic() -> None:
    """An input means the same entity in every process, so findings reproduce."""
    assert target.build_pool() == target.pool()


def test_generated_seeds_reach_the_deep_checks() -> None:
    """The seeds are real: the valid ones pass, each broken one fails for its own reason."""
    outcomes = {}
    for name, data in _GENERATED:
        is_ca, now, raw = target.decode_input(data)
        parse = parse_ca_certificate_entity if is_ca else parse_certificate_entity
        try:
            parse(raw, now=now, id="seed")
        except ConfigError as exc:
            outcomes[name] = str(exc)
        else:
            outcomes[name] = "ok"
        target.fuzz_one(data)
    for name in ("valid-ec", "valid-dual", "valid-chain", "ca-valid", "ca-intermediate", "future", "cert-alb",
                 "expired-at-epoch"):
        assert outcomes[name] == "ok", (name, outcomes[name])
    expected = {
        "mismatched": "key: does not match",
        "key-of-intermediate": "matches certificate 2",
        "expired": "cert: certificate expired",
        "same-alt-type": "different key type",
        "encrypted-key": "encrypted",
        "x25519-key": "unsupported key type",
        "rsa-1024": "key: ",
        "key-in-cert": "must not contain a private key",
        "key-in-cert-b64": "must not contain a private key",
        "key-in-cert-url": "must not contain a private key",
        "ca-not-ca": "not a CA certificate",
        "ca-wrong-crl-issuer": "was not issued by this CA",
        "ca-crl-bad-signature": "does not verify",
        "ca-digest-mismatch": "cert_digest: does not match",
        "passphrase": "passphrase: unknown field",
    }
    for name, message in expected.items():
        assert message in outcomes[name], (name, outcomes[name])
