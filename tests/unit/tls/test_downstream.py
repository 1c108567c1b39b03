"""trio_gw.tls.downstream and renegotiation: settings to complete TLS policies."""

from __future__ import annotations

import dataclasses
import ssl

import pytest

from trio_gw.errors import ConfigError
from trio_gw.tls import renegotiation
from trio_gw.tls.ciphers import CipherPreset, preset_policy
from trio_gw.tls.downstream import (
    DOWNSTREAM_SETTING_KEYS,
    UPSTREAM_SETTING_KEYS,
    DownstreamTlsPolicy,
    UpstreamTlsPolicy,
    parse_downstream_policy,
    parse_upstream_policy,
)
from trio_gw.tls.session import SessionPolicy, needs_new_listener_context
from trio_gw.tls.versions import VersionRange

V = ssl.TLSVersion


def _paths(info: pytest.ExceptionInfo[ConfigError]) -> list[str]:
    return [p.path for p in info.value.problems]


def test_defaults_are_secure_and_match_kong() -> None:
    policy = parse_downstream_policy({})
    assert policy == DownstreamTlsPolicy()
    assert policy.versions == VersionRange(V.TLSv1_2, V.TLSv1_3)
    assert policy.ciphers == preset_policy(CipherPreset.INTERMEDIATE)
    assert policy.session == SessionPolicy(True, 86400)
    assert policy.prefer_server_ciphers is False  # Kong intermediate: off
    assert policy.warnings() == []
    assert policy.options_to_set == ssl.OP_NO_RENEGOTIATION
    assert policy.options_to_clear == ssl.OP_CIPHER_SERVER_PREFERENCE
    assert "renegotiation refused" in policy.describe()


def test_none_values_count_as_unset_and_other_keys_are_ignored() -> None:
    settings = {key: None for key in DOWNSTREAM_SETTING_KEYS} | {"ssl_cert": ["a.pem"]}
    assert parse_downstream_policy(settings) == DownstreamTlsPolicy()


def test_modern_preset_is_tls13_only() -> None:
    policy = parse_downstream_policy({"ssl_cipher_suite": "modern"})
    assert policy.versions == VersionRange(V.TLSv1_3, V.TLSv1_3)
    assert policy.ciphers.openssl_ciphers is None


def test_old_preset_enables_legacy_versions_with_security_level_zero_and_warns() -> None:
    policy = parse_downstream_policy({"ssl_cipher_suite": "old"})
    assert policy.versions == VersionRange(V.TLSv1, V.TLSv1_3)
    assert policy.ciphers.openssl_ciphers is not None
    assert policy.ciphers.openssl_ciphers.endswith(":@SECLEVEL=0")
    assert policy.prefer_server_ciphers is True
    assert policy.options_to_set & ssl.OP_CIPHER_SERVER_PREFERENCE
    assert policy.options_to_clear == 0
    text = "\n".join(policy.warnings())
    assert "security level lowered to 0" in text
    assert "TLSv1 is enabled" in text and "TLSv1.1 is enabled" in text


def test_explicit_min_max_win_over_ssl_protocols_and_say_so() -> None:
    policy = parse_downstream_policy(
        {"ssl_protocols": "TLSv1.2 TLSv1.3", "ssl_min_version": "1.3", "ssl_max_version": 772}
    )
    assert policy.versions == VersionRange(V.TLSv1_3, V.TLSv1_3)
    assert policy.warnings() == [
        "ssl_min_version TLSv1.3 overrides the minimum of ssl_protocols (TLSv1.2)"
    ]


def test_ssl_protocols_wins_over_the_preset() -> None:
    policy = parse_downstream_policy({"ssl_cipher_suite": "old", "ssl_protocols": "TLSv1.2"})
    assert policy.versions == VersionRange(V.TLSv1_2, V.TLSv1_2)
    assert policy.ciphers.security_level is None


def test_min_version_alone_keeps_the_default_maximum() -> None:
    policy = parse_downstream_policy({"ssl_min_version": "TLSv1_1"})
    assert policy.versions == VersionRange(V.TLSv1_1, V.TLSv1_3)
    assert policy.ciphers.security_level == 0
    assert any("TLSv1.1 is enabled" in w for w in policy.warnings())


def test_inverted_range_names_the_explicit_setting() -> None:
    with pytest.raises(ConfigError) as info:
        parse_downstream_policy({"ssl_min_version": "1.3", "ssl_max_version": "1.2"})
    assert _paths(info) == ["ssl_min_version"]
    with pytest.raises(ConfigError) as info:
        parse_downstream_policy({"ssl_cipher_suite": "modern", "ssl_max_version": "1.2"})
    assert _paths(info) == ["ssl_max_version"]
    assert "from ssl_cipher_suite" in info.value.problems[0].message


def test_modern_with_tls12_enabled_is_rejected() -> None:
    with pytest.raises(ConfigError, match="no TLS 1.2") as info:
        parse_downstream_policy({"ssl_cipher_suite": "modern", "ssl_min_version": "1.2"})
    assert _paths(info) == ["ssl_min_version"]
    with pytest.raises(ConfigError) as info:
        parse_downstream_policy({"ssl_cipher_suite": "modern", "ssl_protocols": "TLSv1.2 TLSv1.3"})
    assert _paths(info) == ["ssl_protocols"]


def test_only_tls13_suites_with_tls12_enabled_is_rejected() -> None:
    with pytest.raises(ConfigError, match="no TLS 1.2"):
        parse_downstream_policy({"ssl_ciphers": "TLS_AES_128_GCM_SHA256"})
    policy = parse_downstream_policy(
        {"ssl_ciphers": "TLS_AES_128_GCM_SHA256", "ssl_min_version": "1.3"}
    )
    assert policy.ciphers.tls13_ciphersuites == "TLS_AES_128_GCM_SHA256"


def test_tls12_only_suites_with_a_tls11_maximum_are_rejected() -> None:
    with pytest.raises(ConfigError, match="needs TLS 1.2") as info:
        parse_downstream_policy(
            {"ssl_protocols": "TLSv1 TLSv1.1", "ssl_ciphers": "ECDHE-RSA-AES128-GCM-SHA256"}
        )
    assert _paths(info) == ["ssl_ciphers"]
    with pytest.raises(ConfigError) as info:
        parse_downstream_policy({"ssl_protocols": "TLSv1 TLSv1.1", "ssl_cipher_suite": "modern"})
    assert _paths(info) == ["ssl_protocols"]


def test_unused_suites_are_warned_about() -> None:
    policy = parse_downstream_policy(
        {
            "ssl_min_version": "1.3",
            "ssl_ciphers": "ECDHE-RSA-AES128-GCM-SHA256:TLS_AES_128_GCM_SHA256",
        }
    )
    assert any("TLS 1.2 cipher suites configured are unused" in w for w in policy.warnings())
    policy = parse_downstream_policy(
        {
            "ssl_max_version": "1.2",
            "ssl_ciphers": "ECDHE-RSA-AES128-GCM-SHA256:TLS_AES_128_GCM_SHA256",
        }
    )
    assert any("TLS 1.3 cipher suites configured are unused" in w for w in policy.warnings())


def test_prefer_server_ciphers_precedence() -> None:
    assert parse_downstream_policy({"ssl_ciphers": "AES128-SHA"}).prefer_server_ciphers is True
    assert (
        parse_downstream_policy({"ssl_prefer_server_ciphers": "on"}).prefer_server_ciphers is True
    )
    policy = parse_downstream_policy(
        {"ssl_cipher_suite": "old", "ssl_prefer_server_ciphers": False}
    )
    assert policy.prefer_server_ciphers is False


def test_session_settings_and_ticket_option() -> None:
    policy = parse_downstream_policy({"ssl_session_tickets": "off", "ssl_session_timeout": "5m"})
    assert policy.session == SessionPolicy(False, 300)
    assert policy.options_to_set & ssl.OP_NO_TICKET


def test_every_problem_is_reported_with_its_key() -> None:
    with pytest.raises(ConfigError) as info:
        parse_downstream_policy(
            {
                "ssl_cipher_suite": "strong",
                "ssl_min_version": "1.9",
                "ssl_max_version": "TLSv2",
                "ssl_prefer_server_ciphers": "sometimes",
                "ssl_session_tickets": "perhaps",
                "ssl_session_timeout": "1y",
            }
        )
    assert _paths(info) == [
        "ssl_cipher_suite", "ssl_min_version", "ssl_max_version",
        "ssl_session_tickets", "ssl_session_timeout", "ssl_prefer_server_ciphers",
    ]  # fmt: skip


def test_unknown_cipher_names_are_reported_by_name() -> None:
    with pytest.raises(ConfigError) as info:
        parse_downstream_policy(
            {"ssl_ciphers": ["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "TLS_BOGUS"]}
        )
    assert _paths(info) == ["ssl_ciphers"]
    assert "'TLS_BOGUS'" in str(info.value)


def test_equal_policies_keep_the_listener_context() -> None:
    a = parse_downstream_policy({"ssl_protocols": "TLSv1.2 TLSv1.3"})
    b = parse_downstream_policy({"ssl_min_version": "1.2"})
    assert a == b and hash(a) == hash(b)
    assert not needs_new_listener_context(a.listener_key(), b.listener_key())
    assert needs_new_listener_context(
        a.listener_key(requests_client_cert=True, client_auth_generation="g1"),
        b.listener_key(requests_client_cert=True, client_auth_generation="g2"),
    )
    assert needs_new_listener_context(
        a.listener_key(), parse_downstream_policy({"ssl_session_tickets": False}).listener_key()
    )


def test_policies_validate_on_construction() -> None:
    with pytest.raises(ConfigError):
        DownstreamTlsPolicy(
            versions=VersionRange(V.TLSv1_2, V.TLSv1_3), ciphers=preset_policy(CipherPreset.MODERN)
        )
    with pytest.raises(ConfigError, match="security_level"):
        DownstreamTlsPolicy(
            versions=VersionRange(V.TLSv1, V.TLSv1_3), ciphers=preset_policy(CipherPreset.OLD)
        )
    old = dataclasses.replace(preset_policy(CipherPreset.OLD), security_level=0)
    assert (
        DownstreamTlsPolicy(versions=VersionRange(V.TLSv1, V.TLSv1_3), ciphers=old).ciphers is old
    )


# --- upstream ---------------------------------------------------------------------------


def test_upstream_defaults() -> None:
    policy = parse_upstream_policy({})
    assert policy == UpstreamTlsPolicy()
    assert policy.versions == VersionRange(V.TLSv1_2, V.TLSv1_3)
    assert policy.ciphers == preset_policy(CipherPreset.INTERMEDIATE)
    assert policy.options_to_set == renegotiation.UPSTREAM_OPTIONS == ssl.OP_NO_RENEGOTIATION
    assert policy.warnings() == []
    assert "renegotiation refused" in policy.describe()


def test_upstream_tyk_settings() -> None:
    policy = parse_upstream_policy(
        {
            "proxy_ssl_min_version": 771,
            "proxy_ssl_max_version": 771,
            "proxy_ssl_ciphers": ["TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"],
            "proxy_ssl_disable_renegotiation": True,
        }
    )
    assert policy.versions == VersionRange(V.TLSv1_2, V.TLSv1_2)
    assert policy.ciphers.openssl_ciphers == "ECDHE-RSA-AES256-GCM-SHA384"


def test_upstream_errors_carry_proxy_keys() -> None:
    with pytest.raises(ConfigError) as info:
        parse_upstream_policy(
            {
                "proxy_ssl_ciphers": "ECDHE-RSA-AES128-GCM-SHA255",
                "proxy_ssl_max_version": "1.1",
                "proxy_ssl_disable_renegotiation": "off",
            }
        )
    assert _paths(info) == [
        "proxy_ssl_ciphers",
        "proxy_ssl_max_version",
        "proxy_ssl_disable_renegotiation",
    ]
    assert "from the default" in info.value.problems[1].message


def test_upstream_legacy_versions_get_security_level_zero() -> None:
    policy = parse_upstream_policy(
        {"proxy_ssl_min_version": "1.0", "proxy_ssl_ciphers": "ECDHE-RSA-AES128-SHA"}
    )
    assert policy.ciphers.openssl_ciphers == "ECDHE-RSA-AES128-SHA:@SECLEVEL=0"
    assert any("TLSv1 is enabled" in w for w in policy.warnings())


def test_upstream_fit_errors_name_proxy_ciphers() -> None:
    with pytest.raises(ConfigError) as info:
        parse_upstream_policy({"proxy_ssl_max_version": "1.1", "proxy_ssl_min_version": "1.0"})
    assert _paths(info) == ["proxy_ssl_ciphers"]
    assert sorted(UPSTREAM_SETTING_KEYS)[0] == "proxy_ssl_ciphers"


# --- renegotiation ----------------------------------------------------------------------


def test_renegotiation_flags() -> None:
    assert renegotiation.DOWNSTREAM_OPTIONS == ssl.OP_NO_RENEGOTIATION
    assert renegotiation.OP_ALLOW_CLIENT_RENEGOTIATION == 0x100  # docs/tls-stack.md §5
    assert not renegotiation.FORBIDDEN_OPTIONS & (ssl.OP_ALL | ssl.OP_NO_RENEGOTIATION)
    assert renegotiation.is_renegotiation_refused(ssl.OP_ALL | ssl.OP_NO_RENEGOTIATION)
    assert not renegotiation.is_renegotiation_refused(ssl.OP_ALL)
    assert not renegotiation.is_renegotiation_refused(
        ssl.OP_NO_RENEGOTIATION | renegotiation.OP_ALLOW_CLIENT_RENEGOTIATION
    )
