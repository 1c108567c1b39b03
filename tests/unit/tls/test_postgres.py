"""trio_gw.tls.postgres: Kong's pg_ssl* settings → libpq parameters, material checks, failures explained."""

from __future__ import annotations

import ssl
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from hypothesis import given
from hypothesis import strategies as st

from trio_gw.errors import ConfigError
from trio_gw.testing.pki import issue, make_ca
from trio_gw.tls.postgres import (
    PgTlsFiles,
    PgTlsPolicy,
    SslMode,
    check_client_material,
    combine_trust,
    libpq_tls_params,
    parse_pg_tls_policy,
)
from trio_gw.tls.postgres_failures import FailureKind, explain_connect_error

LIBPQ_18 = 180006
FILES = PgTlsFiles("/p/pg-tls/trusted.pem", "/p/pg-tls/client.pem", "/p/pg-tls/client.key")


def policy(**settings: Any) -> PgTlsPolicy:
    values: dict[str, Any] = {"pg_ssl_version": "tlsv1_2", "lua_ssl_trusted_certificate": ("system",)}
    values.update(settings)
    return parse_pg_tls_policy(values)


def problems(**settings: Any) -> dict[str, str]:
    with pytest.raises(ConfigError) as info:
        policy(**settings)
    return {p.path: p.message for p in info.value.problems}


# -- the mapping -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "mode", "required_by"),
    [
        ({}, SslMode.DISABLE, ""),
        ({"pg_ssl": True}, SslMode.PREFER, ""),
        ({"pg_ssl": True, "pg_ssl_required": True}, SslMode.REQUIRE, "pg_ssl_required"),
        ({"pg_ssl": True, "pg_ssl_verify": True}, SslMode.VERIFY_FULL, "pg_ssl_verify"),
        ({"pg_ssl": True, "pg_ssl_verify": True, "pg_ssl_required": True}, SslMode.VERIFY_FULL, "pg_ssl_verify"),
    ],
)
def test_kong_flags_map_to_sslmode(settings: dict[str, Any], mode: SslMode, required_by: str) -> None:
    p = policy(**settings)
    assert (p.mode, p.required_by) == (mode, required_by)
    assert libpq_tls_params(p, FILES, libpq_version=LIBPQ_18)["sslmode"] == mode.value


def test_off_is_plain_tcp_and_nothing_else() -> None:
    assert libpq_tls_params(policy(), PgTlsFiles(), libpq_version=LIBPQ_18) == {"sslmode": "disable"}
    assert policy().describe() == "TLS off"


def test_verify_full_takes_the_combined_bundle_and_checks_names() -> None:
    p = policy(pg_ssl=True, pg_ssl_verify=True, lua_ssl_trusted_certificate=("system", "/etc/ca.pem"))
    assert p.trusted == ("system", "/etc/ca.pem")
    params = libpq_tls_params(p, FILES, libpq_version=LIBPQ_18)
    assert params["sslmode"] == "verify-full" and params["sslrootcert"] == FILES.root_cert


def test_without_verification_no_ca_is_needed_or_passed() -> None:
    p = policy(pg_ssl=True, pg_ssl_required=True, lua_ssl_trusted_certificate=())
    assert p.trusted == ()
    assert "sslrootcert" not in libpq_tls_params(p, PgTlsFiles(), libpq_version=LIBPQ_18)


@pytest.mark.parametrize(
    ("version", "low", "high"),
    [("tlsv1_2", "TLSv1.2", "TLSv1.2"), ("tlsv1_3", "TLSv1.3", "TLSv1.3"), ("any", "TLSv1.2", None),
     ("TLSv1_3", "TLSv1.3", "TLSv1.3")],
)  # fmt: skip
def test_pg_ssl_version_pins_or_floors_the_version(version: str, low: str, high: str | None) -> None:
    params = libpq_tls_params(policy(pg_ssl=True, pg_ssl_version=version), PgTlsFiles(), libpq_version=LIBPQ_18)
    assert params["ssl_min_protocol_version"] == low
    assert params.get("ssl_max_protocol_version") == high


def test_describe_names_mode_versions_and_certificate_but_no_path() -> None:
    p = policy(pg_ssl=True, pg_ssl_version="any", pg_ssl_cert="/secret/c.pem", pg_ssl_cert_key="/secret/c.key")
    assert p.describe() == "TLS sslmode=prefer, TLSv1.2 to highest, client certificate"
    assert policy(pg_ssl=True).describe() == "TLS sslmode=prefer, TLSv1.2"


def test_client_certificate_goes_to_sslcert_and_sslkey() -> None:
    p = policy(pg_ssl=True, pg_ssl_cert="/c.pem", pg_ssl_cert_key="/c.key")
    params = libpq_tls_params(p, FILES, libpq_version=LIBPQ_18)
    assert (params["sslcert"], params["sslkey"]) == (FILES.client_cert, FILES.client_key)
    assert "sslcertmode" not in params


def test_without_a_client_certificate_libpq_never_sends_one_of_its_own() -> None:
    params = libpq_tls_params(policy(pg_ssl=True), PgTlsFiles(), libpq_version=LIBPQ_18)
    assert params["sslcertmode"] == "disable"  # not ~/.postgresql/postgresql.crt
    assert "sslcertmode" not in libpq_tls_params(policy(pg_ssl=True), PgTlsFiles(), libpq_version=150000)


def test_an_old_libpq_cannot_pin_a_version_but_can_do_any() -> None:
    with pytest.raises(ConfigError, match="pg_ssl_version: pinning a TLS version needs libpq 13 or later \\(this one is 12.5"):
        libpq_tls_params(policy(pg_ssl=True), PgTlsFiles(), libpq_version=120005)
    params = libpq_tls_params(policy(pg_ssl=True, pg_ssl_version="any"), PgTlsFiles(), libpq_version=120005)
    assert params == {"sslmode": "prefer"}


def test_material_that_was_not_written_is_an_error_not_a_silent_gap() -> None:
    with pytest.raises(ConfigError, match="lua_ssl_trusted_certificate: the combined CA bundle was not written"):
        libpq_tls_params(policy(pg_ssl=True, pg_ssl_verify=True), PgTlsFiles(), libpq_version=LIBPQ_18)
    with pytest.raises(ConfigError, match="pg_ssl_cert: the client certificate and key were not written"):
        libpq_tls_params(policy(pg_ssl=True, pg_ssl_cert="/c", pg_ssl_cert_key="/k"), PgTlsFiles(),
                         libpq_version=LIBPQ_18)  # fmt: skip


# -- contradictions ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["pg_ssl_required", "pg_ssl_verify", "pg_ssl_cert", "pg_ssl_cert_key"])
def test_a_tls_setting_without_pg_ssl_is_refused_by_name(name: str) -> None:
    value: object = True if name in ("pg_ssl_required", "pg_ssl_verify") else "/x.pem"
    found = problems(**{name: value})
    assert found[name].startswith("needs pg_ssl = on")


def test_a_certificate_needs_its_key_and_the_key_its_certificate() -> None:
    assert "pg_ssl_cert_key" in problems(pg_ssl=True, pg_ssl_cert="/c.pem")
    assert "pg_ssl_cert" in problems(pg_ssl=True, pg_ssl_cert_key="/c.key")


def test_verification_with_nothing_to_verify_against_is_refused() -> None:
    found = problems(pg_ssl=True, pg_ssl_verify=True, lua_ssl_trusted_certificate=())
    assert "nothing would verify PostgreSQL's certificate" in found["lua_ssl_trusted_certificate"]


def test_tls_1_1_is_refused_with_the_reason_and_unknown_versions_with_the_choices() -> None:
    assert "RFC 8996" in problems(pg_ssl=True, pg_ssl_version="tlsv1_1")["pg_ssl_version"]
    assert "expected one of tlsv1_1, tlsv1_2, tlsv1_3, any" in problems(pg_ssl_version="ssl3")["pg_ssl_version"]


def test_every_problem_is_reported_at_once() -> None:
    found = problems(pg_ssl_verify=True, pg_ssl_cert="/c.pem", pg_ssl_version="tlsv1_1")
    assert set(found) == {"pg_ssl_verify", "pg_ssl_cert", "pg_ssl_cert_key", "pg_ssl_version"}


@given(
    pg_ssl=st.booleans(), required=st.booleans(), verify=st.booleans(), cert=st.booleans(), key=st.booleans(),
    version=st.sampled_from(["tlsv1_1", "tlsv1_2", "tlsv1_3", "any", "bogus"]),
    trusted=st.sampled_from([(), ("system",)]),
)  # fmt: skip
def test_a_policy_is_never_weaker_than_its_settings(
    pg_ssl: bool, required: bool, verify: bool, cert: bool, key: bool, version: str, trusted: tuple[str, ...]
) -> None:
    settings = {
        "pg_ssl": pg_ssl, "pg_ssl_required": required, "pg_ssl_verify": verify, "pg_ssl_version": version,
        "pg_ssl_cert": "/c" if cert else None, "pg_ssl_cert_key": "/k" if key else None,
        "lua_ssl_trusted_certificate": trusted,
    }  # fmt: skip
    try:
        p = parse_pg_tls_policy(settings)
    except ConfigError as exc:
        assert exc.problems and all(pr.path for pr in exc.problems)
        return
    assert p.uses_tls == pg_ssl
    if verify:
        assert p.mode is SslMode.VERIFY_FULL and p.trusted
    elif required:
        assert p.mode is SslMode.REQUIRE
    if pg_ssl:
        assert p.minimum_version is not None and p.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert (p.client_cert is None) == (p.client_key is None)


# -- material ----------------------------------------------------------------------------


def test_client_material_is_checked_and_the_key_re_encoded_as_pkcs8() -> None:
    root = make_ca()
    leaf = issue(root, "test")
    sec1 = leaf.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                  serialization.NoEncryption())  # fmt: skip
    material = check_client_material(leaf.chain_pem().encode(), sec1)
    assert material.key_pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    assert material.chain_pem.count(b"BEGIN CERTIFICATE") == 1
    assert "PRIVATE" not in repr(material) and "hidden" in repr(material)


def test_a_key_of_another_certificate_is_refused_naming_the_key_setting() -> None:
    root = make_ca()
    a, b = issue(root, "a"), issue(root, "b")
    with pytest.raises(ConfigError, match="^pg_ssl_cert_key: does not match the certificate of pg_ssl_cert$"):
        check_client_material(a.chain_pem().encode(), b.key_pem().encode())


def test_garbage_and_encrypted_material_is_named() -> None:
    root = make_ca()
    leaf = issue(root, "test")
    with pytest.raises(ConfigError, match="^pg_ssl_cert: not a PEM certificate"):
        check_client_material(b"hello", leaf.key_pem().encode())
    with pytest.raises(ConfigError, match="^pg_ssl_cert_key: not a usable private key"):
        check_client_material(leaf.chain_pem().encode(), b"hello")
    encrypted = leaf.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.BestAvailableEncryption(b"pw"))  # fmt: skip
    with pytest.raises(ConfigError, match="the key is encrypted") as info:
        check_client_material(leaf.chain_pem().encode(), encrypted)
    assert "BEGIN" not in str(info.value)


def test_trust_sources_are_combined_in_order_without_duplicates() -> None:
    a, b = make_ca(), make_ca()
    pa, pb = a.cert.public_bytes(serialization.Encoding.PEM), b.cert.public_bytes(serialization.Encoding.PEM)
    bundle = combine_trust([("s[0]", pa + pb), ("s[1]", b"text around\n" + pb)])
    assert bundle == pa + pb


def test_a_trust_source_without_certificates_is_named() -> None:
    with pytest.raises(ConfigError) as info:
        combine_trust([("lua_ssl_trusted_certificate[0]", make_ca().cert.public_bytes(serialization.Encoding.PEM)),
                       ("lua_ssl_trusted_certificate[1]", b"not a certificate")])  # fmt: skip
    assert [p.path for p in info.value.problems] == ["lua_ssl_trusted_certificate[1]"]


# -- failures (libpq 18's words, as seen against PostgreSQL 15) ---------------------------

PREFIX = 'connection failed: connection to server at "127.0.0.1", port 42413 failed: '


@pytest.mark.parametrize(
    ("text", "kind", "setting", "says"),
    [
        ("SSL error: certificate verify failed", FailureKind.MISCONFIGURED, "lua_ssl_trusted_certificate",
         "not issued by a CA of lua_ssl_trusted_certificate"),
        ('server certificate for "db.example" does not match host name "127.0.0.1"', FailureKind.MISCONFIGURED,
         "pg_host", "does not name pg_host"),
        ("server does not support SSL, but SSL was required", FailureKind.MISCONFIGURED, "pg_ssl_required",
         "pg_ssl_required = on requires it"),
        ("FATAL:  connection requires a valid client certificate", FailureKind.MISCONFIGURED, "pg_ssl_cert",
         "requires a client certificate"),
        ('FATAL:  certificate authentication failed for user "test"', FailureKind.MISCONFIGURED, "pg_ssl_cert",
         "CN must be the user name"),
        ("SSL error: tlsv1 alert unknown ca", FailureKind.MISCONFIGURED, "pg_ssl_cert", "does not trust"),
        ("SSL error: tlsv1 alert protocol version\nThis may indicate that the server does not support any SSL "
         "protocol version between TLSv1.3 and TLSv1.3.", FailureKind.MISCONFIGURED, "pg_ssl_version",
         "no TLS version in common"),
        ('FATAL:  pg_hba.conf rejects connection for host "127.0.0.1", user "test", database "test", no encryption',
         FailureKind.MISCONFIGURED, "pg_ssl", "set pg_ssl = on"),
        ('FATAL:  no pg_hba.conf entry for host "127.0.0.1", user "x", database "y", SSL encryption',
         FailureKind.MISCONFIGURED, "pg_user", "admits no connection"),
        ('FATAL:  role "nobody" does not exist', FailureKind.MISCONFIGURED, "pg_user", "user does not exist"),
        ('FATAL:  database "nope" does not exist', FailureKind.MISCONFIGURED, "pg_database", "does not exist"),
        ('FATAL:  password authentication failed for user "test"', FailureKind.MISCONFIGURED, "pg_password",
         "refused the password"),
        ('private key file "/k" has group or world access; file must have permissions u=rw (0600)',
         FailureKind.MISCONFIGURED, "pg_ssl_cert", "could not read"),
        ("Connection refused\n\tIs the server running on that host and accepting TCP/IP connections?",
         FailureKind.UNREACHABLE, "pg_host", "cannot be reached"),
        ("timeout expired", FailureKind.UNREACHABLE, "pg_host", "cannot be reached"),
        ("FATAL:  the database system is starting up", FailureKind.UNREACHABLE, "pg_host", "cannot be reached"),
        ("FATAL:  terminating connection due to unexpected postmaster exit", FailureKind.UNREACHABLE, "pg_host",
         "cannot be reached"),
        ("something nobody has seen", FailureKind.OTHER, "database", "cannot connect to PostgreSQL"),
    ],
)  # fmt: skip
def test_libpq_failures_are_explained_naming_the_setting(text: str, kind: FailureKind, setting: str, says: str) -> None:
    failure = explain_connect_error(PREFIX + text, policy(pg_ssl=True, pg_ssl_required=True))
    assert (failure.kind, failure.setting) == (kind, setting)
    assert says in failure.message
    assert "\n" not in failure.message and "(libpq: " in failure.message
    assert "connection to server at" not in failure.message  # libpq's own words, without the noise


def test_the_setting_that_required_tls_is_the_one_named() -> None:
    text = PREFIX + "server does not support SSL, but SSL was required"
    failure = explain_connect_error(text, policy(pg_ssl=True, pg_ssl_verify=True))
    assert failure.setting == "pg_ssl_verify" and "pg_ssl_verify = on requires it" in failure.message


@given(st.text())
def test_any_text_gives_one_line_and_never_raises(text: str) -> None:
    failure = explain_connect_error(text, PgTlsPolicy())
    assert "\n" not in failure.message and failure.setting
