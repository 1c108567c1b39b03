"""Bounded runs of the fuzz target ``upstream-h2`` (see ``fuzz/README.md``).

Invariant (``fuzz/targets/upstream_h2.py``): whatever an HTTP/2 upstream
answers, the real ``forward_h2`` relay ends with the answer relayed in order,
``UpstreamFailure`` (``ex.status`` 0 exactly when nothing was relayed) or
``ClientGone`` after the head — never another exception, never a hang — and a
pooled connection has no stream left open.  A GET or a POST whose body needs
flow-control credit, on a mock clock.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

# fuzz/ is a source-tree package next to tests/, not installed with trio_gw.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from fuzz.targets import upstream_h2 as target
from fuzz.targets._support import InvariantViolation, pick

OPS = [b"H", b"D", b"T", b"E", b"R", b"G", b"P", b"W", b"S", b"Z", b"X"]
programs = st.builds(
    lambda ops, tail: b"".join(ops) + tail,
    st.lists(st.builds(lambda op, args: op + args.encode(), st.sampled_from(OPS),
                       st.text(alphabet="0123456789", max_size=6)), max_size=12),
    st.binary(max_size=24),
)


@given(programs)
@example(target.SEEDS["goaway-after"])  # was: h2's ProtocolError for DATA after a GOAWAY escaped the relay
@example(b"S0H010")  # the upstream opens no window for the body (POST): the write deadline ends it
def test_programs_give_an_answer_or_a_declared_failure(data: bytes) -> None:
    target.fuzz_one(data)


@given(st.binary(max_size=200))
def test_any_bytes_give_an_answer_or_a_declared_failure(data: bytes) -> None:
    target.fuzz_one(data)


@pytest.mark.parametrize("name", sorted(target.SEEDS))
def test_every_seed_holds(name: str) -> None:
    target.fuzz_one(target.SEEDS[name])


def test_the_goaway_during_an_upload_input_is_a_post() -> None:
    """The pinned input exercises the upload path (the request kind is derived from the input)."""
    assert pick(target.SEEDS["goaway-after"], 2) == 1


def test_the_invariant_catches_a_relay_that_breaks_it(monkeypatch: pytest.MonkeyPatch) -> None:
    async def answers_twice(upstream, fwd, body, sink, plan, ex, pool):  # type: ignore[no-untyped-def]
        sink.head(200, [], b"OK")
        sink.head(200, [], b"OK")
        return True

    monkeypatch.setattr(target, "forward_h2", answers_twice)
    with pytest.raises(InvariantViolation, match="a second head"):
        target.fuzz_one(target.SEEDS["ok"])


def test_the_invariant_catches_an_undeclared_exception(monkeypatch: pytest.MonkeyPatch) -> None:
    async def breaks(upstream, fwd, body, sink, plan, ex, pool):  # type: ignore[no-untyped-def]
        raise KeyError("not a declared failure")

    monkeypatch.setattr(target, "forward_h2", breaks)
    with pytest.raises(BaseExceptionGroup):
        target.fuzz_one(target.SEEDS["ok"])
