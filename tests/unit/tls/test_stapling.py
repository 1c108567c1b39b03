"""Stapling settings and the per-handshake decision (trio_gw.tls.stapling)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trio_gw.errors import ConfigError
from trio_gw.tls.ocsp import OcspAnswer, OcspCertStatus
from trio_gw.tls.stapling import (
    StapleAction,
    StaplingPolicy,
    StaplingSettings,
    decide_staple,
    parse_stapling_policy,
    parse_stapling_settings,
    select_stapling_issuer,
)

NOW = 1_750_000_000
L, S, M = StaplingPolicy.LENIENT, StaplingPolicy.STRICT, StaplingPolicy.MUST_STAPLE


def answer(status: OcspCertStatus = OcspCertStatus.GOOD, *, fresh_until: int = NOW + 3600) -> OcspAnswer:
    return OcspAnswer(status, 7, NOW - 60, fresh_until, NOW - 60, b"DER:" + status.value.encode(), fresh_until)


def test_defaults() -> None:
    assert parse_stapling_settings({}) == StaplingSettings()
    assert StaplingSettings().ssl_stapling is False and StaplingSettings().ssl_stapling_verify is True


def test_nginx_values() -> None:
    s = parse_stapling_settings({"ssl_stapling": "on", "ssl_stapling_verify": "off",
                                 "ssl_stapling_file": " /etc/ocsp.der ",
                                 "ssl_stapling_responder": "http://127.0.0.1:9/ocsp",
                                 "ocsp_staple_policy": "MUST_STAPLE"})
    assert s == StaplingSettings(True, False, "/etc/ocsp.der", "http://127.0.0.1:9/ocsp", M)
    assert parse_stapling_settings({"ssl_stapling": True}).ssl_stapling


@pytest.mark.parametrize("value, policy", [("lenient", L), ("Strict", S), ("must_staple", M),
                                           ("LENIENT_STAPLING", L), ("STRICT_STAPLING", S)])
def test_policy_names(value: str, policy: StaplingPolicy) -> None:
    assert parse_stapling_policy(value) is policy


@pytest.mark.parametrize("values, messages", [
    ({"ssl_stapling": "maybe"}, ["ssl_stapling: expected on or off, got 'maybe'"]),
    ({"ssl_stapling": "on", "ocsp_staple_policy": "always"},
     ["ocsp_staple_policy: expected one of lenient, strict, must_staple, got 'always'"]),
    ({"ssl_stapling": "on", "ssl_stapling_responder": "ldap://x"},
     ["ssl_stapling_responder: expected an http:// or https:// URL"]),
    ({"ssl_stapling_file": ""}, ["ssl_stapling_file: expected a non-empty string, got ''"]),
    ({"ocsp_staple_policy": "strict"}, ["ocsp_staple_policy: strict needs ssl_stapling on"]),
    ({"ssl_stapling": 2, "ssl_stapling_verify": "x"},
     ["ssl_stapling: expected on or off, got 2", "ssl_stapling_verify: expected on or off, got 'x'"]),
])
def test_bad_settings_name_the_key(values: dict[str, object], messages: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        parse_stapling_settings(values)
    assert [str(p) for p in info.value.problems] == messages


@pytest.mark.parametrize("policy, held, must, action, reason", [
    (L, answer(), False, StapleAction.STAPLE, "good"),
    (S, answer(), False, StapleAction.STAPLE, "good"),
    (M, answer(), True, StapleAction.STAPLE, "good"),
    (L, answer(OcspCertStatus.REVOKED), False, StapleAction.OMIT, "revoked"),
    (S, answer(OcspCertStatus.REVOKED), False, StapleAction.REFUSE, "revoked"),
    (M, answer(OcspCertStatus.REVOKED), False, StapleAction.REFUSE, "revoked"),
    (L, answer(OcspCertStatus.UNKNOWN), False, StapleAction.OMIT, "unknown"),
    (S, answer(OcspCertStatus.UNKNOWN), False, StapleAction.REFUSE, "unknown"),
    (L, answer(fresh_until=NOW - 3600), False, StapleAction.OMIT, "stale"),
    (S, answer(fresh_until=NOW - 3600), False, StapleAction.REFUSE, "stale"),
    (L, None, True, StapleAction.OMIT, "no_response"),
    (S, None, True, StapleAction.OMIT, "no_response"),
    (M, None, False, StapleAction.OMIT, "no_response"),
    (M, None, True, StapleAction.REFUSE, "must_staple_without_response"),
])
def test_decision_table(policy: StaplingPolicy, held: OcspAnswer | None, must: bool, action: StapleAction,
                        reason: str) -> None:
    decision = decide_staple(policy, held, must_staple=must, now=NOW)
    assert (decision.action, decision.reason) == (action, reason)
    assert (decision.response_der is not None) == (action is StapleAction.STAPLE)


@given(st.sampled_from(list(StaplingPolicy)), st.sampled_from(list(OcspCertStatus)), st.booleans(),
       st.integers(-7200, 7200))
def test_decision_properties(policy: StaplingPolicy, status: OcspCertStatus, must: bool, age: int) -> None:
    held = answer(status, fresh_until=NOW + age)
    decision = decide_staple(policy, held, must_staple=must, now=NOW)
    if decision.action is StapleAction.STAPLE:  # only ever a fresh, good answer
        assert status is OcspCertStatus.GOOD and NOW <= held.fresh_until + 300
        assert decision.response_der == held.der
    if policy is L:  # lenient never refuses a handshake
        assert decision.action is not StapleAction.REFUSE


def test_issuer_from_the_chain_then_the_trusted_cas() -> None:
    from trio_gw.testing.pki import issue, make_ca

    root = make_ca(common_name="staple root")
    inter = make_ca(issuer=root, common_name="staple intermediate")
    leaf = issue(inter, "s.example")
    assert select_stapling_issuer([leaf.cert, inter.cert]) == inter.cert
    assert select_stapling_issuer([leaf.cert], [root.cert, inter.cert]) == inter.cert
    assert select_stapling_issuer([leaf.cert], [root.cert]) is None  # nginx: issuer certificate not found
    assert select_stapling_issuer([]) is None


@given(st.dictionaries(st.sampled_from(["ssl_stapling", "ssl_stapling_verify", "ssl_stapling_file",
                                        "ssl_stapling_responder", "ocsp_staple_policy"]),
                       st.none() | st.booleans() | st.integers() | st.text(max_size=12), max_size=5))
def test_any_settings_give_settings_or_config_error(values: dict[str, object]) -> None:
    try:
        parse_stapling_settings(values)
    except ConfigError as exc:
        assert all(p.path in values for p in exc.problems)
