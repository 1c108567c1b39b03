"""DH parameters for the DHE suites (``ssl_dhparam``): the RFC 7919 groups, PEM files, and the listener policy."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trio_gw.errors import ConfigError
from trio_gw.tls.dhparams import (
    DEFAULT_GROUP,
    FFDHE_GROUPS,
    encode_pkcs3,
    ffdhe_group,
    is_path,
    key_may_use_dhe,
    parse_dhparam,
    read_pem,
)
from trio_gw.tls.downstream import parse_downstream_policy

#: The openssl CLI is the oracle; CI installs it (tools/install-system-tools.sh), so there it must be present.
needs_cli = pytest.mark.skipif(shutil.which("openssl") is None and os.environ.get("CI") != "true",
                               reason="needs the openssl CLI")


def openssl_group(name: str) -> bytes:
    """The named group as OpenSSL itself writes it (no computation: OpenSSL's built-in table)."""
    return subprocess.run(["openssl", "genpkey", "-genparam", "-algorithm", "DH", "-pkeyopt", f"group:{name}"],
                          check=True, capture_output=True, timeout=30).stdout


@needs_cli
@pytest.mark.parametrize("name", FFDHE_GROUPS)
def test_each_computed_group_is_the_one_openssl_knows(name: str) -> None:
    group = ffdhe_group(name)
    assert group.pem == openssl_group(name)
    assert group.bits == int(name.removeprefix("ffdhe"))


@needs_cli
def test_a_file_holding_a_group_is_recognised_by_name() -> None:
    assert parse_dhparam(openssl_group("ffdhe4096").decode()).name == "ffdhe4096"


@needs_cli
def test_other_safe_prime_parameters_are_accepted_as_custom() -> None:
    modp = openssl_group("modp_2048")  # RFC 3526 group 14: a safe prime, not an RFC 7919 group
    params = parse_dhparam(modp.decode())
    assert (params.name, params.bits) == ("custom", 2048)
    assert read_pem(params.pem.decode()) == read_pem(modp.decode())
    assert params.describe() == "custom 2048-bit DH parameters"


def test_group_names_in_any_case() -> None:
    assert parse_dhparam(" FFDHE3072 ").name == "ffdhe3072"
    assert parse_dhparam("ffdhe2048") is ffdhe_group("ffdhe2048")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("ffdhe1024", "not a predefined group"),
        ("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n", "no '-----BEGIN DH PARAMETERS-----' block"),
        ("-----BEGIN DH PARAMETERS-----\n!!!!\n-----END DH PARAMETERS-----\n", "no '-----BEGIN DH PARAMETERS-----'"),
        ("-----BEGIN DH PARAMETERS-----\nMAA=\n-----END DH PARAMETERS-----\n", "not the DER structure"),
    ],
)
def test_unusable_values_name_the_setting(value: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_dhparam(value)
    assert info.value.problems[0].path == "ssl_dhparam"
    assert message in info.value.problems[0].message


def test_small_parameters_are_refused() -> None:
    weak = encode_pkcs3((1 << 1023) + 1155, 2).decode()
    with pytest.raises(ConfigError, match="1024-bit DH parameters are too weak"):
        parse_dhparam(weak)


def test_a_composite_prime_is_refused() -> None:
    prime = int.from_bytes(_der_prime(ffdhe_group("ffdhe2048").pem), "big")
    with pytest.raises(ConfigError, match="not a safe prime"):
        parse_dhparam(encode_pkcs3(prime + 2, 2).decode())  # p + 2 is divisible by 3: p = 2 mod 3 for ffdhe primes


def test_a_generator_out_of_range_is_refused() -> None:
    prime = int.from_bytes(_der_prime(ffdhe_group("ffdhe3072").pem), "big")
    with pytest.raises(ConfigError, match="generator"):
        parse_dhparam(encode_pkcs3(prime, prime - 1).decode())


def test_trailing_data_and_truncation_are_refused() -> None:
    der = base64.b64decode("".join(ffdhe_group("ffdhe2048").pem.decode().splitlines()[1:-1]))
    for bad in (der + b"\x00", der[:-5]):
        text = "-----BEGIN DH PARAMETERS-----\n" + base64.b64encode(bad).decode() + "\n-----END DH PARAMETERS-----\n"
        with pytest.raises(ValueError):
            read_pem(text)


def _der_prime(pem: bytes) -> bytes:
    der = base64.b64decode("".join(pem.decode().splitlines()[1:-1]))
    # SEQUENCE (30 82 LL LL), INTEGER (02 82 LL LL) with its leading zero byte
    length = int.from_bytes(der[6:8], "big")
    return der[8 : 8 + length]


@given(st.integers(min_value=1, max_value=1 << 9000), st.integers(min_value=1, max_value=1 << 64))
def test_encoding_round_trips(prime: int, generator: int) -> None:
    assert read_pem(encode_pkcs3(prime, generator).decode()) == (prime, generator)


@given(st.binary(max_size=600))
def test_any_der_inside_the_frame_reads_or_is_a_value_error(der: bytes) -> None:
    text = "-----BEGIN DH PARAMETERS-----\n" + base64.b64encode(der).decode() + "\n-----END DH PARAMETERS-----\n"
    try:
        prime, generator = read_pem(text)
    except ValueError:
        return
    assert prime > 0 and generator > 0


@pytest.mark.parametrize(
    ("value", "path"),
    [("/etc/ssl/dhparam.pem", True), ("dh.pem", True), ("ffdhe2048", False), ("FFDHE8192", False),
     ("-----BEGIN DH PARAMETERS-----\n...", False), ("", False)],
)
def test_is_path(value: str, path: bool) -> None:
    assert is_path(value) is path


# --- the listener policy ---------------------------------------------------------------------------------


def test_intermediate_default_loads_ffdhe2048() -> None:
    policy = parse_downstream_policy({})
    assert policy.dh_params is ffdhe_group(DEFAULT_GROUP)
    assert "DHE with ffdhe2048" in policy.describe()
    assert policy.warnings() == []


def test_configured_group_overrides_the_preset() -> None:
    policy = parse_downstream_policy({"ssl_cipher_suite": "intermediate", "ssl_dhparam": "ffdhe3072"})
    assert policy.dh_params is not None and policy.dh_params.name == "ffdhe3072"


def test_old_preset_gets_dhe_parameters_too() -> None:
    assert parse_downstream_policy({"ssl_cipher_suite": "old"}).dh_params is ffdhe_group(DEFAULT_GROUP)


@pytest.mark.parametrize(
    ("settings", "why"),
    [
        ({"ssl_cipher_suite": "modern"}, "TLS 1.2 is disabled"),
        ({"ssl_min_version": "1.3"}, "TLS 1.2 is disabled"),
        ({"ssl_cipher_suite": "custom", "ssl_ciphers": "ECDHE-ECDSA-AES128-GCM-SHA256"}, "no DHE suite (DHE-RSA-*) is enabled"),
    ],
)
def test_no_dhe_suite_no_parameters_and_a_set_value_is_reported_unused(settings: dict[str, str], why: str) -> None:
    assert parse_downstream_policy(settings).dh_params is None
    policy = parse_downstream_policy({**settings, "ssl_dhparam": "ffdhe4096"})
    assert policy.dh_params is None
    assert f"ssl_dhparam is unused: {why}" in policy.warnings()


def test_custom_list_with_a_dhe_suite_gets_the_default_group() -> None:
    policy = parse_downstream_policy({"ssl_cipher_suite": "custom", "ssl_ciphers": "DHE-RSA-AES256-GCM-SHA384"})
    assert policy.dh_params is ffdhe_group(DEFAULT_GROUP)


def test_a_bad_value_is_reported_with_the_other_problems() -> None:
    with pytest.raises(ConfigError) as info:
        parse_downstream_policy({"ssl_dhparam": "ffdhe1000", "ssl_session_timeout": "forever"})
    assert {p.path for p in info.value.problems} == {"ssl_dhparam", "ssl_session_timeout"}


def test_policies_differing_only_in_parameters_differ() -> None:
    """The listener context is replaced when the parameters change (the policy is part of its key)."""
    assert parse_downstream_policy({"ssl_dhparam": "ffdhe2048"}) == parse_downstream_policy({})
    assert parse_downstream_policy({"ssl_dhparam": "ffdhe3072"}) != parse_downstream_policy({})


# --- which certificate contexts load the parameters ------------------------------------------------------


def _keys() -> dict[str, bytes]:
    import trustme
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    pkcs8, legacy = serialization.PrivateFormat.PKCS8, serialization.PrivateFormat.TraditionalOpenSSL
    pem, plain = serialization.Encoding.PEM, serialization.NoEncryption()
    ca = trustme.CA()
    return {
        "rsa-pkcs8": rsa_key.private_bytes(pem, pkcs8, plain),
        "rsa-pkcs1": rsa_key.private_bytes(pem, legacy, plain),
        "ec-pkcs8": ec_key.private_bytes(pem, pkcs8, plain),
        "ec-sec1": ec_key.private_bytes(pem, legacy, plain),
        "ed25519": ed25519.Ed25519PrivateKey.generate().private_bytes(pem, pkcs8, plain),
        "trustme-rsa": ca.issue_cert("a.test", key_type=trustme.KeyType.RSA).private_key_pem.bytes(),
        "trustme-ecdsa": ca.issue_cert("a.test").private_key_pem.bytes(),
    }


def test_only_keys_that_are_certainly_not_rsa_skip_the_parameters() -> None:
    keys = _keys()
    verdicts = {name: key_may_use_dhe(pem) for name, pem in keys.items()}
    assert verdicts == {"rsa-pkcs8": True, "rsa-pkcs1": True, "ec-pkcs8": False, "ec-sec1": False,
                        "ed25519": True, "trustme-rsa": True, "trustme-ecdsa": False}
    assert key_may_use_dhe(keys["ec-pkcs8"].decode()) is False  # str as stored in the entities
    assert key_may_use_dhe("not a key") is True  # unknown: load them
