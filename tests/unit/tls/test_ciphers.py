"""trio_gw.tls.ciphers: presets, name validation, the two OpenSSL strings."""

from __future__ import annotations

import pytest

from trio_gw.errors import ConfigError
from trio_gw.tls.ciphers import (
    CIPHER_TABLE,
    DEFAULT_CIPHER_SUITE,
    PRESETS,
    CipherPolicy,
    CipherPreset,
    parse_cipher_names,
    parse_cipher_policy,
    parse_cipher_suite_name,
    preset_policy,
    select_cipher_suite,
)

# Mozilla Server Side TLS v5.7 "intermediate", as in Kong's kong/conf_loader/constants.lua.
MOZILLA_INTERMEDIATE = (
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305"
)


def _problems(exc: pytest.ExceptionInfo[ConfigError]) -> list[tuple[str, str]]:
    return [(p.path, p.message) for p in exc.value.problems]


def test_default_is_intermediate() -> None:
    policy = parse_cipher_policy()
    assert DEFAULT_CIPHER_SUITE is CipherPreset.INTERMEDIATE
    assert policy.preset is CipherPreset.INTERMEDIATE
    assert policy.openssl_ciphers == MOZILLA_INTERMEDIATE
    assert policy.tls13_ciphersuites is None  # OpenSSL's default three suites
    assert policy.names[1] == "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"


def test_modern_has_no_tls12_suites() -> None:
    policy = parse_cipher_policy("modern")
    assert policy.suites == ()
    assert policy.openssl_ciphers is None
    assert policy.tls13_ciphersuites is None


def test_old_extends_intermediate_and_leaves_out_3des() -> None:
    old = parse_cipher_policy("OLD")
    assert old.openssl_ciphers is not None
    assert old.openssl_ciphers.startswith(MOZILLA_INTERMEDIATE + ":")
    assert old.openssl_ciphers.endswith(":AES128-SHA:AES256-SHA")
    assert "DES-CBC3-SHA" not in old.openssl_ciphers
    assert select_cipher_suite("DES-CBC3-SHA") is None  # not in this OpenSSL build


def test_presets_follow_kong() -> None:
    assert [p.value for p in PRESETS] == ["modern", "intermediate", "old"]
    assert [PRESETS[p].prefer_server_ciphers for p in PRESETS] == [False, False, True]
    assert PRESETS[CipherPreset.MODERN].versions.as_ssl_protocols() == "TLSv1.3"
    assert PRESETS[CipherPreset.INTERMEDIATE].versions.as_ssl_protocols() == "TLSv1.2 TLSv1.3"
    assert PRESETS[CipherPreset.OLD].versions.as_ssl_protocols() == "TLSv1 TLSv1.1 TLSv1.2 TLSv1.3"


def test_tyk_iana_list_is_mapped_to_openssl_names() -> None:
    policy = parse_cipher_policy(
        None, ["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"]
    )
    assert policy.preset is CipherPreset.CUSTOM
    assert policy.openssl_ciphers == "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384"
    assert policy.tls13_ciphersuites is None


def test_kong_openssl_string_and_mixed_separators() -> None:
    policy = parse_cipher_policy(
        "custom", "ECDHE-RSA-AES128-GCM-SHA256, tls_ecdhe_ecdsa_with_aes_128_gcm_sha256 :AES128-SHA"
    )
    assert (
        policy.openssl_ciphers
        == "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES128-GCM-SHA256:AES128-SHA"
    )


def test_tls13_suites_are_kept_apart() -> None:
    policy = parse_cipher_policy(
        "custom", "TLS_CHACHA20_POLY1305_SHA256:ECDHE-RSA-AES128-GCM-SHA256:TLS_AES_128_CCM_SHA256"
    )
    assert policy.openssl_ciphers == "ECDHE-RSA-AES128-GCM-SHA256"
    assert policy.tls13_ciphersuites == "TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_CCM_SHA256"
    assert policy.names == (
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "TLS_CHACHA20_POLY1305_SHA256", "TLS_AES_128_CCM_SHA256",
    )  # fmt: skip


def test_duplicates_by_either_name_are_dropped_keeping_the_first() -> None:
    names = parse_cipher_names(
        "ECDHE-RSA-AES128-GCM-SHA256:TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256:AES128-SHA", path="p"
    )
    assert [s.openssl_name for s in names] == ["ECDHE-RSA-AES128-GCM-SHA256", "AES128-SHA"]


def test_unknown_name_is_rejected_by_name_with_a_suggestion() -> None:
    with pytest.raises(ConfigError) as info:
        parse_cipher_policy("custom", "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA265")
    [(path, message)] = _problems(info)
    assert path == "ssl_ciphers"
    assert "'ECDHE-RSA-AES128-GCM-SHA265'" in message
    assert "did you mean 'ECDHE-RSA-AES128-GCM-SHA256'" in message


def test_unknown_iana_name_gets_an_iana_suggestion() -> None:
    with pytest.raises(ConfigError, match="did you mean 'TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256'"):
        parse_cipher_suite_name("TLS_ECDHE_RSA_WITH_AES128_GCM_SHA256", path="p")


def test_every_bad_name_is_reported() -> None:
    with pytest.raises(ConfigError) as info:
        parse_cipher_policy(
            None, ["nope", "AES128-SHA", "HIGH", "!aNULL", "ECDH+AESGCM", "@STRENGTH"]
        )
    messages = [m for _, m in _problems(info)]
    assert len(messages) == 5
    assert "unknown cipher suite 'nope'" in messages[0]
    assert all("keyword or operator" in m for m in messages[1:])


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("NULL-SHA256", "no encryption"),
        ("TLS_RSA_WITH_NULL_SHA", "no encryption"),
        ("ADH-AES128-GCM-SHA256", "anonymous"),
        ("AECDH-AES128-SHA", "anonymous"),
        ("PSK-AES128-GCM-SHA256", "PSK or SRP"),
        ("ECDHE-PSK-CHACHA20-POLY1305", "PSK or SRP"),
        ("SRP-RSA-AES-128-CBC-SHA", "PSK or SRP"),
    ],
)
def test_unusable_suites_are_refused(name: str, reason: str) -> None:
    with pytest.raises(ConfigError, match=reason):
        parse_cipher_suite_name(name, path="ssl_ciphers")


@pytest.mark.parametrize("value", ["", " : , ", [], 42, ["ok", 1], None])
def test_empty_or_malformed_lists_are_rejected(value: object) -> None:
    with pytest.raises(ConfigError) as info:
        parse_cipher_names(value, path="ssl_ciphers")
    assert [p for p, _ in _problems(info)] == ["ssl_ciphers"]


def test_custom_without_ciphers_is_rejected() -> None:
    with pytest.raises(ConfigError) as info:
        parse_cipher_policy("custom")
    assert [p for p, _ in _problems(info)] == ["ssl_cipher_suite"]


def test_ciphers_with_a_named_preset_are_rejected_not_ignored() -> None:
    with pytest.raises(ConfigError, match="only used with ssl_cipher_suite = custom") as info:
        parse_cipher_policy("intermediate", "AES128-SHA")
    assert [p for p, _ in _problems(info)] == ["ssl_ciphers"]


@pytest.mark.parametrize(
    ("value", "fragment"), [("fips", "FIPS provider"), ("strong", "unknown"), (1, "unknown")]
)
def test_unknown_presets(value: object, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment) as info:
        parse_cipher_policy(value)
    assert [p for p, _ in _problems(info)] == ["ssl_cipher_suite"]


def test_custom_paths_are_used() -> None:
    with pytest.raises(ConfigError) as info:
        parse_cipher_policy(None, "bogus", ciphers_path="proxy_ssl_ciphers")
    assert [p for p, _ in _problems(info)] == ["proxy_ssl_ciphers"]


def test_security_level_goes_into_the_cipher_string() -> None:
    policy = CipherPolicy(
        CipherPreset.CUSTOM, parse_cipher_names("AES128-SHA", path="p"), security_level=0
    )
    assert policy.openssl_ciphers == "AES128-SHA:@SECLEVEL=0"
    assert "security level 0" in policy.describe()


def test_policy_keeps_tls13_apart_on_construction() -> None:
    tls13 = parse_cipher_names("TLS_AES_128_GCM_SHA256", path="p")
    with pytest.raises(ConfigError):
        CipherPolicy(CipherPreset.CUSTOM, tls13)


def test_description_and_setting_round_trip() -> None:
    policy = parse_cipher_policy(None, "AES128-SHA:TLS_AES_128_GCM_SHA256")
    again = parse_cipher_policy(None, policy.as_setting())
    assert again == policy
    assert "custom (ssl_ciphers)" in policy.describe()
    assert "intermediate (Mozilla v5.7)" in preset_policy(CipherPreset.INTERMEDIATE).describe()


def test_warnings_name_weak_suites() -> None:
    assert preset_policy(CipherPreset.INTERMEDIATE).warnings() == []
    warnings = preset_policy(CipherPreset.OLD).warnings()
    assert any("forward secrecy" in w and "AES128-GCM-SHA256" in w for w in warnings)
    assert any("SHA-1" in w and "ECDHE-RSA-AES128-SHA" in w for w in warnings)


def test_table_lookup() -> None:
    suite = select_cipher_suite("ecdhe-rsa-aes128-gcm-sha256")
    assert suite is not None and suite.code == 0xC02F
    assert suite.iana_name == "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"
    assert select_cipher_suite("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256") is suite
    assert len({s.code for s in CIPHER_TABLE}) == len(CIPHER_TABLE)
