"""Bounded runs of the fuzz target ``proxy-request-head`` (see ``fuzz/README.md``).

Invariant (``fuzz/targets/proxy_request_head.py``): any bytes a client sends to
the proxy give responses or a close — never an exception escaping
``ProxyServer.serve_connection``, never a hang — fed in one chunk and byte by
byte, against a fake upstream that answers, closes, sends garbage, stays silent
or cuts its answer short.  Everything runs on a mock clock, so timeouts cost
nothing and no test here depends on wall-clock time.

Hypothesis mutates valid-looking pipelined requests; ``@example`` pins inputs
that once failed.  ``KNOWN_BUGS`` pins the inputs that still fail, as strict
``xfail`` tests: when a bug is fixed its test XPASSes, which fails the run, and
the entry moves to an ``@example``.  Until then the random tests skip over
failures with exactly that bug's signature, so they keep looking for new ones.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

# fuzz/ is a source-tree package next to tests/, not installed with trio_gw.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from fuzz.strategies import http_traffic
from fuzz.targets import proxy_request_head as target
from fuzz.targets._support import InvariantViolation, KnownBug, run_past_known_bugs

#: Reported, unfixed bugs.  Fixed so far (now pinned as @example below): an error
#: response to HEAD wrote a body (h11 LocalProtocolError escaped), and an
#: UpstreamFailure during a streaming upload escaped as an ExceptionGroup.
KNOWN_BUGS: dict[str, KnownBug] = {}


def check(data: bytes) -> None:
    """Run the target; a failure with a known bug's signature is tracked by ``test_known_bugs``."""
    run_past_known_bugs(target.fuzz_one, data, KNOWN_BUGS.values())


@given(http_traffic())
@example(target.SEEDS["pipelined"])
@example(target.SEEDS["partial-body"])
@example(b"PO$T /echo HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 6\r\n\r\nabc")
@example(b"HEAD /nowhere HTTP/1.1\r\nHost: a\r\n\r\n")  # was: error body written to HEAD
@example(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc")  # was: ExceptionGroup escaped
def test_mutated_requests_get_responses_or_a_close(data: bytes) -> None:
    check(data)


@given(st.binary(max_size=200))
def test_any_bytes_get_responses_or_a_close(data: bytes) -> None:
    check(data)


@pytest.mark.parametrize("mode", sorted(set(target.UPSTREAM_MODES)))
@pytest.mark.parametrize("name", ["get", "pipelined", "http10", "hosted", "upgrade", "expect-100", "post-chunked"])
def test_every_upstream_behaviour(name: str, mode: str) -> None:
    """The seeds against every fake-upstream behaviour, both feeds (in fuzz_one the CRC picks one)."""
    data = target.SEEDS[name]
    for trickle, eof, tls in ((False, True, False), (True, False, True)):
        try:
            outcome = target.run_connection(data, trickle=trickle, eof=eof, mode=mode, tls=tls)
            target.check_outcome(data, outcome, mode=mode, feed=f"trickle={trickle}")
        except InvariantViolation as exc:
            if not any(bug.matches(exc) for bug in KNOWN_BUGS.values()):
                raise


@pytest.mark.parametrize(
    ("name", "statuses"),
    [("get", [200]), ("post-cl", [200]), ("cl-te", [400]), ("connect", [405]), ("https-only", [426]),
     ("redirect", [301]), ("pipelined", [200, 404, 200]), ("absolute-form", [200]), ("partial-head", [400]),
     ("garbage", [400]), ("http10", [200])],
)
def test_the_harness_reaches_the_proxy(name: str, statuses: list[int]) -> None:
    """The expected answers come back, so a passing fuzz run means something."""
    data = target.SEEDS[name]
    outcome = target.run_connection(data, trickle=False, eof=True, mode="answer", tls=False)
    methods = target.request_methods(data, target.SETTINGS_OVERRIDES["max_header_size"])
    assert target.check_responses(outcome.output, methods, may_truncate=False) == statuses


@pytest.mark.parametrize(("trickle", "eof", "tls"), [(False, True, False), (True, False, True)])
def test_the_harness_reaches_the_tunnel(trickle: bool, eof: bool, tls: bool) -> None:
    """With the "switch" upstream a WebSocket handshake gets its 101 and the bytes behind it come back
    through the tunnel (all of them when the client stays; a prefix when its EOF ends the tunnel)."""
    data = target.SEEDS["upgrade"] + b"tunnelled bytes"
    outcome = target.run_connection(data, trickle=trickle, eof=eof, mode="switch", tls=tls)
    target.check_outcome(data, outcome, mode="switch", feed=f"trickle={trickle}")
    tail = target.upgrade_tail(data, target.SETTINGS_OVERRIDES["max_header_size"])
    assert tail == b"tunnelled bytes"
    assert target.check_responses(outcome.output, [b"GET"], may_truncate=False, switch_tail=tail) == [101]
    head, _, rest = outcome.output.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101 ") and tail.startswith(rest)
    if not eof:
        assert rest == tail
    with pytest.raises(InvariantViolation):  # the check refuses bytes that were never sent
        target.check_responses(head + b"\r\n\r\nnot sent", [b"GET"], may_truncate=False, switch_tail=tail)


@pytest.mark.parametrize(
    "bug",
    [pytest.param(bug, id=name, marks=pytest.mark.xfail(strict=True, reason=bug.reason))
     for name, bug in KNOWN_BUGS.items()],
)
def test_known_bugs(bug: KnownBug) -> None:
    target.fuzz_one(bug.example)
