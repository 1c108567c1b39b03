"""trio_gw.tls.session: resumption settings and listener-context replacement."""

from __future__ import annotations

import ssl

import pytest

from trio_gw.errors import ConfigError
from trio_gw.tls.session import (
    DEFAULT_SESSION_CACHE_SIZE,
    DEFAULT_SESSION_TIMEOUT,
    ListenerPolicyKey,
    SessionPolicy,
    listener_context_change_reasons,
    needs_new_listener_context,
    parse_bool,
    parse_duration,
    parse_session_policy,
    parse_size,
)


def test_defaults_follow_kong() -> None:
    policy = parse_session_policy()
    assert policy == SessionPolicy(tickets=True, timeout_seconds=86400, cache_size=10 * 1024 * 1024)
    assert DEFAULT_SESSION_TIMEOUT == 86400
    assert DEFAULT_SESSION_CACHE_SIZE == 10 * 1024 * 1024  # Kong's ssl_session_cache_size = 10m
    assert policy.num_tickets == 2
    assert policy.options == 0
    assert policy.cache_sessions == 40_000  # nginx: about 4,000 sessions per megabyte


@pytest.mark.parametrize(
    ("value", "size"),
    [(1048576, 1048576), ("1048576", 1048576), ("512k", 524288), ("512K", 524288), ("10m", 10485760),
     ("10M", 10485760), (" 1g ", 1073741824), ("32k", 32768)],
)  # fmt: skip
def test_sizes(value: object, size: int) -> None:
    assert parse_size(value, path="ssl_session_cache_size") == size


@pytest.mark.parametrize("value", ["10mb", "1t", "1.5m", "-1", -1, "", "m", "ten", True, 1.5, None, "１０m"])
def test_bad_sizes_are_rejected(value: object) -> None:
    with pytest.raises(ConfigError) as info:
        parse_size(value, path="ssl_session_cache_size")
    assert [p.path for p in info.value.problems] == ["ssl_session_cache_size"]
    assert repr(value) in info.value.problems[0].message


@pytest.mark.parametrize(("value", "sessions"), [("32k", 125), ("1m", 4000), ("20m", 80_000), (40960, 156)])
def test_the_cache_holds_nginx_s_4000_sessions_per_megabyte(value: object, sessions: int) -> None:
    assert parse_session_policy(None, None, value).cache_sessions == sessions


@pytest.mark.parametrize("value", ["16k", 0, "0", 32767])
def test_a_cache_under_32k_is_refused(value: object) -> None:
    with pytest.raises(ConfigError) as info:
        parse_session_policy(None, None, value)
    assert [p.path for p in info.value.problems] == ["ssl_session_cache_size"]
    assert "under 32k" in info.value.problems[0].message
    with pytest.raises(ConfigError):
        SessionPolicy(cache_size=16 * 1024)


def test_tickets_off_sets_both_controls() -> None:
    policy = parse_session_policy("off")
    assert policy.num_tickets == 0
    assert policy.options == ssl.OP_NO_TICKET
    assert "tickets off" in policy.describe()


@pytest.mark.parametrize(
    ("value", "seconds"),
    [(300, 300), ("300", 300), ("5m", 300), ("1d", 86400), ("1h30m", 5400), ("1h 30m", 5400),
     ("2w", 1209600), ("10s", 10), (" 7d ", 604800), (0, 0)],
)  # fmt: skip
def test_durations(value: object, seconds: int) -> None:
    assert parse_duration(value, path="ssl_session_timeout") == seconds


@pytest.mark.parametrize(
    "value", ["5 minutes", "1M", "1y", "500ms", "1.5h", "-5", -5, "", "m", True, 1.5, None]
)
def test_bad_durations_are_rejected(value: object) -> None:
    with pytest.raises(ConfigError) as info:
        parse_duration(value, path="ssl_session_timeout")
    assert [p.path for p in info.value.problems] == ["ssl_session_timeout"]
    assert repr(value) in info.value.problems[0].message


@pytest.mark.parametrize("value", [0, "0s", "8d", 604801])
def test_timeout_must_be_positive_and_at_most_seven_days(value: object) -> None:
    with pytest.raises(ConfigError) as info:
        parse_session_policy(None, value)
    assert [p.path for p in info.value.problems] == ["ssl_session_timeout"]


def test_every_setting_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as info:
        parse_session_policy("sometimes", "forever", "lots")
    assert [p.path for p in info.value.problems] == [
        "ssl_session_tickets", "ssl_session_timeout", "ssl_session_cache_size"]


def test_the_dataclass_validates_on_construction() -> None:
    with pytest.raises(ConfigError):
        SessionPolicy(timeout_seconds=0)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(True, True), (False, False), ("on", True), ("OFF", False), ("true", True), ("False", False),
     ("yes", True), ("no", False), (1, True), (0, False), ("1", True)],
)  # fmt: skip
def test_flags(value: object, expected: bool) -> None:
    assert parse_bool(value, path="p") is expected


@pytest.mark.parametrize("value", ["maybe", "", 2, None, 1.0, [True]])
def test_bad_flags(value: object) -> None:
    with pytest.raises(ConfigError, match="expected on or off"):
        parse_bool(value, path="p")


KEY = ListenerPolicyKey(
    tls_policy=("policy", 1), requests_client_cert=True, client_auth_generation="g1"
)


def test_first_context_is_always_built() -> None:
    assert needs_new_listener_context(None, KEY)


def test_unchanged_key_keeps_the_context_and_its_tickets() -> None:
    same = ListenerPolicyKey(("policy", 1), True, "g1")
    assert not needs_new_listener_context(KEY, same)
    assert listener_context_change_reasons(KEY, same) == ()


def test_changed_client_auth_policy_replaces_the_context() -> None:
    # docs/tls-stack.md §10: an old ticket resumed past a rotated allowlist.
    new = ListenerPolicyKey(("policy", 1), True, "g2")
    assert needs_new_listener_context(KEY, new)
    (reason,) = listener_context_change_reasons(KEY, new)
    assert "session tickets" in reason


def test_other_changes_replace_the_context() -> None:
    assert needs_new_listener_context(KEY, ListenerPolicyKey(("policy", 2), True, "g1"))
    assert needs_new_listener_context(KEY, ListenerPolicyKey(("policy", 1), False, "g1"))
    everything = ListenerPolicyKey(("policy", 2), False, "")
    assert len(listener_context_change_reasons(KEY, everything)) == 3
