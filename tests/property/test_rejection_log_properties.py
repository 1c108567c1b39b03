"""Properties of the rejected-handshake log limiter: one line per key per interval, nothing lost.

Invariants over arbitrary failure sequences: a line of a key comes at least ``interval`` after the previous
one; a failure is held back only inside its key's interval; every failure is either a line or counted in a
later line or summary (after a final flush); every key that failed appears in the log.
"""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st

from trio_gw.tls.handshake_errors import HANDSHAKE_REASONS
from trio_gw.tls.rejection_log import RejectionLogLimiter, client_network

FAILURES = st.lists(
    st.tuples(st.sampled_from(sorted(HANDSHAKE_REASONS)),
              st.sampled_from(["203.0.113.1", "203.0.113.200", "198.51.100.5", "2001:db8::1", "2001:db8::2:1",
                               "2001:db8:0:1::1", "::ffff:203.0.113.9"]),
              st.floats(0, 30, allow_nan=False)),
    max_size=200,
)


@given(FAILURES, st.sampled_from([1.0, 5.0, 60.0]))
@example([("unknown_ca", "203.0.113.1", 0.0)] * 50 + [("unknown_ca", "203.0.113.1", 61.0)], 60.0)
def test_every_failure_is_logged_or_counted_and_lines_keep_their_interval(
    failures: list[tuple[str, str, float]], interval: float
) -> None:
    limiter = RejectionLogLimiter(interval)
    now, lines = 0.0, []
    last: dict[tuple[str, str], float] = {}
    for reason, ip, gap in failures:
        now += gap
        line = limiter.admit(reason, ip, now)
        key = (reason, client_network(ip))
        if line is not None:
            assert key not in last or now - last[key] >= interval  # one line per key per interval
            last[key] = now
            lines.append(line)
        else:
            assert key in last and now - last[key] < interval  # held back only inside an interval
    lines += limiter.flush(now + interval)
    assert sum(1 + line.suppressed for line in lines if not line.summary) + sum(
        line.suppressed for line in lines if line.summary) == len(failures)  # nothing lost
    assert {(line.reason, line.network) for line in lines} == {(r, client_network(ip)) for r, ip, _ in failures}
