"""Name rules of trio_gw.tls.hostname, with OpenSSL's own hostname check as a cross-check."""

from __future__ import annotations

import ipaddress
import ssl

import pytest
import trustme
from cryptography import x509

from trio_gw.errors import ConfigError, GatewayError
from trio_gw.testing.memory_tls import memory_handshake
from trio_gw.tls.hostname import (
    InvalidServerName,
    is_ip_literal,
    matches_hostname,
    matches_wildcard,
    normalize_server_name,
    parse_configured_name,
    wildcard_base,
)


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("api.example.com", "api.example.com"),
        ("API.Example.COM", "api.example.com"),
        ("api.example.com.", "api.example.com"),
        ("localhost", "localhost"),
        ("my_service.internal", "my_service.internal"),
        ("bücher.example", "xn--bcher-kva.example"),
        ("BÜCHER.example.", "xn--bcher-kva.example"),
        ("XN--BCHER-KVA.example", "xn--bcher-kva.example"),
        ("bücher。example", "xn--bcher-kva.example"),  # ideographic full stop
        ("ＡＰＩ.example", "api.example"),  # full-width letters map under IDNA
        ("127.0.0.1", "127.0.0.1"),
        ("2001:DB8::1", "2001:db8::1"),
        ("a" * 63 + ".example", "a" * 63 + ".example"),
        (".".join(["a" * 62] * 4) + ".a", ".".join(["a" * 62] * 4) + ".a"),  # 253
    ],
)
def test_normalize_server_name(raw: str, canonical: str) -> None:
    assert normalize_server_name(raw) == canonical
    assert normalize_server_name(canonical) == canonical


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "empty"),
        (".", "empty"),
        ("a..b", "empty label"),
        (".example.com", "empty label"),
        ("example.com..", "empty label"),
        ("-api.example.com", "hyphen"),
        ("api-.example.com", "hyphen"),
        ("a" * 64 + ".example", "label longer"),
        (".".join(["a" * 62] * 4) + ".ab", "longer than 253"),
        ("x" * 5000, "too long"),
        ("example.com:443", "port"),
        ("*.example.com", "wildcard"),
        ("exa mple.com", "characters"),
        ("exa\x00mple.com", "characters"),
        ("[::1]", "IPv6"),
        ("fe80::1%eth0", "IPv6"),
        ("1:2", "port"),
        ("a\u2024b.example", "maps to a dot"),
        ("\ud800.example", "IDNA"),
        ("bücher..example", "IDNA"),
    ],
)
def test_normalize_rejects_invalid_names(raw: str, reason: str) -> None:
    with pytest.raises(InvalidServerName) as info:
        normalize_server_name(raw)
    assert reason in info.value.reason
    assert isinstance(info.value, GatewayError)
    assert info.value.name == raw


def test_parse_configured_name_raises_config_error_with_path() -> None:
    assert parse_configured_name("API.example.com.", "snis[0].name") == "api.example.com"
    with pytest.raises(ConfigError) as info:
        parse_configured_name("api.example.com:8443", "snis[0].name")
    assert info.value.problems[0].path == "snis[0].name"
    assert "port" in str(info.value)
    with pytest.raises(ConfigError, match="must not be an IP"):
        parse_configured_name("10.0.0.1", "snis[1].name")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1", True),
        ("::1", True),
        ("2001:db8::1", True),
        ("::ffff:192.0.2.1", True),
        ("1.2.3", False),
        ("01.2.3.4", False),
        ("256.1.1.1", False),
        ("fe80::1%eth0", False),
        ("[::1]", False),
        ("example.com", False),
        ("", False),
        ("1", False),
    ],
)
def test_is_ip_literal(text: str, expected: bool) -> None:
    assert is_ip_literal(text) is expected


@pytest.mark.parametrize(
    ("pattern", "name", "expected"),
    [
        ("*.example.com", "api.example.com", True),
        ("*.example.com", "API.EXAMPLE.COM.", True),
        ("*.Example.COM.", "api.example.com", True),
        ("*.example.com", "xn--bcher-kva.example.com", True),
        ("*.bücher.example", "a.xn--bcher-kva.example", True),
        ("*.example.com", "example.com", False),  # not the apex
        ("*.example.com", "a.b.example.com", False),  # not two labels
        ("*.example.com", ".example.com", False),  # not an empty label
        ("*.example.com", "api.example.org", False),
        ("*.example.com", "apiexample.com", False),
        ("*.com", "example.com", False),  # too few labels under the wildcard
        ("*.w.test", "x.w.test", True),
        ("*.w.test", "w.test", False),
        ("f*o.example.com", "foo.example.com", False),  # partial wildcards
        ("*o.example.com", "foo.example.com", False),
        ("f*.example.com", "foo.example.com", False),
        ("a.*.example.com", "a.b.example.com", False),
        ("*.*.example.com", "a.b.example.com", False),
        ("example.*", "example.com", False),  # rightmost: SNI entities only
        ("*", "example.com", False),
        ("api.example.com", "api.example.com", False),  # not a wildcard
        ("*.0.0.1", "127.0.0.1", False),  # IP literals never match wildcards
        ("*.example.com", "not valid!.example.com", False),
    ],
)
def test_matches_wildcard(pattern: str, name: str, expected: bool) -> None:
    assert matches_wildcard(pattern, name) is expected


def test_wildcard_base() -> None:
    assert wildcard_base("*.Example.COM.") == "example.com"
    assert wildcard_base("*.com") is None
    assert wildcard_base("*.1.2.3") is None or wildcard_base("*.1.2.3") == "1.2.3"
    assert wildcard_base("*.10.0.0.1") is None
    assert wildcard_base("x.example.com") is None
    assert wildcard_base("*.") is None


def test_matches_hostname_dns_and_ip_entries() -> None:
    sans: list[str | ipaddress.IPv4Address | ipaddress.IPv6Address] = [
        "api.example.com",
        "*.apps.example.com",
        ipaddress.ip_address("192.0.2.7"),
        ipaddress.ip_address("2001:db8::7"),
        "1.2.3.4",  # a dNSName that looks like an IP: never matches an IP
        "not valid!",
        "*.com",
    ]
    assert matches_hostname(sans, "API.example.com.")
    assert matches_hostname(sans, "shop.apps.example.com")
    assert not matches_hostname(sans, "apps.example.com")
    assert not matches_hostname(sans, "a.shop.apps.example.com")
    assert matches_hostname(sans, "192.0.2.7")
    assert matches_hostname(sans, "2001:DB8:0::7")
    assert not matches_hostname(sans, "1.2.3.4")
    assert not matches_hostname(sans, "::ffff:192.0.2.7")
    assert not matches_hostname(sans, "example.com")
    assert not matches_hostname(sans, "")
    assert not matches_hostname([], "api.example.com")
    assert not matches_hostname(["192.0.2.7"], "192.0.2.7")


# --- cross-check with OpenSSL: the gateway's rules must agree with what ssl does


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def _identities(
    cert: trustme.LeafCert,
) -> list[str | ipaddress.IPv4Address | ipaddress.IPv6Address]:
    parsed = x509.load_pem_x509_certificate(cert.cert_chain_pems[0].bytes())
    san = parsed.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    names: list[str | ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    names.extend(san.get_values_for_type(x509.DNSName))
    names.extend(san.get_values_for_type(x509.IPAddress))  # type: ignore[arg-type]
    return names


def _openssl_accepts(ca: trustme.CA, cert: trustme.LeafCert, name: str) -> bool:
    """Run an in-memory handshake (no sockets) with ssl's hostname check."""
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    cert.configure_cert(server_ctx)
    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ca.configure_trust(client_ctx)
    client_ctx.hostname_checks_common_name = False
    try:
        memory_handshake(client_ctx, server_ctx, server_hostname=name)
    except ssl.SSLCertVerificationError:
        return False
    return True


NAMES = [
    "api.example.com",
    "API.EXAMPLE.COM",
    "x.apps.example.com",
    "apps.example.com",
    "a.b.apps.example.com",
    "example.com",
    "other.example.org",
    "127.0.0.1",
    "::1",
    "10.0.0.1",
    "xn--bcher-kva.apps.example.com",
]


@pytest.mark.parametrize("name", NAMES)
def test_matches_hostname_agrees_with_openssl(ca: trustme.CA, name: str) -> None:
    cert = ca.issue_cert("api.example.com", "*.apps.example.com", "127.0.0.1", "::1")
    assert matches_hostname(_identities(cert), name) is _openssl_accepts(ca, cert, name)
