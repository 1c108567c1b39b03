"""The rejected-handshake log: one line per reason and client network per interval, the rest counted."""

from __future__ import annotations

import pytest
from trio_gw.tls.rejection_log import OVERFLOW, RejectionLine, RejectionLogLimiter, client_network, format_rejection


def test_networks_are_slash_24_and_slash_64() -> None:
    assert client_network("203.0.113.77") == "203.0.113.0/24"
    assert client_network("2001:db8:1:2:3:4:5:6") == "2001:db8:1:2::/64"
    assert client_network("::ffff:198.51.100.9") == "198.51.100.0/24"  # IPv4-mapped counts as IPv4
    assert client_network("fe80::1%eth0") == "fe80::/64"
    assert client_network("unix:/run/gw.sock") == "unix:/run/gw.sock"  # not an address: its own key


def test_one_line_per_reason_and_network_per_interval() -> None:
    limiter = RejectionLogLimiter(60.0)
    assert limiter.admit("unknown_ca", "203.0.113.1", 0.0) == RejectionLine("unknown_ca", "203.0.113.0/24",
                                                                            "203.0.113.1", 0)
    assert limiter.admit("unknown_ca", "203.0.113.2", 1.0) is None  # same /24, same reason: held back
    assert limiter.admit("unknown_ca", "203.0.113.3", 59.9) is None
    assert limiter.admit("no_cert", "203.0.113.4", 2.0) is not None  # another reason: its own line
    assert limiter.admit("unknown_ca", "203.0.114.1", 3.0) is not None  # another network: its own line
    later = limiter.admit("unknown_ca", "203.0.113.9", 60.0)
    assert later == RejectionLine("unknown_ca", "203.0.113.0/24", "203.0.113.9", 2)  # says how many were held


def test_a_scan_that_stops_is_still_reported_and_quiet_keys_are_forgotten() -> None:
    limiter = RejectionLogLimiter(10.0)
    limiter.admit("protocol_version", "198.51.100.7", 0.0)
    for t in range(1, 6):
        limiter.admit("protocol_version", "198.51.100.8", float(t))
    limiter.admit("timeout", "192.0.2.1", 0.0)
    assert limiter.flush(5.0) == []  # the interval is not over
    (summary,) = limiter.flush(10.0)
    assert summary == RejectionLine("protocol_version", "198.51.100.0/24", "198.51.100.8", 5, summary=True)
    assert len(limiter) == 1  # "timeout" held nothing back: forgotten
    assert limiter.flush(20.0) == [] and len(limiter) == 0


def test_many_networks_share_one_key_per_reason() -> None:
    limiter = RejectionLogLimiter(60.0, max_keys=2)
    assert limiter.admit("unknown_ca", "10.0.1.1", 0.0) is not None
    assert limiter.admit("unknown_ca", "10.0.2.1", 0.0) is not None
    overflow = limiter.admit("unknown_ca", "10.0.3.1", 0.0)
    assert overflow is not None and overflow.network == OVERFLOW
    assert all(limiter.admit("unknown_ca", f"10.{n}.0.1", 1.0) is None for n in range(4, 200))
    assert len(limiter) == 3
    text = format_rejection(limiter.admit("unknown_ca", "10.9.9.9", 61.0) or overflow, listener="proxy",
                            interval=60.0)
    assert text.endswith("(196 more from many networks in the last 60s)")


def test_bad_bounds_are_refused() -> None:
    with pytest.raises(ValueError):
        RejectionLogLimiter(0)
    with pytest.raises(ValueError):
        RejectionLogLimiter(1.0, max_keys=0)


def test_the_line_names_everything_and_client_text_cannot_forge_lines() -> None:
    line = RejectionLine("unknown_ca", "203.0.113.0/24", "203.0.113.7", 41)
    assert format_rejection(line, listener="proxy", interval=60.0, details={"sni": "api.example", "alert": None}) == (
        "TLS handshake rejected: reason=unknown_ca client=203.0.113.7 network=203.0.113.0/24 listener=proxy "
        "sni=api.example (41 more from this network in the last 60s)")
    forged = format_rejection(RejectionLine("other", "n", "c", 0), listener="proxy", interval=60.0,
                              details={"sni": "a.example\nTLS handshake rejected: reason=none é"})
    assert "\n" not in forged and " reason=none" not in forged and "\\x0a" in forged and "\\xe9" in forged
    summary = format_rejection(RejectionLine("timeout", "n", "c", 3, summary=True), listener="admin", interval=30)
    assert summary.startswith("TLS handshake rejections continued: reason=timeout")
