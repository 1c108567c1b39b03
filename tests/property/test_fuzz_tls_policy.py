"""Bounded runs of the fuzz target ``tls-policy`` (see ``fuzz/README.md``).

Invariant (``fuzz/targets/tls_policy.py``): any setting values give a policy or
``ConfigError``, and a downstream policy that parses can be applied to a real
``SSLContext`` by the gateway's context builder.
"""

from __future__ import annotations

import sys
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

# fuzz/ is a source-tree package next to tests/, not installed with trio_gw.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from fuzz.strategies import mutated
from fuzz.targets import tls_policy as target
from trio_gw.tls.ciphers import CIPHER_TABLE

_WORDS = sorted({s.iana_name for s in CIPHER_TABLE} | {s.openssl_name for s in CIPHER_TABLE}
                | {"ALL", "DEFAULT", "!aNULL", "@SECLEVEL=0", "eNULL", "nonsense"})
_VALUES = st.sampled_from(["", "on", "off", "1.2", "1.3", "TLSv1", "TLSv1.1", "TLSv1.2 TLSv1.3", "771", "SSLv3",
                           "modern", "intermediate", "old", "custom", "1d", "5m", "0", "-1", "1e999"])
_CIPHERS = st.lists(st.sampled_from(_WORDS), max_size=4).map(lambda ws: ":".join(ws))


@st.composite
def _settings(draw: st.DrawFn) -> bytes:
    down = [draw(_VALUES) for _ in range(8)]
    down[4] = draw(_CIPHERS | _VALUES)
    up = [draw(_VALUES), draw(_VALUES), draw(_CIPHERS), draw(_VALUES)]
    return ("|".join(down) + "#" + "|".join(up)).encode()


@given(_settings())
def test_setting_combinations(data: bytes) -> None:
    target.fuzz_one(data)


@given(mutated(st.sampled_from(list(target.SEEDS.values()))))
def test_mutated_seeds(data: bytes) -> None:
    target.fuzz_one(data)
