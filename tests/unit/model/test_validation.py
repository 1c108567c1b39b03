"""Field rules of services, routes, SNIs, consumers and plugins (model.validation, model.values).

Each rule is tested through the loader (so paths are checked too), with a
passing case next to the failing ones.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from trio_gw.errors import ConfigError, Problem
from trio_gw.model import validation
from trio_gw.model.declarative import parse_declarative
from trio_gw.model.entities import Entities, Route, Service
from trio_gw.model.values import InvalidValue, check_route_host, check_sni_name, parse_path_regex

NOW = 1_750_000_000


def load(**entities: Any) -> Entities:
    return parse_declarative({"_format_version": "3.0", **entities}, now=NOW)


def problems(**entities: Any) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(**entities)
    return [str(p) for p in info.value.problems]


def service(**fields: Any) -> Service:
    (only,) = load(services=[{"name": "s", **fields}]).services.values()
    return only


def route(**fields: Any) -> Route:
    (only,) = load(routes=[fields]).routes.values()
    return only


# --- services -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://example.com:8080/base", ("http", "example.com", 8080, "/base")),
        ("https://Example.COM", ("https", "example.com", 443, None)),
        ("http://10.0.0.1", ("http", "10.0.0.1", 80, None)),
        ("https://[::1]:8443/", ("https", "::1", 8443, "/")),
    ],
)
def test_service_url_is_split(url: str, expected: tuple[Any, ...]) -> None:
    s = service(url=url)
    assert (s.protocol, s.host, s.port, s.path) == expected


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("grpc://example.com", "services[0].url: protocol 'grpc' is not supported yet (supported: http, https)"),
        ("ftp://example.com", "services[0].url: invalid URL 'ftp://example.com': expected http:// or https://"),
        ("http://example.com/?a=1", "services[0].url: invalid URL 'http://example.com/?a=1': user information, query or fragment not allowed"),
        ("http://example.com:99999", "services[0].url: invalid URL 'http://example.com:99999': Port out of range 0-65535"),
        ("http:///nohost", "services[0].url: invalid URL 'http:///nohost': no host"),
    ],
)
def test_service_url_errors(url: str, message: str) -> None:
    assert problems(services=[{"url": url}]) == [message]


def test_service_url_cannot_be_combined_with_its_parts() -> None:
    assert problems(services=[{"url": "http://a.example", "host": "b.example", "port": 81}]) == [
        "services[0].host: cannot be combined with 'url' (which sets it)",
        "services[0].port: cannot be combined with 'url' (which sets it)",
    ]


def test_service_protocol_host_port_path_and_defaults() -> None:
    s = service(host="Upstream.Example", protocol="https")
    assert (s.protocol, s.host, s.port, s.path) == ("https", "upstream.example", 443, None)
    assert (s.retries, s.connect_timeout, s.read_timeout, s.write_timeout) == (5, 60_000, 60_000, 60_000)
    assert s.enabled and s.tls_verify is None and s.tls_verify_depth is None
    assert service(host="u.example").port == 80
    assert service(host="u.example", port=0, path="/a/b%20c").path == "/a/b%20c"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"host": "u.example", "port": "abc"}, "services[0].port: expected an integer between 0 and 65535, got 'abc'"),
        ({"host": "u.example", "port": True}, "services[0].port: expected an integer between 0 and 65535, got True"),
        ({"host": "u.example", "port": 65536}, "services[0].port: expected an integer between 0 and 65535, got 65536"),
        ({"host": "u.example", "retries": -1}, "services[0].retries: expected an integer between 0 and 32767, got -1"),
        ({"host": "u.example", "connect_timeout": 0}, "services[0].connect_timeout: expected an integer between 1 and 2147483646, got 0"),
        ({"host": "u.example", "read_timeout": 2**31 - 1}, "services[0].read_timeout: expected an integer between 1 and 2147483646, got 2147483647"),
        ({"host": "u.example", "enabled": "yes"}, "services[0].enabled: expected true or false, got 'yes'"),
        ({"host": "u.example", "protocol": "tcp"}, "services[0].protocol: protocol 'tcp' is not supported yet (supported: http, https)"),
        ({"host": "u.example", "protocol": "smtp"}, "services[0].protocol: expected one of 'http', 'https', got 'smtp'"),
        ({"host": "u.example", "path": "base"}, "services[0].path: invalid path 'base': should start with '/' (or '~/' for a regex)"),
        ({"host": "u.example:80"}, "services[0].host: invalid host 'u.example:80': set the port in 'port'"),
        ({"host": "*.example"}, "services[0].host: invalid host '*.example': wildcards are not allowed here"),
        ({"host": "bad_host!"}, "services[0].host: invalid host 'bad_host!'"),
        ({"host": "u.example", "name": "has space"}, "services[0].name: invalid name 'has space': use letters, digits and '.', '-', '_', '~' only"),
        ({}, "services[0].host: required field missing"),
        ({"host": "u.example", "tags": ["a,b"]}, "services[0].tags[0]: invalid tag 'a,b': use printable ASCII without ',' or '/'"),
        ({"host": "u.example", "tags": "a"}, "services[0].tags: expected a list of strings, got 'a'"),
        ({"host": "u.example", "tags": ["a", "a"]}, "services[0].tags[1]: duplicate value 'a'"),
    ],
)
def test_service_field_errors(fields: dict[str, Any], message: str) -> None:
    assert problems(services=[fields]) == [message]


def test_service_host_given_as_url_gets_a_hint() -> None:
    # Seed 001 writes "host: https://self-signed-cert.httpbun.com".
    assert problems(services=[{"host": "https://self-signed-cert.httpbun.com", "protocol": "https"}]) == [
        "services[0].host: expected a host name, got the URL 'https://self-signed-cert.httpbun.com' (set 'url' instead of 'host')"
    ]


def test_service_upstream_tls_fields() -> None:
    s = service(url="https://u.example", tls_verify=False, tls_verify_depth=0)
    assert (s.tls_verify, s.tls_verify_depth) == (False, 0)
    assert problems(services=[{"url": "https://u.example", "tls_verify_depth": 65, "tls_verify": 1}]) == [
        "services[0].tls_verify: expected true or false, got 1",
        "services[0].tls_verify_depth: expected an integer between 0 and 64, got 65",
    ]


def test_upstream_tls_fields_need_https() -> None:
    assert problems(services=[{"url": "http://u.example", "tls_verify": True, "ca_certificates": []}]) == [
        "services[0].ca_certificates: only allowed when protocol is 'https'",
        "services[0].tls_verify: only allowed when protocol is 'https'",
    ]


def test_service_client_certificate_forms_errors() -> None:
    # several are accepted (the first currently valid is presented: tls.upstream); each must exist
    assert problems(services=[{"url": "https://u.example", "certificates": ["a", "b"]}]) == [
        "services[0].certificates[0]: no certificate with id or fingerprint 'a'",
        "services[0].certificates[1]: no certificate with id or fingerprint 'b'",
    ]
    got = problems(services=[{"url": "https://u.example", "certificates": ["a"], "client_certificate": "a"}])
    assert got == ["services[0].certificates: cannot be combined with 'client_certificate' (use only one)"]
    got = problems(services=[{"url": "https://u.example", "client_certificate": {"name": "x"}}])
    assert got == ["services[0].client_certificate: expected a string or {id: ...}"]


# --- routes -------------------------------------------------------------------------------


def test_route_defaults() -> None:
    r = route(paths=["/a"])
    assert r.protocols == ("http", "https") and r.strip_path and not r.preserve_host
    assert (r.https_redirect_status_code, r.regex_priority, r.path_handling) == (426, 0, "v0")
    assert r.service is None and r.headers == {}


def test_route_match_fields_are_normalised() -> None:
    r = route(
        protocols=["https"],
        methods=["GET", "POST"],
        hosts=["*.Example.com", "example.*", "api.example.com:8443", "[::1]:80", "10.0.0.1"],
        paths=["/a", "~/users/(?<id>\\d+)$"],
        headers={"X-Version": ["1", "~*^2\\."]},
        snis=["API.example.com"],
        https_redirect_status_code=308,
        regex_priority=-3,
        path_handling="v1",
    )
    assert r.hosts == ("*.example.com", "example.*", "api.example.com:8443", "[::1]:80", "10.0.0.1")
    assert r.headers == {"x-version": ("1", "~*^2\\.")}
    assert r.snis == ("api.example.com",)
    assert (r.https_redirect_status_code, r.regex_priority, r.path_handling) == (308, -3, "v1")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"methods": ["get"]}, "routes[0].methods[0]: invalid method 'get': use uppercase letters only (did you mean 'GET'?)"),
        ({"methods": ["G3T"]}, "routes[0].methods[0]: invalid method 'G3T': use uppercase letters only"),
        ({"hosts": ["a.*.com"]}, "routes[0].hosts[0]: invalid host 'a.*.com': the wildcard must be the whole leftmost or rightmost label ('*.example.com' or 'example.*')"),
        ({"hosts": ["*.*.com"]}, "routes[0].hosts[0]: invalid host '*.*.com': only one wildcard is allowed"),
        ({"hosts": ["*"]}, "routes[0].hosts[0]: '*' is not a host: leave 'hosts' out to match any host"),
        ({"hosts": ["a.example:99999"]}, "routes[0].hosts[0]: invalid port in 'a.example:99999': expected an integer between 0 and 65535"),
        ({"hosts": ["a..example"]}, "routes[0].hosts[0]: invalid host 'a..example'"),
        ({"paths": ["a"]}, "routes[0].paths[0]: invalid path 'a': should start with '/' (or '~/' for a regex)"),
        ({"paths": ["/a b"]}, "routes[0].paths[0]: invalid path '/a b': characters outside RFC 3986 (percent-encode them)"),
        ({"paths": ["/%zz"]}, "routes[0].paths[0]: invalid path '/%zz': '%' must start an escape such as '%20'"),
        ({"paths": ["~users"]}, "routes[0].paths[0]: invalid path '~users': a regex path starts with '~/'"),
        ({"paths": ["/a", "/a"]}, "routes[0].paths[1]: duplicate value '/a'"),
        ({"paths": "/a"}, "routes[0].paths: expected a list of strings, got '/a'"),
        ({"paths": ["/a"], "protocols": ["grpc"]}, "routes[0].protocols[0]: protocol 'grpc' is not supported yet (supported: http, https)"),
        ({"paths": ["/a"], "protocols": ["gopher"]}, "routes[0].protocols[0]: expected one of 'http', 'https', got 'gopher'"),
        ({"paths": ["/a"], "protocols": []}, "routes[0].protocols: must not be empty"),
        ({"paths": ["/a"], "https_redirect_status_code": 303}, "routes[0].https_redirect_status_code: expected one of 426, 301, 302, 307, 308, got 303"),
        ({"paths": ["/a"], "https_redirect_status_code": 426.0}, "routes[0].https_redirect_status_code: expected one of 426, 301, 302, 307, 308, got 426.0"),
        ({"paths": ["/a"], "path_handling": "v2"}, "routes[0].path_handling: expected one of 'v0', 'v1', got 'v2'"),
        ({"paths": ["/a"], "strip_path": "no"}, "routes[0].strip_path: expected true or false, got 'no'"),
        ({"paths": ["/a"], "regex_priority": 2**31}, "routes[0].regex_priority: expected an integer between -2147483648 and 2147483647, got 2147483648"),
        ({"snis": ["*.example.com"]}, "routes[0].snis[0]: invalid server name '*.example.com': wildcards are not allowed in route snis"),
        ({"snis": ["a.example"], "protocols": ["http"]}, "routes[0].snis: can only be set when 'protocols' includes 'https'"),
        ({"headers": {"Host": ["a"]}}, "routes[0].headers: the 'host' header cannot be matched here: use the route's 'hosts'"),
        ({"headers": {"x-a": "1"}}, "routes[0].headers.x-a: expected a list of strings, got '1'"),
        ({"headers": {"x-a": []}}, "routes[0].headers.x-a: expected at least one value"),
        ({"headers": {"x-a": ["~*("]}}, "routes[0].headers.x-a[0]: invalid regex '~*(': missing ), unterminated subpattern at position 0"),
        ({"headers": ["x-a"]}, "routes[0].headers: expected a mapping, got a list"),
        ({"protocols": ["https"]}, "routes[0]: must set one of 'methods', 'hosts', 'headers', 'paths', 'snis' (a route must match something)"),
        ({"paths": ["/a"], "request_buffering": False}, "routes[0].request_buffering: not supported yet (only Kong's default True is accepted)"),
        ({"paths": ["/a"], "sources": [{"ip": "10.0.0.1"}]}, "routes[0].sources: not supported yet (only Kong's default None is accepted)"),
        ({"paths": ["/a"], "service": 3}, "routes[0].service: expected a non-empty string, got 3"),
    ],
)
def test_route_field_errors(fields: dict[str, Any], message: str) -> None:
    assert problems(routes=[fields]) == [message]


def test_regex_path_errors_carry_the_re_message() -> None:
    (message,) = problems(routes=[{"paths": ["~/users/(\\d+"]}])
    assert message.startswith("routes[0].paths[0]: invalid regex '~/users/(\\\\d+': missing ), unterminated subpattern")


def test_duplicate_header_names_differ_only_by_case() -> None:
    assert problems(routes=[{"headers": {"X-A": ["1"], "x-a": ["2"]}}]) == [
        "routes[0].headers: duplicate header 'x-a' (names are case-insensitive)"
    ]


def test_kong_defaults_of_unimplemented_route_fields_are_accepted() -> None:
    # decK dumps of a Kong configuration carry these on every route.
    assert route(paths=["/a"], request_buffering=True, response_buffering=True, sources=None).paths == ("/a",)


@pytest.mark.parametrize("version", ["1.1", "2.1"])
def test_pre_3_0_regex_paths_get_the_tilde(version: str) -> None:
    doc = {"_format_version": version, "routes": [{"paths": ["/users/\\d+", "/plain-path_1.0/~x%20"]}]}
    (r,) = parse_declarative(doc, now=NOW).routes.values()
    assert r.paths == ("~/users/\\d+", "/plain-path_1.0/~x%20")


def test_3_0_paths_are_not_migrated() -> None:
    assert problems(routes=[{"paths": ["/users/\\d+"]}]) == [
        "routes[0].paths[0]: invalid path '/users/\\\\d+': characters outside RFC 3986 (percent-encode them)"
    ]


def test_parse_path_regex_accepts_pcre_named_groups() -> None:
    pattern = parse_path_regex("~/users/(?<id>\\d+)$")
    match = pattern.match("/users/42")
    assert match is not None and match.group("id") == "42"
    with pytest.raises(ConfigError, match="a regex path starts with '~/'"):
        parse_path_regex("/users")


@pytest.mark.parametrize("host", ["a.example", "*.a.example", "a.*", "a.example:1", "[::1]", "::1", "1.2.3.4:80"])
def test_check_route_host_accepts(host: str) -> None:
    assert check_route_host(host) == host


@pytest.mark.parametrize("host", ["", "a:b:c:d:z", "[::1", "[::1]x", "[zz]:80", "-a.example", "a-.example", "a" * 64 + ".x", ("a." * 127) + "com"])
def test_check_route_host_rejects(host: str) -> None:
    with pytest.raises(InvalidValue):
        check_route_host(host)


# --- snis ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["*", "*.example.com", "example.*", "api.example.com"])
def test_sni_names(name: str) -> None:
    assert check_sni_name(name) == name


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("10.0.0.1", "invalid server name '10.0.0.1': must not be an IP address"),
        ("[::1]", "invalid server name '[::1]': must not be an IP address"),
        ("a.example:443", "invalid server name 'a.example:443': must not have a port"),
        ("a.*.example", "invalid host 'a.*.example': the wildcard must be"),
    ],
)
def test_sni_name_errors(name: str, message: str) -> None:
    with pytest.raises(InvalidValue) as info:
        check_sni_name(name)
    assert str(info.value).startswith(message)


def test_top_level_sni_needs_a_certificate() -> None:
    assert problems(snis=[{"name": "a.example"}]) == ["snis[0].certificate: required field missing"]
    assert problems(snis=[{"name": "a.example", "certificate": "nope"}]) == [
        "snis[0].certificate: no certificate with id or fingerprint 'nope'"
    ]


# --- consumers ----------------------------------------------------------------------------


def test_consumers() -> None:
    entities = load(consumers=[{"username": "alice"}, {"custom_id": "c-1", "tags": ["x"]}])
    assert [(c.username, c.custom_id, c.tags) for c in entities.consumers.values()] == [
        ("alice", None, ()),
        (None, "c-1", ("x",)),
    ]


@pytest.mark.parametrize(
    ("consumers", "message"),
    [
        ([{"tags": []}], "consumers[0]: at least one of 'username' or 'custom_id' is required"),
        ([{"username": ""}], "consumers[0].username: expected a non-empty string, got ''"),
        ([{"username": "a"}, {"username": "a"}], "consumers[1].username: duplicate username 'a' (also at consumers[0])"),
        ([{"custom_id": "a"}, {"custom_id": "a"}], "consumers[1].custom_id: duplicate custom id 'a' (also at consumers[0])"),
        ([{"username": "a", "jwt_secrets": []}], "consumers[0].jwt_secrets: unknown field"),
        ([{"usernme": "a"}], "consumers[0].usernme: unknown field (did you mean 'username'?)"),
    ],
)
def test_consumer_errors(consumers: list[dict[str, Any]], message: str) -> None:
    assert message in problems(consumers=consumers)


# --- plugins ------------------------------------------------------------------------------


def test_plugin_defaults_and_scopes() -> None:
    entities = load(
        services=[{"name": "s", "host": "u.example", "plugins": [{"name": "cors", "consumer": "alice"}]}],
        consumers=[{"username": "alice"}],
        plugins=[{"name": "cors", "config": {"origins": ["*"]}, "protocols": ["https"], "enabled": False}],
    )
    scoped, global_ = entities.plugins.values()
    (svc,) = entities.services.values()
    (alice,) = entities.consumers.values()
    assert (scoped.service, scoped.consumer, scoped.route) == (svc.id, alice.id, None)
    assert scoped.protocols == ("grpc", "grpcs", "http", "https") and scoped.enabled and scoped.config == {}
    assert (global_.config, global_.protocols, global_.enabled) == ({"origins": ["*"]}, ("https",), False)


@pytest.mark.parametrize(
    ("plugin", "message"),
    [
        ({}, "plugins[0].name: required field missing"),
        ({"name": "no spaces"}, "plugins[0].name: invalid plugin name 'no spaces': use letters, digits, '-' and '_'"),
        ({"name": "cors", "config": []}, "plugins[0].config: expected a mapping, got a list"),
        ({"name": "cors", "protocols": ["tcp"]}, "plugins[0].protocols[0]: protocol 'tcp' is not supported yet (supported: grpc, grpcs, http, https)"),
        ({"name": "cors", "instance_name": "x"}, "plugins[0].instance_name: not supported yet (only Kong's default None is accepted)"),
        ({"name": "cors", "confg": {}}, "plugins[0].confg: unknown field (did you mean 'config'?)"),
        ({"name": "cors", "route": "r"}, "plugins[0].route: no route with id or name 'r'"),
        ({"name": "cors", "consumer": {"username": "bob"}}, "plugins[0].consumer: no consumer with id or name 'bob'"),
    ],
)
def test_plugin_errors(plugin: dict[str, Any], message: str) -> None:
    assert problems(plugins=[plugin]) == [message]


def test_nested_plugin_may_not_name_its_owner() -> None:
    got = problems(services=[{"name": "s", "host": "u.example", "plugins": [{"name": "cors", "service": "s"}]}])
    assert got == ["services[0].plugins[0].service: not allowed in a plugin nested in a service (it applies to that service)"]


def test_duplicate_plugin_for_one_scope() -> None:
    got = problems(
        services=[{"name": "s", "host": "u.example", "plugins": [{"name": "cors"}]}],
        plugins=[{"name": "cors", "service": "s"}, {"name": "cors"}, {"name": "acl", "service": "s"}],
    )
    assert got == ["plugins[0]: duplicate plugin 'cors' for the same scope (also at services[0].plugins[0])"]


@pytest.fixture
def registered_schema() -> Iterator[list[str]]:
    calls: list[str] = []

    def schema(config: Mapping[str, Any], path: str) -> Mapping[str, Any]:
        calls.append(path)
        if not isinstance(config.get("minute"), int):
            raise ConfigError([Problem("minute", "expected an integer")])
        return {"minute": config["minute"], "policy": "local"}

    validation.PLUGIN_SCHEMAS["rate-limiting"] = schema
    yield calls
    del validation.PLUGIN_SCHEMAS["rate-limiting"]


def test_plugin_schema_normalises_config(registered_schema: list[str]) -> None:
    entities = load(plugins=[{"name": "rate-limiting", "config": {"minute": 5}}])
    assert [p.config for p in entities.plugins.values()] == [{"minute": 5, "policy": "local"}]
    assert registered_schema == ["plugins[0].config"]


def test_plugin_schema_errors_are_placed_under_config(registered_schema: list[str]) -> None:
    got = problems(routes=[{"paths": ["/"], "plugins": [{"name": "rate-limiting", "config": {"minute": "x"}}]}])
    assert got == ["routes[0].plugins[0].config.minute: expected an integer"]
