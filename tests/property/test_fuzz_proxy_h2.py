"""Bounded runs of the fuzz target ``proxy-h2`` (see ``fuzz/README.md``).

Invariant (``fuzz/targets/proxy_h2.py``): any frames an HTTP/2 client sends give
responses, resets or a GOAWAY — never an exception escaping
``Http2Server.serve_connection``, never an error logged, never a hang — and
what the client receives parses with an ``h2`` client, every HEADERS block
with a valid ``:status``; what reaches the upstream parses as HTTP/1.1.  Fed
per segment in one chunk (then EOF) and in small pieces (then a stall), against
a fake upstream that answers, closes, sends garbage, stays silent or cuts its
answer short.  Everything runs on a mock clock, so timeouts cost nothing and no
test here depends on wall-clock time.

Hypothesis writes programs of the target (operations that become well-formed
frames) with a raw tail, mutated; ``@example`` pins inputs that once failed.
``KNOWN_BUGS`` pins the inputs that still fail, as strict ``xfail`` tests (see
``test_fuzz_request_head.py``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

# fuzz/ is a source-tree package next to tests/, not installed with trio_gw.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from fuzz.strategies import h2_traffic
from fuzz.targets import proxy_h2 as target
from fuzz.targets._support import InvariantViolation, KnownBug, run_past_known_bugs

#: Reported, unfixed bugs.  Fixed so far (pinned as @example below): a method or
#: ``:path`` h11 refuses reached the upstream request (h11's LocalProtocolError
#: logged as an unexpected error); so did a content-length the stream's DATA did
#: not reach (END_STREAM on the head, or trailers); a client that never gave
#: flow-control credit (SETTINGS_INITIAL_WINDOW_SIZE 0) held its stream and
#: connection forever; a drain cancelling the writer before it wrote lost the
#: frames h2 had handed it (the client got a GOAWAY without the SETTINGS).
KNOWN_BUGS: dict[str, KnownBug] = {}

_CL = (b"content-length", b"5")
ALL_SEEDS = {**target.SEEDS, **target.generated_seeds()}


def check(data: bytes) -> None:
    """Run the target; a failure with a known bug's signature is tracked by ``test_known_bugs``."""
    run_past_known_bugs(target.fuzz_one, data, KNOWN_BUGS.values())


@given(h2_traffic())
@example(target.SEEDS["concurrent"])
@example(target.SEEDS["expect-100"])
@example(target.SEEDS["rst-mid-body"])
# was: h11 refused to send the request upstream (method, :path, field name)
@example(b"K" + target.op_headers(method=b"G T"))
@example(b"K" + target.op_headers(path=b"/a b"))
@example(b"K" + target.op_headers(path=b"/\xff"))
@example(b"K" + target.op_headers(headers=[(b"x/y", b"10")]))
@example(b"Y8KH1ND")  # an empty :method
# was: content-length with END_STREAM on the head, and trailers ending a body short of it
@example(b"KH0KFC<Z7GDH2EPU5CY5OZ>9G=0@>Z")
# was: a hang waiting for a window the client never opened
@example(b"S0H100110")
@example(b"H1^0330S1Z0S0")
# was: GOAWAY without the SETTINGS before it (drain cancelled the writer)
@example(ALL_SEEDS["drain-at-once"])
@example(b"K" + target.op_headers(method=b"POST", path=b"/echo", headers=[_CL]) + target.op_pause(5.0))
@example(b"K" + target.op_headers(end=False, method=b"POST", path=b"/echo", headers=[_CL]) + target.op_data(1, end=False)
         + target.op_headers(0, flags=16, method=None, path=None, authority=None) + target.op_pause(5.0))
def test_programs_get_answers_resets_or_goaway(data: bytes) -> None:
    check(data)


@given(st.binary(max_size=200))
def test_any_bytes_get_answers_resets_or_goaway(data: bytes) -> None:
    check(data)


@given(st.binary(max_size=120))
def test_raw_frames_after_a_request(data: bytes) -> None:
    check(target.SEEDS["post-chunked"][:-2] + b"." + data)


@pytest.mark.parametrize("mode", sorted(set(target.UPSTREAM_MODES)))
@pytest.mark.parametrize("name", ["get", "post-body", "post-chunked", "concurrent", "expect-100", "rst-mid-body"])
def test_every_upstream_behaviour(name: str, mode: str) -> None:
    """The seeds against every fake-upstream behaviour, both feeds (in fuzz_one the CRC picks one)."""
    data = target.SEEDS[name]
    for piece, eof in ((0, True), (1, False), (5, False)):
        try:
            outcome = target.run_connection(data, piece=piece, eof=eof, mode=mode)
            target.check_outcome(outcome, mode=mode, feed=f"piece={piece}")
        except InvariantViolation as exc:
            if not any(bug.matches(exc) for bug in KNOWN_BUGS.values()):
                raise


@pytest.mark.parametrize(
    ("name", "statuses"),
    [("get", {1: [200]}), ("post-body", {1: [200]}), ("post-chunked", {1: [200]}),
     ("concurrent", {1: [200], 3: [200], 5: [200], 7: [200], 9: [200]}), ("expect-100", {1: [100, 200]}),
     ("head-404", {1: [404]}), ("keyed", {1: [200]}), ("keyed-missing", {1: [401]}), ("continuation", {1: [200]}),
     ("settings-ping", {1: [200]}), ("drain-mid-body", {1: [200]}), ("drain-idle", {1: [200]})],
)
def test_the_harness_reaches_the_proxy(name: str, statuses: dict[int, list[int]]) -> None:
    """The expected answers come back, so a passing fuzz run means something."""
    for piece, eof in ((0, False), (3, False)):
        outcome = target.run_connection(ALL_SEEDS[name], piece=piece, eof=eof, mode="answer")
        received = target.check_outcome(outcome, mode="answer", feed="test")
        assert received.statuses == statuses
        assert received.goaway == 0  # the idle GOAWAY, NO_ERROR
        assert outcome.upstream.requests == sum(1 for s in statuses.values() if s[-1] == 200)


def test_malformed_requests_are_answered_on_their_stream() -> None:
    """The fixed findings: 400 on the stream, the connection goes on."""
    data = b"K" + b"".join(target.op_headers(**kw) for kw in (
        {"method": b"G T"}, {"path": b"/a b"}, {"headers": [(b"x/y", b"10")]},
        {"method": b"POST", "path": b"/echo", "headers": [_CL]},
    )) + target.op_headers() + target.op_pause(5.0)
    outcome = target.run_connection(data, piece=0, eof=False, mode="answer")
    received = target.check_outcome(outcome, mode="answer", feed="test")
    assert received.statuses == {1: [400], 3: [400], 5: [400], 7: [400], 9: [200]}
    reasons = sorted((ex.target, ex.reason or "-") for ex in outcome.exchanges)
    assert reasons == [("/a b", "bad_request"), ("/anything", "-"), ("/anything", "bad_request"),
                       ("/anything", "bad_request"), ("/echo", "bad_content_length")]
    # a body ended by trailers short of its content-length: the stream is reset (PROTOCOL_ERROR)
    data = (b"K" + target.op_headers(end=False, method=b"POST", path=b"/echo", headers=[_CL])
            + target.op_data(1, end=False) + target.op_headers(0, flags=16, method=None, path=None, authority=None)
            + target.op_pause(5.0))
    outcome = target.run_connection(data, piece=0, eof=False, mode="answer")
    received = target.check_outcome(outcome, mode="answer", feed="test")
    assert received.resets == {1: 1}


@pytest.mark.parametrize(
    "bug",
    [pytest.param(bug, id=name, marks=pytest.mark.xfail(strict=True, reason=bug.reason))
     for name, bug in KNOWN_BUGS.items()],
)
def test_known_bugs(bug: KnownBug) -> None:
    target.fuzz_one(bug.example)


def test_no_window_from_the_client_resets_the_stream() -> None:
    """A client that sets its window to 0 and never opens it: reset after client_body_timeout, then GOAWAY."""
    data = b"KS0" + target.op_headers() + target.op_pause(40.0)
    outcome = target.run_connection(data, piece=0, eof=False, mode="answer")
    received = target.check_outcome(outcome, mode="answer", feed="test")
    assert received.statuses == {1: [200]}  # the head needs no credit, the body does
    assert received.resets == {1: 2}  # INTERNAL_ERROR: the answer is incomplete
    assert received.goaway == 0


def test_graceful_shutdown_finishes_open_streams_and_refuses_new_ones() -> None:
    data = ALL_SEEDS["drain-mid-body"]
    for piece, eof in ((0, False), (3, False), (0, True)):
        outcome = target.run_connection(data, piece=piece, eof=eof, mode="answer")
        received = target.check_outcome(outcome, mode="answer", feed="test")
        assert (received.statuses, received.resets, received.goaway) == ({1: [200]}, {3: 7}, 0)
    # cancelled at once: still a well-formed connection, SETTINGS first, GOAWAY last
    outcome = target.run_connection(ALL_SEEDS["drain-at-once"], piece=0, eof=False, mode="answer")
    received = target.check_outcome(outcome, mode="answer", feed="test")
    assert received.goaway == 0
