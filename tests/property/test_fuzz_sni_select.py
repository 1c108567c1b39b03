"""Bounded runs of the fuzz target ``sni-select`` (see ``fuzz/README.md``).

Invariant (``fuzz/targets/sni_select.py``): building an SNI index from any
names gives an index or ``ConfigError``; selection never raises, never picks an
unknown certificate, ignores ASCII case, and finds every exact configured name.
"""

from __future__ import annotations

import sys
from pathlib import Path

from hypothesis import example, given
from hypothesis import strategies as st

# fuzz/ is a source-tree package next to tests/, not installed with trio_gw.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from fuzz.strategies import mutated
from fuzz.targets import sni_select as target

_LABELS = st.sampled_from(["api", "example", "com", "*", "xn--bcher-kva", "b\u00fccher", "A", "a-", "_s", "1", "",
                           "wild", "\u3002", "\udcff", "127", "0", "::1", "[::1]", "x" * 64])
_NAMES = st.lists(_LABELS, min_size=1, max_size=4).map(".".join)


@given(st.lists(_NAMES, min_size=1, max_size=6).map(lambda names: "\n".join(names).encode("utf-8", "surrogateescape")))
@example(target.SEEDS["trailing-dot"])
@example(target.SEEDS["fullwidth-dot"])
def test_names_from_labels(data: bytes) -> None:
    target.fuzz_one(data)


@given(mutated(st.sampled_from(list(target.SEEDS.values()))))
def test_mutated_seeds(data: bytes) -> None:
    target.fuzz_one(data)


@given(st.binary(max_size=200))
def test_any_bytes(data: bytes) -> None:
    target.fuzz_one(data)
