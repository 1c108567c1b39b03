"""Bounded runs of the fuzz target ``pki-parse`` (see ``fuzz/README.md``).

Invariant (``fuzz/targets/pki_parse.py``): any bytes give certificates or
``CertificateError`` (and keys or ``CertificateError``), nothing else; parsed
certificates can always be fingerprinted, pinned and described.  Hypothesis
mutates real certificates and keys in every encoding (generated at run time).
"""

from __future__ import annotations

import sys
from pathlib import Path

from hypothesis import example, given
from hypothesis import strategies as st

# fuzz/ is a source-tree package next to tests/, not installed with trio_gw.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from fuzz.strategies import mutated
from fuzz.targets import pki_parse as target

_GENERATED = sorted(target.generated_seeds().items())
_SEEDS = [data for _, data in _GENERATED] + list(target.SEEDS.values())


@given(mutated(st.sampled_from(_SEEDS)))
@example(target.SEEDS["legacy-headers"])
def test_mutated_certificates_and_keys(data: bytes) -> None:
    target.fuzz_one(data)


@given(st.binary(max_size=400))
def test_any_bytes(data: bytes) -> None:
    target.fuzz_one(data)


def test_generated_seeds_parse() -> None:
    """The seeds are real: every certificate encoding parses to the same fingerprint."""
    fingerprints = {name: target._certificates(data) for name, data in _GENERATED if ".key" not in name}
    for name, result in fingerprints.items():
        assert isinstance(result, list), (name, result)
    assert fingerprints["rsa.der"] == fingerprints["rsa.pem"] == fingerprints["rsa.url"] == fingerprints["rsa.b64"]
