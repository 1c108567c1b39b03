"""trio_gw.tls.external_services: Tyk's external_services (global proxy, webhooks proxy and mTLS, no_proxy)."""

from __future__ import annotations

import ssl
from collections.abc import Mapping

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trio_gw.errors import ConfigError, Problem
from trio_gw.tls.external_services import (
    ExternalServices,
    MtlsSettings,
    NoProxy,
    ProxySettings,
    parse_external_services,
    parse_no_proxy,
)
from trio_gw.tls.proxy_url import ForwardProxy
from trio_gw.tls.versions import VersionRange

V = ssl.TLSVersion
S = "external_services"

#: What Tyk's config loader fills an untouched proxy / mtls block with.
TYK_EMPTY_PROXY: dict[str, object] = {"http_proxy": "", "https_proxy": "", "no_proxy": "", "use_environment": False}
TYK_EMPTY_MTLS: dict[str, object] = {
    "enabled": False, "cert_file": "", "key_file": "", "ca_file": "", "insecure_skip_verify": False,
    "tls_min_version": "", "tls_max_version": "",
}  # fmt: skip

GLOBAL_HTTPS = "http://global.proxy.internal:3128"
CREDENTIALED = "http://gw-user:s3cret%21@proxy.internal:3128"


def parse(raw: object, environ: Mapping[str, str] | None = None) -> ExternalServices:
    return parse_external_services(raw, environ=environ or {})


def problems(raw: object, environ: Mapping[str, str] | None = None) -> list[Problem]:
    with pytest.raises(ConfigError) as info:
        parse(raw, environ)
    return list(info.value.problems)


def paths(raw: object, environ: Mapping[str, str] | None = None) -> list[str]:
    return sorted(p.path for p in problems(raw, environ))


def mtls(**block: object) -> dict[str, object]:
    return {"webhooks": {"mtls": block}}


# --- absent setting, fallback of the webhooks to the global proxy ------------------------------------------------


@pytest.mark.parametrize("raw", [None, {}, {"proxy": None, "webhooks": None}])
def test_absent_setting_gives_the_defaults(raw: object) -> None:
    services = parse(raw, {"HTTPS_PROXY": "http://ignored:1"})
    assert services == ExternalServices()
    assert services.webhook_proxies == ProxySettings()
    assert services.webhooks_mtls == MtlsSettings()
    assert services.proxy.proxy_for("https", "hooks.example.com", 443) is None


@pytest.mark.parametrize("raw", ["proxy", ["proxy"], 1, True])
def test_a_setting_that_is_not_a_mapping_is_refused(raw: object) -> None:
    (problem,) = problems(raw)
    assert problem.path == S
    assert "expected a mapping" in problem.message


def test_a_tyk_default_filled_setting_changes_nothing() -> None:
    empty_service = {"proxy": TYK_EMPTY_PROXY, "mtls": TYK_EMPTY_MTLS}
    raw = {"proxy": TYK_EMPTY_PROXY, "webhooks": empty_service, "oauth": empty_service,
           "storage": empty_service, "health": empty_service, "discovery": empty_service}  # fmt: skip
    assert parse(raw) == ExternalServices()


def test_webhooks_without_their_own_proxy_use_the_global_one() -> None:
    services = parse({"proxy": {"https_proxy": GLOBAL_HTTPS}, "webhooks": {"mtls": {"enabled": True}}})
    assert services.webhooks_proxy is None
    assert services.webhook_proxies is services.proxy
    proxy = services.webhook_proxies.proxy_for("https", "hooks.example.com", 443)
    assert proxy is not None and proxy.host == "global.proxy.internal"


def test_a_webhooks_proxy_block_that_sets_nothing_does_not_replace_the_global_one() -> None:
    services = parse({"proxy": {"https_proxy": GLOBAL_HTTPS}, "webhooks": {"proxy": TYK_EMPTY_PROXY}})
    assert services.webhooks_proxy is None
    assert services.webhook_proxies == services.proxy
    assert services.webhook_proxies.https is not None


def test_a_webhooks_proxy_block_that_sets_something_replaces_the_global_one_whole() -> None:
    services = parse({
        "proxy": {"https_proxy": GLOBAL_HTTPS, "no_proxy": "internal.example"},
        "webhooks": {"proxy": {**TYK_EMPTY_PROXY, "http_proxy": "http://hooks.proxy.internal:8080"}},
    })  # fmt: skip
    hooks = services.webhook_proxies
    assert hooks == services.webhooks_proxy
    assert hooks.http == ForwardProxy("http", "hooks.proxy.internal", 8080)
    # Replaced, not merged: the global https_proxy and no_proxy do not leak into the webhooks' block.
    assert hooks.https is None
    assert hooks.no_proxy == NoProxy()
    assert services.proxy.https is not None


def test_a_webhooks_proxy_block_with_only_use_environment_replaces_the_global_one() -> None:
    services = parse({"proxy": {"https_proxy": GLOBAL_HTTPS}, "webhooks": {"proxy": {"use_environment": True}}},
                     {"HTTPS_PROXY": "http://env.proxy:3128"})
    https = services.webhook_proxies.https
    assert https is not None and https.host == "env.proxy"


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        ({"webhooks": "on"}, f"{S}.webhooks"),
        ({"webhooks": {"proxy": "http://p:3128"}}, f"{S}.webhooks.proxy"),
        ({"proxy": ["http://p:3128"]}, f"{S}.proxy"),
        ({"webhooks": {"mtls": True}}, f"{S}.webhooks.mtls"),
    ],
)
def test_blocks_that_are_not_mappings_are_refused(raw: object, path: str) -> None:
    (problem,) = problems(raw)
    assert problem.path == path
    assert "expected a mapping" in problem.message


# --- proxy URLs and proxy_for -------------------------------------------------------------------------------------


def test_proxy_urls_are_parsed_keeping_credentials_but_never_showing_the_password() -> None:
    services = parse({"proxy": {"http_proxy": CREDENTIALED, "https_proxy": "https://tls.proxy.internal"}})
    assert services.proxy.http == ForwardProxy("http", "proxy.internal", 3128, "gw-user", "s3cret!")
    assert services.proxy.https == ForwardProxy("https", "tls.proxy.internal", 443)
    assert services.proxy.http.authorization is not None
    assert "s3cret" not in repr(services)
    assert "s3cret" not in repr(services.proxy.http)
    assert "gw-user" in repr(services.proxy.http)


@pytest.mark.parametrize(
    "url", ["http://gw-user:s3cret@proxy:abc", "http://gw-user:s3cret@proxy:99999", "http://gw-user:s3cret@proxy/x",
            "ftp://gw-user:s3cret@proxy", "http://gw-user:s3cret@"],
)  # fmt: skip
def test_a_bad_proxy_url_names_its_key_without_the_password(url: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse({"proxy": {"https_proxy": url}})
    assert [p.path for p in info.value.problems] == [f"{S}.proxy.https_proxy"]
    assert "s3cret" not in str(info.value)


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        ({"proxy": {"http_proxy": "socks5://p:1080"}}, f"{S}.proxy.http_proxy"),
        ({"proxy": {"http_proxy": 3128}}, f"{S}.proxy.http_proxy"),
        ({"webhooks": {"proxy": {"https_proxy": "http://:3128"}}}, f"{S}.webhooks.proxy.https_proxy"),
        ({"webhooks": {"proxy": {"https_proxy": "proxy.internal:3128"}}}, f"{S}.webhooks.proxy.https_proxy"),
    ],
)
def test_a_bad_or_mistyped_proxy_value_names_its_key(raw: object, path: str) -> None:
    assert paths(raw) == [path]


def test_proxy_for_picks_the_proxy_of_the_target_scheme() -> None:
    block = {"http_proxy": "http://plain.proxy:8080", "https_proxy": "http://tunnel.proxy:3128"}
    settings = parse({"proxy": block}).proxy
    https = settings.proxy_for("https", "hooks.example.com", 443)
    http = settings.proxy_for("http", "hooks.example.com", 80)
    assert https is not None and https.host == "tunnel.proxy"
    assert http is not None and http.host == "plain.proxy"


def test_proxy_for_is_none_when_the_target_scheme_has_no_proxy() -> None:
    only_https = parse({"proxy": {"https_proxy": "http://tunnel.proxy:3128"}}).proxy
    only_http = parse({"proxy": {"http_proxy": "http://plain.proxy:8080"}}).proxy
    assert only_https.proxy_for("http", "hooks.example.com", 80) is None
    assert only_http.proxy_for("https", "hooks.example.com", 443) is None  # no fallback to the other scheme's
    assert only_https.proxy_for("https", "hooks.example.com", 443) is not None
    assert only_http.proxy_for("http", "hooks.example.com", 80) is not None


def test_proxy_for_is_none_for_a_target_in_no_proxy() -> None:
    block = {"https_proxy": "http://tunnel.proxy:3128", "no_proxy": "internal.example, 10.0.0.0/8"}
    settings = parse({"proxy": block}).proxy
    assert settings.proxy_for("https", "api.internal.example", 443) is None
    assert settings.proxy_for("https", "10.2.3.4", 443) is None
    assert settings.proxy_for("https", "api.external.example", 443) is not None
    assert settings.proxy_for("https", "11.2.3.4", 443) is not None


# --- use_environment ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "environ",
    [
        {"HTTPS_PROXY": "http://env-tls.proxy:3128", "HTTP_PROXY": "http://env.proxy:8080",
         "NO_PROXY": "internal.example"},
        {"https_proxy": "http://env-tls.proxy:3128", "http_proxy": "http://env.proxy:8080",
         "no_proxy": "internal.example"},
    ],
    ids=["upper", "lower"],
)
def test_use_environment_reads_the_proxy_variables_in_either_case(environ: dict[str, str]) -> None:
    settings = parse({"proxy": {**TYK_EMPTY_PROXY, "use_environment": True}}, environ).proxy
    assert settings.https == ForwardProxy("http", "env-tls.proxy", 3128)
    assert settings.http == ForwardProxy("http", "env.proxy", 8080)
    assert settings.no_proxy.bypasses("api.internal.example", 443)
    assert not settings.no_proxy.bypasses("api.external.example", 443)


def test_use_environment_prefers_the_upper_case_variable() -> None:
    environ = {"HTTPS_PROXY": "http://upper.proxy:3128", "https_proxy": "http://lower.proxy:3128"}
    https = parse({"proxy": {"use_environment": True}}, environ).proxy.https
    assert https is not None and https.host == "upper.proxy"


def test_use_environment_only_fills_what_the_block_leaves_empty() -> None:
    environ = {"HTTPS_PROXY": "http://env-tls.proxy:3128", "HTTP_PROXY": "http://env.proxy:8080",
               "NO_PROXY": "from-env.example"}  # fmt: skip
    block = {"use_environment": True, "https_proxy": "http://block.proxy:3128", "no_proxy": "from-block.example"}
    settings = parse({"proxy": block}, environ).proxy
    assert settings.https is not None and settings.https.host == "block.proxy"  # the block wins
    assert settings.http is not None and settings.http.host == "env.proxy"  # the gap is filled
    assert settings.no_proxy.bypasses("from-block.example", 443)
    assert not settings.no_proxy.bypasses("from-env.example", 443)


@pytest.mark.parametrize("use_environment", [False, None])
def test_the_environment_is_ignored_without_use_environment(use_environment: bool | None) -> None:
    environ = {"HTTPS_PROXY": "http://env-tls.proxy:3128", "HTTP_PROXY": "http://env.proxy:8080", "NO_PROXY": "*"}
    block: dict[str, object] = {"https_proxy": "http://block.proxy:3128"}
    if use_environment is not None:
        block["use_environment"] = use_environment
    settings = parse({"proxy": block}, environ).proxy
    assert settings.http is None
    assert settings.no_proxy == NoProxy()
    assert settings.proxy_for("https", "hooks.example.com", 443) is not None
    # Nor when there is no proxy block at all.
    assert parse({"proxy": TYK_EMPTY_PROXY}, environ) == ExternalServices()


@pytest.mark.parametrize(("section", "prefix"), [(None, f"{S}.proxy"), ("webhooks", f"{S}.webhooks.proxy")])
def test_a_bad_url_from_the_environment_names_use_environment(section: str | None, prefix: str) -> None:
    block = {"proxy": {"use_environment": True}}
    raw = {section: block} if section else block
    (problem,) = problems(raw, {"HTTPS_PROXY": "ftp://env.proxy"})
    assert problem.path.startswith(f"{prefix}.use_environment")
    assert "HTTPS_PROXY" in problem.path


def test_use_environment_must_be_a_boolean() -> None:
    assert paths({"proxy": {"use_environment": "yes"}}, {"HTTPS_PROXY": "http://env.proxy:3128"}) == [
        f"{S}.proxy.use_environment"
    ]


def test_a_bad_no_proxy_from_the_environment_names_use_environment() -> None:
    (problem,) = problems({"proxy": {"use_environment": True}}, {"NO_PROXY": "exa mple.com"})
    assert "use_environment" in problem.path


# --- no_proxy -----------------------------------------------------------------------------------------------------


def test_star_bypasses_everything_and_an_empty_list_nothing() -> None:
    star = parse_no_proxy("*", path="no_proxy")
    assert star.everything
    assert star.bypasses("hooks.example.com", 443) and star.bypasses("10.0.0.1", 80) and star.bypasses("[::1]", 1)
    for empty in ("", " , ,", ","):
        assert parse_no_proxy(empty, path="no_proxy") == NoProxy()
        assert not parse_no_proxy(empty, path="no_proxy").bypasses("hooks.example.com", 443)


@pytest.mark.parametrize(
    ("entries", "host", "port", "bypassed"),
    [
        # a name covers itself and its subdomains ...
        ("example.com", "example.com", 443, True),
        ("example.com", "api.example.com", 443, True),
        ("example.com", "a.b.example.com", 80, True),
        # ... but not a name that merely ends with the same letters, nor one that contains it
        ("example.com", "badexample.com", 443, False),
        ("example.com", "example.com.evil.net", 443, False),
        ("example.com", "example.org", 443, False),
        ("api.example.com", "example.com", 443, False),
        # .domain: subdomains only (as does *.domain)
        (".example.com", "api.example.com", 443, True),
        (".example.com", "example.com", 443, False),
        (".example.com", "badexample.com", 443, False),
        ("*.example.com", "api.example.com", 443, True),
        ("*.example.com", "example.com", 443, False),
        # case-insensitive, trailing dot ignored on either side
        ("EXAMPLE.com.", "Api.Example.COM", 443, True),
        ("example.com", "API.EXAMPLE.COM.", 443, True),
        ("example.com", "BADEXAMPLE.COM.", 443, False),
        # host:port only for that port
        ("example.com:8443", "api.example.com", 8443, True),
        ("example.com:8443", "api.example.com", 443, False),
        (".example.com:8443", "example.com", 8443, False),
        # IPv4 addresses and CIDR blocks
        ("10.1.2.3", "10.1.2.3", 443, True),
        ("10.1.2.3", "10.1.2.4", 443, False),
        ("10.0.0.0/8", "10.255.0.1", 443, True),
        ("10.0.0.0/8", "11.0.0.1", 443, False),
        ("10.0.0.0/8:443", "10.1.1.1", 443, True),
        ("10.0.0.0/8:443", "10.1.1.1", 80, False),
        ("10.1.2.3:8080", "10.1.2.3", 8080, True),
        ("10.1.2.3:8080", "10.1.2.3", 80, False),
        # IPv6 addresses and CIDR blocks, bare or in brackets
        ("::1", "::1", 443, True),
        ("::1", "[::1]", 443, True),
        ("::1", "::2", 443, False),
        ("[2001:db8::1]", "2001:db8::1", 443, True),
        ("2001:db8::/32", "2001:db8:1::5", 443, True),
        ("2001:db8::/32", "[2001:db8:ffff::1]", 443, True),
        ("2001:db8::/32", "2001:db9::1", 443, False),
        ("[::1]:8443", "::1", 8443, True),
        ("[::1]:8443", "[::1]", 8443, True),
        ("[::1]:8443", "::1", 443, False),
        # names and addresses do not cover each other
        ("10.0.0.0/8", "ten.example.com", 443, False),
        ("localhost", "127.0.0.1", 443, False),
        # a list: each entry counts
        ("internal.example, .corp.example ,10.0.0.0/8", "x.corp.example", 443, True),
        ("internal.example, .corp.example ,10.0.0.0/8", "10.9.9.9", 443, True),
        ("internal.example, .corp.example ,10.0.0.0/8", "corp.example", 443, False),
    ],
)  # fmt: skip
def test_no_proxy_matching(entries: str, host: str, port: int, bypassed: bool) -> None:
    no_proxy = parse_no_proxy(entries, path="no_proxy")
    assert no_proxy.bypasses(host, port) is bypassed
    via_settings = parse({"proxy": {"https_proxy": "http://tunnel.proxy:3128", "no_proxy": entries}}).proxy
    assert (via_settings.proxy_for("https", host, port) is None) is bypassed


def test_no_proxy_entries_are_parsed_into_names_and_networks() -> None:
    parsed = parse_no_proxy("Example.COM:8443, .corp.example, *.wild.example, 10.0.0.0/8, [::1]:9000", path="p")
    assert parsed.names == (("example.com", 8443, False), ("corp.example", None, True), ("wild.example", None, True))
    assert [(str(net), port) for net, port in parsed.networks] == [("10.0.0.0/8", None), ("::1/128", 9000)]
    assert not parsed.everything


@pytest.mark.parametrize(
    ("entries", "index"),
    [
        ("exa mple.com", 0),
        ("ok.example, exa mple.com", 1),
        ("ok.example,,exa mple.com", 2),  # the index is the position in the comma-separated list
        ("host:0", 0),
        ("host:70000", 0),
        ("host:-1", 0),
        ("host:http", 0),
        ("[::1]:0", 0),
        ("10.0.0.1:65536", 0),
        ("a..b", 0),
        (".", 0),
        ("example.com/path", 0),
        ("http://example.com", 0),
        ("exämple.com!", 0),
    ],
)  # fmt: skip
def test_invalid_no_proxy_entries_are_refused_naming_the_entry(entries: str, index: int) -> None:
    with pytest.raises(ConfigError) as info:
        parse_no_proxy(entries, path="x.no_proxy")
    assert [p.path for p in info.value.problems] == [f"x.no_proxy[{index}]"]


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        ({"proxy": {"no_proxy": "ok.example, exa mple.com"}}, f"{S}.proxy.no_proxy[1]"),
        ({"webhooks": {"proxy": {"no_proxy": "host:70000"}}}, f"{S}.webhooks.proxy.no_proxy[0]"),
        ({"proxy": {"no_proxy": ["ok.example"]}}, f"{S}.proxy.no_proxy"),
    ],
)
def test_a_bad_no_proxy_setting_names_its_key(raw: object, path: str) -> None:
    assert paths(raw) == [path]


def test_a_port_of_non_ascii_digits_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        parse_no_proxy("host:²", path="no_proxy")


def test_junk_after_a_bracketed_address_is_refused() -> None:
    with pytest.raises(ConfigError):
        parse_no_proxy("[::1]junk", path="no_proxy")


def test_a_bracketed_cidr_block_is_not_narrowed_to_one_address() -> None:
    try:
        parsed = parse_no_proxy("[2001:db8::]/32", path="no_proxy")
    except ConfigError:
        return  # refusing the spelling is fine
    assert parsed.bypasses("2001:db8:1::5", 443)  # accepting it must mean the whole /32


LABEL = st.from_regex(r"[a-z][a-z0-9-]{0,14}", fullmatch=True)
NAME = st.lists(LABEL, min_size=1, max_size=4).map(".".join)
PORT = st.integers(min_value=1, max_value=65535)


@given(name=NAME, label=LABEL, port=PORT)
def test_a_name_covers_its_subdomains_but_not_names_that_only_end_like_it(name: str, label: str, port: int) -> None:
    no_proxy = parse_no_proxy(name, path="no_proxy")
    assert no_proxy.bypasses(name, port)
    assert no_proxy.bypasses(f"{label}.{name}", port)
    assert not no_proxy.bypasses(f"{label}{name}", port)
    subdomains_only = parse_no_proxy(f".{name}", path="no_proxy")
    assert subdomains_only.bypasses(f"{label}.{name}", port)
    assert not subdomains_only.bypasses(name, port)
    assert not subdomains_only.bypasses(f"{label}{name}", port)


@given(name=NAME, port=PORT, other=PORT)
def test_a_name_with_a_port_covers_only_that_port(name: str, port: int, other: int) -> None:
    no_proxy = parse_no_proxy(f"{name}:{port}", path="no_proxy")
    assert no_proxy.bypasses(name, port)
    assert no_proxy.bypasses(name, other) is (other == port)


# --- mtls ---------------------------------------------------------------------------------------------------------


def test_enabled_mtls_with_cert_key_ca_and_versions_parses() -> None:
    services = parse(mtls(enabled=True, cert_file="/etc/trio-gw/client.pem", key_file="/etc/trio-gw/client.key",
                          ca_file="/etc/trio-gw/hooks-ca.pem", tls_min_version="1.2",
                          tls_max_version="1.3"))  # fmt: skip
    assert services.webhooks_mtls == MtlsSettings(
        enabled=True, cert_file="/etc/trio-gw/client.pem", key_file="/etc/trio-gw/client.key",
        ca_file="/etc/trio-gw/hooks-ca.pem", insecure_skip_verify=False, versions=VersionRange(V.TLSv1_2, V.TLSv1_3),
    )  # fmt: skip
    assert services.proxy == ProxySettings() and services.webhooks_proxy is None


def test_enabled_mtls_alone_keeps_the_defaults() -> None:
    assert parse(mtls(**{**TYK_EMPTY_MTLS, "enabled": True})).webhooks_mtls == MtlsSettings(enabled=True)


@pytest.mark.parametrize(
    ("block", "expected"),
    [
        ({"tls_min_version": "1.3"}, VersionRange(V.TLSv1_3, V.TLSv1_3)),
        ({"tls_min_version": 772}, VersionRange(V.TLSv1_3, V.TLSv1_3)),  # Tyk's code points
        ({"tls_max_version": 771}, VersionRange(V.TLSv1_2, V.TLSv1_2)),
        ({"tls_min_version": "1.1", "tls_max_version": "1.2"}, VersionRange(V.TLSv1_1, V.TLSv1_2)),
    ],
)
def test_mtls_tls_versions(block: dict[str, object], expected: VersionRange) -> None:
    assert parse(mtls(enabled=True, **block)).webhooks_mtls.versions == expected


def test_mtls_tls_min_version_1_3() -> None:
    assert parse(mtls(enabled=True, tls_min_version="1.3")).webhooks_mtls.versions.minimum == ssl.TLSVersion.TLSv1_3


@pytest.mark.parametrize(
    ("block", "path"),
    [
        ({"tls_min_version": "1.3", "tls_max_version": "1.2"}, f"{S}.webhooks.mtls.tls_min_version"),
        ({"tls_min_version": "1.4"}, f"{S}.webhooks.mtls.tls_min_version"),
        ({"tls_max_version": "SSLv3"}, f"{S}.webhooks.mtls.tls_max_version"),
    ],
)
def test_bad_mtls_versions_name_their_key(block: dict[str, object], path: str) -> None:
    assert paths(mtls(enabled=True, **block)) == [path]


@pytest.mark.parametrize(
    ("block", "missing"),
    [({"cert_file": "/etc/trio-gw/client.pem"}, "key_file"), ({"key_file": "/etc/trio-gw/client.key"}, "cert_file")],
)
def test_cert_file_and_key_file_go_together(block: dict[str, object], missing: str) -> None:
    (problem,) = problems(mtls(enabled=True, **block))
    assert problem.path == f"{S}.webhooks.mtls.{missing}"
    assert "go together" in problem.message


def test_mtls_without_a_client_certificate_is_fine() -> None:
    settings = parse(mtls(enabled=True, ca_file="/etc/trio-gw/hooks-ca.pem")).webhooks_mtls
    assert settings.cert_file is None and settings.key_file is None
    assert settings.ca_file == "/etc/trio-gw/hooks-ca.pem"


def test_insecure_skip_verify_is_accepted_alone_but_not_with_ca_file() -> None:
    assert parse(mtls(enabled=True, insecure_skip_verify=True)).webhooks_mtls.insecure_skip_verify
    (problem,) = problems(mtls(enabled=True, insecure_skip_verify=True, ca_file="/etc/trio-gw/hooks-ca.pem"))
    assert problem.path == f"{S}.webhooks.mtls.ca_file"
    assert "insecure_skip_verify" in problem.message


def test_the_key_file_path_stays_out_of_the_repr() -> None:
    settings = parse(mtls(enabled=True, cert_file="/c.pem", key_file="/secret-dir/client.key")).webhooks_mtls
    assert settings.key_file == "/secret-dir/client.key"
    assert "secret-dir" not in repr(settings)


def test_a_block_that_is_not_enabled_must_set_nothing_else() -> None:
    assert parse(mtls(**TYK_EMPTY_MTLS)).webhooks_mtls == MtlsSettings()
    (problem,) = problems(mtls(**{**TYK_EMPTY_MTLS, "cert_file": "/etc/trio-gw/client.pem"}))
    assert problem.path == f"{S}.webhooks.mtls.enabled"
    assert "cert_file" in problem.message
    assert paths(mtls(insecure_skip_verify=True)) == [f"{S}.webhooks.mtls.enabled"]


@pytest.mark.parametrize(
    ("block", "path"),
    [
        ({"enabled": "yes"}, f"{S}.webhooks.mtls.enabled"),
        ({"enabled": 1}, f"{S}.webhooks.mtls.enabled"),
        ({"enabled": True, "insecure_skip_verify": "true"}, f"{S}.webhooks.mtls.insecure_skip_verify"),
        ({"enabled": True, "cert_file": 42, "key_file": "/k"}, f"{S}.webhooks.mtls.cert_file"),
    ],
)
def test_mistyped_mtls_values_are_refused(block: dict[str, object], path: str) -> None:
    assert path in paths(mtls(**block))


def test_enabled_must_be_a_boolean() -> None:
    (problem,) = problems(mtls(enabled="yes"))
    assert problem.path == f"{S}.webhooks.mtls.enabled"
    assert "true or false" in problem.message


# --- unknown keys and the services trio-gw has no integration for -------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        ({"proxies": {}}, f"{S}.proxies"),
        ({"webhooks": {"timeout": 5}}, f"{S}.webhooks.timeout"),
        ({"proxy": {"https_proxy": GLOBAL_HTTPS, "bypass": "internal.example"}}, f"{S}.proxy.bypass"),
        ({"webhooks": {"proxy": {"no_proxy": "x.example", "httpproxy": "http://p:1"}}},
         f"{S}.webhooks.proxy.httpproxy"),
        (mtls(enabled=True, cert="/c.pem"), f"{S}.webhooks.mtls.cert"),
    ],
)  # fmt: skip
def test_unknown_keys_are_refused_by_name(raw: object, path: str) -> None:
    (problem,) = problems(raw)
    assert problem.path == path
    assert "unknown key" in problem.message


@pytest.mark.parametrize("service", ["oauth", "storage", "health", "discovery"])
@pytest.mark.parametrize(
    "block",
    [
        {"proxy": {"https_proxy": "http://p:3128"}},
        {"proxy": {"use_environment": True}},
        {"mtls": {"enabled": True}},
        {"mtls": {"enabled": False, "cert_file": "/c.pem"}},
        "on",
    ],
)
def test_a_service_trio_gw_has_no_integration_for_is_refused_when_it_sets_anything(
    service: str, block: object
) -> None:
    (problem,) = problems({service: block})
    assert problem.path == f"{S}.{service}"
    assert "no integration" in problem.message


@pytest.mark.parametrize("service", ["oauth", "storage", "health", "discovery"])
@pytest.mark.parametrize(
    "block",
    [
        {"proxy": {"http_proxy": "", "use_environment": False}, "mtls": {"enabled": False}},
        {"proxy": TYK_EMPTY_PROXY, "mtls": TYK_EMPTY_MTLS},
        {},
        None,
    ],
)
def test_a_service_trio_gw_has_no_integration_for_is_accepted_with_only_empty_defaults(
    service: str, block: object
) -> None:
    assert parse({service: block}) == ExternalServices()


# --- every problem at once -----------------------------------------------------------------------------------------


def test_independent_problems_are_reported_together() -> None:
    raw = {"proxy": {"https_proxy": "ftp://p"}, "webhooks": {"mtls": {"enabled": True, "cert_file": "/c.pem"}}}
    assert paths(raw) == [f"{S}.proxy.https_proxy", f"{S}.webhooks.mtls.key_file"]


def test_many_problems_across_the_setting_are_reported_together() -> None:
    raw = {
        "proxy": {"http_proxy": "socks5://p", "no_proxy": "host:0", "typo": 1},
        "webhooks": {
            "proxy": {"use_environment": True},
            "mtls": {"enabled": True, "insecure_skip_verify": True, "ca_file": "/ca.pem", "tls_min_version": "9"},
            "retries": 3,
        },
        "oauth": {"mtls": {"enabled": True}},
        "cache": {},
    }
    assert paths(raw, {"HTTPS_PROXY": "http://"}) == sorted([
        f"{S}.cache",
        f"{S}.oauth",
        f"{S}.proxy.http_proxy",
        f"{S}.proxy.no_proxy[0]",
        f"{S}.proxy.typo",
        f"{S}.webhooks.retries",
        f"{S}.webhooks.proxy.use_environment (HTTPS_PROXY)",
        f"{S}.webhooks.mtls.ca_file",
        f"{S}.webhooks.mtls.tls_min_version",
    ])  # fmt: skip


def test_an_unknown_key_is_refused_even_in_a_block_that_sets_nothing_else() -> None:
    assert paths({"proxy": {"htp_proxy": ""}}) == [f"{S}.proxy.htp_proxy"]
    assert parse({"proxy": {"http_proxy": ""}}).proxy == ProxySettings()  # the twin: Tyk's empty default


def test_a_blank_value_counts_as_unset_so_the_environment_fills_it() -> None:
    parsed = parse_external_services({"proxy": {"http_proxy": "  ", "use_environment": True}},
                                     environ={"HTTP_PROXY": "http://env-proxy:3128"})
    assert parsed.proxy.http is not None and parsed.proxy.http.host == "env-proxy"
    unset = parse_external_services({"proxy": {"http_proxy": "  "}}, environ={"HTTP_PROXY": "http://env-proxy:3128"})
    assert unset.proxy.http is None
