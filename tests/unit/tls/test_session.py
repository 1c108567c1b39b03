"""trio_gw.tls.session: resumption settings and listener-context replacement."""

from __future__ import annotations

import ssl

import pytest

from trio_gw.errors import ConfigError
from trio_gw.tls.session import (
    DEFAULT_SESSION_TIMEOUT,
    ListenerPolicyKey,
    SessionPolicy,
    listener_context_change_reasons,
    needs_new_listener_context,
    parse_bool,
    parse_duration,
    parse_session_policy,
)


def test_defaults_follow_kong() -> None:
    policy = parse_session_policy()
    assert policy == SessionPolicy(tickets=True, timeout_seconds=86400)
    assert DEFAULT_SESSION_TIMEOUT == 86400
    assert policy.num_tickets == 2
    assert policy.options == 0


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


def test_both_settings_are_reported_at_once() -> None:
    with pytest.raises(ConfigError) as info:
        parse_session_policy("sometimes", "forever")
    assert [p.path for p in info.value.problems] == ["ssl_session_tickets", "ssl_session_timeout"]


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
