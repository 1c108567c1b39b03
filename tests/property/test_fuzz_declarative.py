"""Bounded runs of the fuzz target ``declarative`` (see ``fuzz/README.md``).

Invariant (``fuzz/targets/declarative_config.py``): any text gives entities or
``ConfigError`` from the loader, and whatever loads compiles into a snapshot or
``ConfigError`` — nothing else.
"""

from __future__ import annotations

import sys
from pathlib import Path

from hypothesis import example, given
from hypothesis import strategies as st

# fuzz/ is a source-tree package next to tests/, not installed with trio_gw.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from fuzz.strategies import mutated
from fuzz.targets import declarative_config as target


@given(mutated(st.sampled_from(list(target.SEEDS.values()))))
@example(b"[" * 5000)
@example(b'_format_version: "3.0"\nx: &a {name: s, host: h}\nservices: [' + b",".join([b"*a"] * 200) + b"]\n")
def test_mutated_documents(data: bytes) -> None:
    target.fuzz_one(data)


@given(st.binary(max_size=300))
def test_any_bytes(data: bytes) -> None:
    target.fuzz_one(data)
