"""Pure upstream TLS policy: host maps, pins, identity checks, reason codes, proxy URLs, profiles."""

from __future__ import annotations

import pytest

from trio_gw.errors import ConfigError
from trio_gw.model.entities import CACertificate, Certificate, Entities, Service
from trio_gw.testing import pki as tpki
from trio_gw.tls.downstream import parse_upstream_policy
from trio_gw.tls.hostmap import parse_host_map, parse_host_map_values
from trio_gw.tls.pinning import PinSet, matches_pins, parse_pin, spki_digest, spki_pin
from trio_gw.tls.proxy_url import parse_proxy_url
from trio_gw.tls.upstream import (
    ClientCertificate,
    UpstreamTlsDefaults,
    parse_upstream_defaults,
    select_upstream_profile,
    split_combined_pem,
)
from trio_gw.tls.upstream_identity import (
    UpstreamReason,
    UpstreamTlsError,
    check_upstream_identity,
    classify_read_failure,
    classify_tls_failure,
    upstream_read_failure,
)
from trio_gw.tls.versions import VersionRange

import ssl

ROOT = tpki.make_ca()
SAN_LEAF = tpki.issue(ROOT, "api.example", ip_addresses=["10.0.0.1"])
CN_LEAF = tpki.cn_only_leaf(ROOT, "Legacy.Example")
C1 = "5f0c1f7e-3c39-4a53-9a8c-1b7f0a6f2c10"


# --- host maps ------------------------------------------------------------------------------


def test_host_map_most_specific_entry_wins() -> None:
    m = parse_host_map({"*": "all", "*.example.com": "wild", "api.example.com": "exact",
                        "api.example.com:8443": "port", "10.0.0.1": "ip"}, path="upstream_certificates")
    assert m.select("api.example.com", 8443) == ("api.example.com:8443", "port")
    assert m.select("API.Example.com.", 443) == ("api.example.com", "exact")
    assert m.select("web.example.com", 443) == ("*.example.com", "wild")
    assert m.select("a.b.example.com", 443) == ("*", "all")  # one label only
    assert m.select("example.com", 443) == ("*", "all")
    assert m.select("10.0.0.1", 80) == ("10.0.0.1", "ip")
    assert parse_host_map(None, path="x").select("a.example", 1) is None


def test_host_map_accepts_json_text_and_comma_lists() -> None:
    m = parse_host_map_values('{"api.example": "sha256//a,sha256//b"}', path="pinned_public_keys")
    assert m.select("api.example", 443) == ("api.example", ("sha256//a", "sha256//b"))


@pytest.mark.parametrize("raw, message", [
    ({"*.com": "x"}, "wildcard"), ({"a b": "x"}, "not a host"), ({"api.example:0": "x"}, "port"),
    ({"a.example": ""}, "non-empty"), ("[1]", "mapping"), ({"A.example": "x", "a.example.": "y"}, "same host"),
])
def test_host_map_errors_name_the_key(raw: object, message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_host_map(raw, path="upstream_certificates")
    assert message in str(exc.value) and "upstream_certificates" in str(exc.value)


# --- pins ---------------------------------------------------------------------------------------


def test_pins_match_the_leaf_spki_only() -> None:
    pin = spki_pin(SAN_LEAF.cert_der())
    pins = PinSet.from_pins([pin], path="p")
    assert matches_pins(pins, SAN_LEAF.cert_der())
    assert not matches_pins(pins, CN_LEAF.cert_der())
    assert matches_pins(PinSet(), CN_LEAF.cert_der())
    assert not matches_pins(pins, b"not a certificate")
    assert parse_pin(pin, path="p") == spki_digest(SAN_LEAF.cert_der())


@pytest.mark.parametrize("bad", ["sha1//AAAA", "sha256//!!!", "sha256//AAAA"])
def test_bad_pins_are_config_errors(bad: str) -> None:
    with pytest.raises(ConfigError):
        parse_pin(bad, path="p")


# --- identity ---------------------------------------------------------------------------------


def identity(cert: tpki.Issued, host: str, *, pins: PinSet = PinSet(), cn: bool = True, verify: bool = True) -> str:
    try:
        check_upstream_identity(cert.cert_der(), host=host, pins=pins, verify=verify, force_common_name_check=cn)
    except UpstreamTlsError as exc:
        return str(exc.reason)
    return "ok"


def test_cn_check_applies_only_to_certificates_without_san() -> None:
    assert identity(CN_LEAF, "legacy.example") == "ok"
    assert identity(CN_LEAF, "LEGACY.EXAMPLE.") == "ok"
    assert identity(CN_LEAF, "other.example") == "upstream_cn_mismatch"
    assert identity(SAN_LEAF, "api.example") == "ok"
    assert identity(SAN_LEAF, "10.0.0.1") == "ok"
    assert identity(SAN_LEAF, "other.example") == "upstream_hostname_mismatch"
    assert identity(CN_LEAF, "other.example", verify=False) == "ok"  # tls_verify off: no name check
    assert identity(CN_LEAF, "other.example", cn=False) == "ok"  # OpenSSL already checked the name


def test_wildcard_or_repeated_cn_never_matches() -> None:
    wild = tpki.cn_only_leaf(ROOT, "*.example")
    assert identity(wild, "a.example") == "upstream_cn_mismatch"


def test_pin_checked_first_and_even_without_verification() -> None:
    wrong = PinSet.from_pins([spki_pin(CN_LEAF.cert_der())], path="p")
    assert identity(SAN_LEAF, "api.example", pins=wrong, verify=False) == "upstream_pin_mismatch"
    with pytest.raises(UpstreamTlsError):
        check_upstream_identity(None, host="a", pins=wrong, verify=True, force_common_name_check=False)


@pytest.mark.parametrize("reason, code, negotiated, expected", [
    ("CERTIFICATE_VERIFY_FAILED", 62, False, UpstreamReason.HOSTNAME_MISMATCH),
    ("CERTIFICATE_VERIFY_FAILED", 64, False, UpstreamReason.HOSTNAME_MISMATCH),
    ("CERTIFICATE_VERIFY_FAILED", 20, False, UpstreamReason.TLS_UNTRUSTED),
    ("CERTIFICATE_VERIFY_FAILED", 22, False, UpstreamReason.TLS_UNTRUSTED),
    ("TLSV1_ALERT_PROTOCOL_VERSION", None, False, UpstreamReason.TLS_VERSION),
    ("SSLV3_ALERT_HANDSHAKE_FAILURE", None, True, UpstreamReason.REJECTED_CLIENT_CERT),
    ("SSLV3_ALERT_HANDSHAKE_FAILURE", None, False, UpstreamReason.TLS_FAILED),
    ("TLSV1_ALERT_UNKNOWN_CA", None, True, UpstreamReason.REJECTED_CLIENT_CERT),
    ("WRONG_VERSION_NUMBER", None, False, UpstreamReason.TLS_FAILED),
])
def test_handshake_failures_map_to_reason_codes(reason: str, code: int | None, negotiated: bool,
                                                expected: UpstreamReason) -> None:
    assert classify_tls_failure(reason, code, negotiated=negotiated) is expected


def test_read_failures() -> None:
    assert classify_read_failure("TLSV13_ALERT_CERTIFICATE_REQUIRED") is UpstreamReason.REJECTED_CLIENT_CERT
    assert classify_read_failure("SSLV3_ALERT_HANDSHAKE_FAILURE") is UpstreamReason.RENEGOTIATION_REFUSED
    assert classify_read_failure("UNEXPECTED_EOF_WHILE_READING") is None


@pytest.mark.parametrize(("facts", "reason"), [
    # h11 calls an end of stream where more of the response is due a protocol error: the upstream hung up
    ({"protocol_error": True, "closed": True}, "upstream_closed"),
    ({"protocol_error": True, "closed": False}, "upstream_protocol_error"),  # bytes that are not HTTP/1.1
    ({"protocol_error": False, "closed": True}, "upstream_read_failed"),
    ({"protocol_error": True, "closed": True, "reset": True}, "upstream_reset"),
    ({"protocol_error": False, "reset": True, "ssl_reason": "TLSV13_ALERT_CERTIFICATE_REQUIRED"},
     "upstream_rejected_client_cert"),
    ({"protocol_error": False, "detail": "[SSL: SSLV3_ALERT_BAD_CERTIFICATE] relayed"}, "upstream_rejected_client_cert"),
], ids=["closed", "bad-bytes", "closed-no-protocol-error", "reset", "tls-alert", "alert-in-text"])
def test_upstream_read_failure_reasons(facts: dict[str, object], reason: str) -> None:
    flags = {k: v for k, v in facts.items() if k not in ("ssl_reason", "detail")}
    got = upstream_read_failure(facts.get("ssl_reason"), str(facts.get("detail", "")), **flags)  # type: ignore[arg-type]
    assert got == reason


# --- forward proxy URLs -----------------------------------------------------------------------


def test_proxy_url() -> None:
    p = parse_proxy_url("http://us%40er:p%3Ass@Proxy.Example:3128", path="proxy_url")
    assert (p.scheme, p.host, p.port, p.username, p.password) == ("http", "proxy.example", 3128, "us@er", "p:ss")
    assert p.authorization == b"Basic dXNAZXI6cDpzcw=="
    assert "p:ss" not in p.describe() + repr(p) + p.identity
    assert parse_proxy_url("https://proxy.example", path="x").port == 443
    assert parse_proxy_url("http://proxy.example", path="x").authorization is None
    for bad in ("socks5://p:1", "http://p:1/path", "http://:1", "http://p:99999"):
        with pytest.raises(ConfigError):
            parse_proxy_url(bad, path="proxy_url")


# --- profiles -------------------------------------------------------------------------------------


def cert_entity(issued: tpki.Issued, id: str) -> Certificate:
    return Certificate(id=id, cert=issued.chain_pem(), key=issued.key_pem())


def test_split_combined_pem() -> None:
    chain, key = split_combined_pem(SAN_LEAF.chain_pem() + SAN_LEAF.key_pem(), path="f")
    assert "CERTIFICATE" in chain and "PRIVATE KEY" in key
    with pytest.raises(ConfigError):
        split_combined_pem(SAN_LEAF.chain_pem(), path="f")


def test_split_combined_pem_takes_either_order() -> None:
    assert split_combined_pem(SAN_LEAF.key_pem() + SAN_LEAF.chain_pem(), path="f") == (
        SAN_LEAF.chain_pem(), SAN_LEAF.key_pem())


@pytest.mark.parametrize("text, message", [
    (SAN_LEAF.chain_pem(), ("holds a certificate but no private key: a client certificate for upstreams "
                            "must be concatenated with its private key")),
    (SAN_LEAF.key_pem(), "holds no certificate"),
    (SAN_LEAF.chain_pem() + SAN_LEAF.key_pem() + CN_LEAF.key_pem(), "holds 2 private keys"),
    (SAN_LEAF.chain_pem() + CN_LEAF.key_pem(), "not the one of the first certificate (the leaf)"),
    (SAN_LEAF.chain_pem() + "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n",
     "the private key is not usable"),
])
def test_split_combined_pem_says_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        split_combined_pem(text, path="upstream_certificates.api.example")
    assert exc.value.problems[0].path == "upstream_certificates.api.example"
    assert message in exc.value.problems[0].message
    assert "BEGIN" not in str(exc.value)


def test_host_map_file_without_key_is_named() -> None:
    files = {"/cert.pem": SAN_LEAF.chain_pem()}
    with pytest.raises(ConfigError, match="upstream_certificates.api.example: holds a certificate but no private key"):
        parse_upstream_defaults({"upstream_certificates": {"api.example": "/cert.pem"}}, Entities(),
                                lambda p, w: files[p])


@pytest.mark.parametrize("settings, verify", [
    ({}, True),
    ({"proxy_ssl_verify": None, "proxy_ssl_insecure_skip_verify": None}, True),
    ({"proxy_ssl_verify": False}, False),
    ({"proxy_ssl_verify": True}, True),
    ({"proxy_ssl_insecure_skip_verify": True}, False),
    ({"proxy_ssl_insecure_skip_verify": False}, True),
    ({"proxy_ssl_verify": False, "proxy_ssl_insecure_skip_verify": True}, False),
    ({"proxy_ssl_verify": True, "proxy_ssl_insecure_skip_verify": False}, True),
])
def test_global_verify_kong_switch_and_tyk_inverse(settings: dict[str, object], verify: bool) -> None:
    assert parse_upstream_defaults(settings, Entities(), lambda p, w: "").verify is verify


@pytest.mark.parametrize("verify", [True, False])
def test_global_verify_switches_that_disagree_are_refused(verify: bool) -> None:
    settings = {"proxy_ssl_verify": verify, "proxy_ssl_insecure_skip_verify": verify}
    with pytest.raises(ConfigError) as exc:
        parse_upstream_defaults(settings, Entities(), lambda p, w: "")
    problem = exc.value.problems[0]
    assert problem.path == "proxy_ssl_verify"
    assert "nginx_proxy_proxy_tls_verify" in problem.message and "set only one" in problem.message


def test_service_tls_verify_wins_over_the_global_switch() -> None:
    defaults = parse_upstream_defaults({"proxy_ssl_verify": False}, Entities(), lambda p, w: "")
    strict = Service(id="s", host="a.example", protocol="https", tls_verify=True)
    loose = Service(id="l", host="a.example", protocol="https")
    assert select_upstream_profile(strict, Entities(), defaults, now=0).verify
    assert not select_upstream_profile(loose, Entities(), defaults, now=0).verify


def test_service_min_version_below_1_2_lowers_the_security_level() -> None:
    """Tyk's tlsTransport.minVersion may be 1.0/1.1: OpenSSL 3 needs security level 0 for them."""
    old = Service(id="s", name="old", host="a", protocol="https", tls_min_version="1.1",
                  tls_ciphers=("TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",))
    p = select_upstream_profile(old, Entities(), UpstreamTlsDefaults(), now=0)
    assert p.policy.versions.minimum is ssl.TLSVersion.TLSv1_1
    assert p.policy.ciphers.openssl_ciphers is not None and p.policy.ciphers.openssl_ciphers.endswith("@SECLEVEL=0")
    # a global TLS 1.1 minimum lowered it; a service raising the minimum gets the default level back
    defaults = UpstreamTlsDefaults(policy=parse_upstream_policy({"proxy_ssl_min_version": "1.1"}))
    modern = Service(id="m", host="a", protocol="https", tls_min_version="1.2")
    ciphers = select_upstream_profile(modern, Entities(), defaults, now=0).policy.ciphers.openssl_ciphers
    assert ciphers is not None and "@SECLEVEL" not in ciphers


def test_profile_defaults_are_secure() -> None:
    profile = select_upstream_profile(Service(id="s", host="a.example", protocol="https"), Entities(),
                                      UpstreamTlsDefaults(), now=0)
    assert profile.verify and profile.uses_system_roots and profile.check_hostname_in_handshake
    assert profile.client_certificate is None and not profile.pins
    assert profile.policy.versions == VersionRange(ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3)
    assert profile.options_to_set & ssl.OP_NO_RENEGOTIATION


def test_parse_upstream_defaults_reads_files_through_the_reader() -> None:
    mapped = tpki.issue(ROOT, "mapped.example")
    files = {"/g.pem": SAN_LEAF.chain_pem(), "/g.key": SAN_LEAF.key_pem(), "/ca.pem": ROOT.cert_pem(),
             "/mapped.pem": mapped.chain_pem() + mapped.key_pem()}
    store = cert_entity(CN_LEAF, "2b0a3e6e-8d4c-4d7e-9d62-7f1f4d0c0a11")
    settings = {
        "client_ssl_cert": "/g.pem", "client_ssl_cert_key": "/g.key", "proxy_ssl_trusted_certificate": ("/ca.pem",),
        "proxy_ssl_insecure_skip_verify": False, "ssl_force_common_name_check": True, "proxy_ssl_verify_depth": 2,
        "upstream_certificates": {"*.mapped.example": "/mapped.pem", "store.example": store.id},
        "pinned_public_keys": {"*": f"{spki_pin(SAN_LEAF.cert_der())},{store.id}"},
        "proxy_ssl_min_version": "1.3",
    }
    d = parse_upstream_defaults(settings, Entities(certificates={store.id: store}), lambda p, w: files[p])
    assert d.client_certificate == ClientCertificate(SAN_LEAF.chain_pem(), SAN_LEAF.key_pem())
    assert d.trusted_cas == (ROOT.cert_pem(),) and d.force_common_name_check and d.verify_depth == 2
    assert d.certificates_by_host.select("x.mapped.example", 443)[1].chain_pem == mapped.chain_pem()  # type: ignore[index]
    assert d.certificates_by_host.select("store.example", 443)[1].key_pem == store.key  # type: ignore[index]
    assert len(d.pins_by_host.select("any.host", 1)[1].digests) == 2  # type: ignore[index]
    assert d.policy.versions.minimum is ssl.TLSVersion.TLSv1_3


@pytest.mark.parametrize("settings, path", [
    ({"client_ssl": False, "client_ssl_cert": "/g.pem", "client_ssl_cert_key": "/g.key"}, "client_ssl"),
    ({"client_ssl": True}, "client_ssl"),
    ({"client_ssl_cert": "/g.pem"}, "client_ssl_cert_key"),
    ({"upstream_certificates": {"*": "sha256:" + "0" * 64}}, "upstream_certificates.*"),
    ({"proxy_ssl_disable_renegotiation": False}, "proxy_ssl_disable_renegotiation"),
    ({"proxy_ssl_verify_depth": 99}, "proxy_ssl_verify_depth"),
])
def test_parse_upstream_defaults_errors(settings: dict[str, object], path: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_upstream_defaults(settings, Entities(), lambda p, w: "")
    assert exc.value.problems[0].path == path


def test_service_fields_override_and_are_validated() -> None:
    ca = CACertificate(id="ca", cert=ROOT.cert_pem())
    cert = cert_entity(SAN_LEAF, C1)
    entities = Entities(certificates={C1: cert}, ca_certificates={"ca": ca})
    service = Service(id="s", name="svc", host="api.example", protocol="https", client_certificate=C1,
                      ca_certificates=("ca",), tls_verify=False, tls_verify_depth=3, tls_min_version="1.3",
                      tls_force_common_name_check=True, tls_pinned_public_keys=(C1,))
    p = select_upstream_profile(service, entities, UpstreamTlsDefaults(), now=0)
    assert (p.verify, p.verify_depth, p.trusted_cas, p.force_common_name_check) == (False, 3, (ROOT.cert_pem(),), True)
    assert p.client_certificate is not None and p.client_certificate.chain_pem == cert.cert
    assert p.policy.versions.minimum is ssl.TLSVersion.TLSv1_3
    assert p.pins.digests == {spki_digest(SAN_LEAF.cert_der())}
    bad = Service(id="s", name="svc", host="a", protocol="https", tls_min_version="1.3", tls_max_version="1.2")
    with pytest.raises(ConfigError, match="services.svc.tls_min_version"):
        select_upstream_profile(bad, entities, UpstreamTlsDefaults(), now=0)
    with pytest.raises(ConfigError, match="services.svc.tls_ciphers"):
        select_upstream_profile(Service(id="s", name="svc", host="a", protocol="https", tls_ciphers=("NOPE",)),
                                entities, UpstreamTlsDefaults(), now=0)
