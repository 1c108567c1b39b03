"""Bounded runs of the fuzz target ``http-guards`` (see ``fuzz/README.md``).

Invariant (``fuzz/targets/http_guards.py``): any bytes give h11 events,
``h11.RemoteProtocolError`` or ``RequestRejected``, nothing else, and the same
requests, verdicts and body bytes whether fed in one chunk or byte by byte.
"""

from __future__ import annotations

import sys
from pathlib import Path

from hypothesis import example, given
from hypothesis import strategies as st

# fuzz/ is a source-tree package next to tests/, not installed with trio_gw.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from fuzz.strategies import http_traffic
from fuzz.targets import http_guards as target


@given(http_traffic(max_requests=4))
@example(target.SEEDS["obs-fold"])
@example(target.SEEDS["bare-lf"])
@example(b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n")
def test_mutated_requests(data: bytes) -> None:
    target.fuzz_one(data)


@given(st.binary(max_size=300))
def test_any_bytes(data: bytes) -> None:
    target.fuzz_one(data)


def test_seeds_reach_the_guards() -> None:
    verdicts = {name: target.feed(data, step=None).requests[0][2] for name, data in target.SEEDS.items()
                if target.feed(data, step=None).requests}
    assert verdicts["cl-te"] == "400 cl_te_conflict"
    assert verdicts["ctl-in-value"] == "400 invalid_header"
    assert verdicts["get"] == "ok"
