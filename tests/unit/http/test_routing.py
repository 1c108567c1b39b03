"""Kong router cases: matching, priority, path joining, preserve_host, https."""

from __future__ import annotations

import h11
import pytest

from trio_gw.errors import ConfigError
from trio_gw.http.errors import RequestRejected
from trio_gw.http.paths import join_upstream_path, normalize_path
from trio_gw.http.routing import (
    RequestFacts,
    Router,
    https_redirect,
    parse_host_header,
    select_route,
    select_route_linear,
)
from trio_gw.model.entities import Route, Service

SERVICES = {
    "s": Service(id="s", host="upstream.internal", path="/s"),
    "root": Service(id="root", host="root.internal"),
    "tls": Service(id="tls", host="secure.internal", protocol="https", port=8443),
    "off": Service(id="off", host="off.internal", enabled=False),
}


def route(id: str, **kw: object) -> Route:
    kw.setdefault("service", "s")
    return Route(id=id, **kw)  # type: ignore[arg-type]


def facts(path: str = "/", host: str = "example.com", **kw: object) -> RequestFacts:
    return RequestFacts(method=str(kw.pop("method", "GET")), host=host, path=path, **kw)  # type: ignore[arg-type]


def chosen(routes: list[Route], request: RequestFacts) -> str | None:
    router = Router.build(routes, SERVICES)
    match = select_route(router, request)
    reference = select_route_linear(router.candidates, request)
    assert match == reference
    return None if match is None else match.route.id


# (routes, request, expected route id)
CASES = {
    "exact host": ([route("a", hosts=("a.com",)), route("b", hosts=("b.com",))], facts(host="b.com"), "b"),
    "no host no match": ([route("a", hosts=("a.com",))], facts(host="c.com"), None),
    "wildcard suffix": ([route("a", hosts=("*.example.com",))], facts(host="api.example.com"), "a"),
    "wildcard suffix multi-label": ([route("a", hosts=("*.example.com",))], facts(host="x.y.example.com"), "a"),
    "wildcard suffix not apex": ([route("a", hosts=("*.example.com",))], facts(host="example.com"), None),
    "wildcard prefix": ([route("a", hosts=("example.*",))], facts(host="example.org"), "a"),
    "wildcard prefix not bare": ([route("a", hosts=("example.*",))], facts(host="example"), None),
    "exact before wildcard": (
        [route("w", hosts=("*.example.com",)), route("e", hosts=("api.example.com",))],
        facts(host="api.example.com"),
        "e",
    ),
    "host with port": ([route("a", hosts=("a.com:8080",))], facts(host="a.com", port=8080), "a"),
    "host with wrong port": ([route("a", hosts=("a.com:8080",))], facts(host="a.com", port=8081), None),
    "host port defaults by protocol": (
        [route("a", hosts=("a.com:443",))],
        facts(host="a.com", protocol="https"),
        "a",
    ),
    "wildcard with port": ([route("a", hosts=("*.a.com:81",))], facts(host="x.a.com", port=81), "a"),
    "longest prefix": (
        [route("short", paths=("/api",)), route("long", paths=("/api/v1",))],
        facts("/api/v1/users"),
        "long",
    ),
    "prefix is a string prefix": ([route("a", paths=("/api",))], facts("/apiary"), "a"),
    "prefix mismatch": ([route("a", paths=("/api",))], facts("/other"), None),
    "regex before prefix": (
        [route("p", paths=("/users/1234",)), route("r", paths=(r"~/users/\d+",))],
        facts("/users/1234"),
        "r",
    ),
    "regex misses, prefix serves": (
        [route("p", paths=("/users/long",)), route("r", paths=(r"~/users/\d+",))],
        facts("/users/long/1"),
        "p",
    ),
    "regex matches": (
        [route("p", paths=("/users",)), route("r", paths=(r"~/users/\d+$",))],
        facts("/users/42"),
        "r",
    ),
    "regex anchored at start": ([route("r", paths=(r"~/v\d",))], facts("/x/v1"), None),
    "regex_priority": (
        [
            route("low", paths=(r"~/a/.*",), regex_priority=1),
            route("high", paths=(r"~/a/b",), regex_priority=5),
        ],
        facts("/a/b"),
        "high",
    ),
    "regex_priority ignored for prefix": (
        [route("p", paths=("/a/bc",), regex_priority=9), route("q", paths=("/a/bcd",))],
        facts("/a/bcd"),
        "q",
    ),
    "more attributes first": (
        [route("path", paths=("/a/very/long/path",)), route("both", hosts=("h.com",), paths=("/a",))],
        facts("/a/very/long/path", host="h.com"),
        "both",
    ),
    "methods": ([route("g", methods=("GET",)), route("p", methods=("POST",))], facts(method="POST"), "p"),
    "method mismatch": ([route("g", methods=("GET",))], facts(method="DELETE"), None),
    "headers": (
        [route("plain"), route("v2", headers={"x-version": ("2", "3")})],
        facts(headers={"x-version": ("3",)}),
        "v2",
    ),
    "header value case-insensitive": (
        [route("h", headers={"x-env": ("Prod",)})],
        facts(headers={"x-env": ("PROD",)}),
        "h",
    ),
    "header regex": ([route("h", headers={"x-env": ("~*^pr",)})], facts(headers={"x-env": ("prod",)}), "h"),
    "header missing": ([route("h", headers={"x-env": ("prod",)})], facts(), None),
    "more headers first": (
        [
            route("one", headers={"a": ("1",)}),
            route("two", headers={"a": ("1",), "b": ("2",)}),
        ],
        facts(headers={"a": ("1",), "b": ("2",)}),
        "two",
    ),
    "sni for https": (
        [route("s", snis=("a.com",), protocols=("https",))],
        facts(protocol="https", sni="a.com"),
        "s",
    ),
    "sni mismatch": ([route("s", snis=("a.com",), protocols=("https",))], facts(protocol="https", sni="b.com"), None),
    "sni ignored for http": ([route("s", snis=("a.com",))], facts(protocol="http"), "s"),
    "created_at breaks ties": (
        [route("new", paths=("/x",), created_at=20), route("old", paths=("/x",), created_at=10)],
        facts("/x"),
        "old",
    ),
    "id breaks remaining ties": ([route("b", paths=("/x",)), route("a", paths=("/x",))], facts("/x"), "a"),
    "disabled service": ([route("a", service="off")], facts(), None),
    "missing service": ([route("a", service="nope")], facts(), None),
    "http-only route refuses https": ([route("a", protocols=("http",))], facts(protocol="https"), None),
    "non-http protocols ignored": ([route("a", protocols=("grpc",))], facts(), None),
    "https-only outranks http route": (
        [route("tls", protocols=("https",), paths=("/secure",)), route("any", paths=("/",))],
        facts("/secure/x"),
        "tls",
    ),
    "mixed path lengths ranked apart": (
        [route("multi", paths=("/a", "/abc/def")), route("mid", paths=("/abc",))],
        facts("/abc/x"),
        "mid",
    ),
}


@pytest.mark.parametrize("routes,request_,expected", CASES.values(), ids=CASES.keys())
def test_kong_router_cases(routes: list[Route], request_: RequestFacts, expected: str | None) -> None:
    assert chosen(routes, request_) == expected


def test_https_required_flag() -> None:
    router = Router.build([route("a", protocols=("https",))], SERVICES)
    assert select_route(router, facts(protocol="http")).https_required  # type: ignore[union-attr]
    assert not select_route(router, facts(protocol="https")).https_required  # type: ignore[union-attr]


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_https_redirect_location(status: int) -> None:
    router = Router.build([route("a", protocols=("https",), https_redirect_status_code=status)], SERVICES)
    request = facts("/p/q", host="api.example.com", query="x=1")
    match = select_route(router, request)
    assert match is not None
    decision = https_redirect(match, request, 443)
    assert decision.status == status and decision.body == b""
    assert dict(decision.headers)[b"location"] == b"https://api.example.com/p/q?x=1"
    other_port = https_redirect(match, request, 8443)
    assert dict(other_port.headers)[b"location"] == b"https://api.example.com:8443/p/q?x=1"


def test_https_redirect_426() -> None:
    router = Router.build([route("a", protocols=("https",))], SERVICES)
    match = select_route(router, facts())
    assert match is not None
    decision = https_redirect(match, facts(), 443)
    assert decision.status == 426
    assert decision.body == b'{"message": "Please use HTTPS protocol"}'
    assert dict(decision.headers)[b"upgrade"] == b"TLS/1.2, HTTP/1.1"


# Kong's path_handling table: service.path "/s", request "<route path>req".
PATH_TABLE = [
    ("/fv0", False, "v0", "/fv0req", "/s/fv0req"),
    ("/fv1", False, "v1", "/fv1req", "/sfv1req"),
    ("/tv0", True, "v0", "/tv0req", "/s/req"),
    ("/tv1", True, "v1", "/tv1req", "/sreq"),
    ("/fv0/", False, "v0", "/fv0/req", "/s/fv0/req"),
    ("/fv1/", False, "v1", "/fv1/req", "/sfv1/req"),
    ("/tv0/", True, "v0", "/tv0/req", "/s/req"),
    ("/tv1/", True, "v1", "/tv1/req", "/sreq"),
]


@pytest.mark.parametrize("route_path,strip,handling,request_path,upstream", PATH_TABLE)
def test_kong_path_handling_table(
    route_path: str, strip: bool, handling: str, request_path: str, upstream: str
) -> None:
    r = route("r", paths=(route_path,), strip_path=strip, path_handling=handling)
    match = select_route(Router.build([r], SERVICES), facts(request_path))
    assert match is not None and match.upstream_path == upstream


# v0 corner cases, from Kong's get_upstream_uri: (service path, route path, strip, request, upstream)
V0_CORNERS = [
    (None, "/a", True, "/a", "/"),
    (None, "/a", True, "/a/", "/"),
    ("/s/", "/a", True, "/a", "/s"),
    ("/s/", "/a", True, "/a/", "/s/"),
    ("/s/", "/a", True, "/a/b", "/s/b"),
    ("/s/", "/a", False, "/a/b", "/s/a/b"),
    ("/s", "/a", True, "/a", "/s"),
    ("/s", "/a", True, "/a/", "/s/"),
    ("/s", "/", False, "/", "/s"),
    ("/s", "/a", True, "/a../etc", "/s/etc"),
    (None, None, True, "/x/y", "/x/y"),
]


@pytest.mark.parametrize("service_path,route_path,strip,request_path,upstream", V0_CORNERS)
def test_v0_corners(
    service_path: str | None, route_path: str | None, strip: bool, request_path: str, upstream: str
) -> None:
    services = {"s": Service(id="s", host="u", path=service_path)}
    paths = (route_path,) if route_path else ()
    match = select_route(Router.build([route("r", paths=paths, strip_path=strip)], services), facts(request_path))
    assert match is not None and match.upstream_path == upstream


def test_regex_strip_removes_matched_part() -> None:
    r = route("r", paths=(r"~/users/\d+",), strip_path=True)
    match = select_route(Router.build([r], SERVICES), facts("/users/42/orders", query="a=b"))
    assert match is not None
    assert match.upstream_path == "/s/orders"
    assert match.stripped_prefix == "/users/42"
    assert match.query == "a=b"


def test_join_v1_double_slash() -> None:
    assert join_upstream_path("/s/", "/a/b", "/b", strip_path=True, path_handling="v1") == "/s/b"


def test_preserve_host_and_service_authority() -> None:
    services = {**SERVICES}
    routes = [
        route("keep", paths=("/keep",), preserve_host=True),
        route("tls", paths=("/tls",), service="tls"),
        route("plain", paths=("/plain",), service="root"),
    ]
    router = Router.build(routes, services)
    m = select_route(router, facts("/keep", host="api.example.com", port=8000, host_header="API.example.com:8000"))
    assert m is not None and m.upstream_host_header == "API.example.com:8000"
    m = select_route(router, facts("/keep", host="api.example.com", port=8000))
    assert m is not None and m.upstream_host_header == "api.example.com:8000"
    m = select_route(router, facts("/tls"))
    assert m is not None and m.upstream_host_header == "secure.internal:8443"
    m = select_route(router, facts("/plain"))
    assert m is not None and m.upstream_host_header == "root.internal"


def test_default_https_port_omitted() -> None:
    services = {"s": Service(id="s", host="x.internal", protocol="https", port=443)}
    m = select_route(Router.build([route("r")], services), facts())
    assert m is not None and m.upstream_host_header == "x.internal"


@pytest.mark.parametrize(
    "value,expected",
    [
        ("Example.COM", ("example.com", None)),
        ("example.com.", ("example.com", None)),
        ("example.com:8080", ("example.com", 8080)),
        ("example.com:", ("example.com", None)),
        ("[::1]:443", ("[::1]", 443)),
        ("[::1]", ("[::1]", None)),
        ("127.0.0.1:80", ("127.0.0.1", 80)),
        ("", ("", None)),
    ],
)
def test_parse_host_header(value: str, expected: tuple[str, int | None]) -> None:
    assert parse_host_header(value) == expected


@pytest.mark.parametrize("value", ["a.com:99999", "a.com:80:80", "a/b", "a b", "user@host", ":80", "[::1"])
def test_parse_host_header_rejects(value: str) -> None:
    with pytest.raises(RequestRejected) as info:
        parse_host_header(value)
    assert info.value.status == 400 and info.value.reason == "invalid_host"


@pytest.mark.parametrize(
    "path,expected",
    [
        ("/a/b", "/a/b"),
        ("/public/../admin", "/admin"),
        ("/public/%2e%2e/admin", "/admin"),
        ("//admin//x", "/admin/x"),
        ("/a/./b/.", "/a/b/"),
        ("/a/%7euser", "/a/~user"),
        ("/a%2fb", "/a%2Fb"),
        ("/%zz", "/%zz"),
        ("/..", "/"),
    ],
)
def test_normalize_path(path: str, expected: str) -> None:
    assert normalize_path(path) == expected


def test_from_h11_normalises_and_collects_route_headers() -> None:
    request = h11.Request(
        method="GET",
        target="/public/%2E%2E/admin?x=1",
        headers=[("Host", "API.example.com:8443"), ("X-Env", "prod"), ("X-Other", "y")],
    )
    f = RequestFacts.from_h11(request, protocol="https", sni="API.example.com", header_names=frozenset({"x-env"}))
    assert (f.host, f.port, f.path, f.query) == ("api.example.com", 8443, "/admin", "x=1")
    assert f.headers == {"x-env": ("prod",)}
    assert f.sni == "api.example.com" and f.host_header == "API.example.com:8443"


def test_build_reports_every_bad_route() -> None:
    routes = [route("a", paths=("~(",)), route("b", hosts=("*.*.com",)), route("c", paths=("nope",))]
    with pytest.raises(ConfigError) as info:
        Router.build(routes, SERVICES)
    paths = [p.path for p in info.value.problems]
    assert paths == ["routes[a].paths[0]", "routes[b].hosts[0]", "routes[c].paths[0]"]


def test_pcre_named_groups_accepted() -> None:
    r = route("r", paths=(r"~/u/(?<id>\d+)",))
    assert select_route(Router.build([r], SERVICES), facts("/u/7")) is not None


def test_index_avoids_scanning_other_hosts() -> None:
    routes = [route(f"r{i}", hosts=(f"h{i}.com",), paths=("/",)) for i in range(500)]
    router = Router.build(routes, SERVICES)
    assert len(router.exact) == 500
    match = select_route(router, facts(host="h321.com"))
    assert match is not None and match.route.id == "r321"
