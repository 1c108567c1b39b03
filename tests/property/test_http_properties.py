"""Properties of the pure HTTP layer (hypothesis).

* Routing does not depend on the order routes are given.
* The indexed selection agrees with an independent brute-force reference that
  re-implements Kong's matching and priority over whole routes.
* Rewritten headers never carry hop-by-hop fields or fields named in
  ``Connection`` (other than the protected ones the gateway sets itself).
* Any bytes fed to h11 and then the guards give an event, a
  ``RemoteProtocolError`` or ``RequestRejected``, nothing else, whether fed in
  one chunk or byte by byte.
"""

from __future__ import annotations

import re

import h11
from hypothesis import example, given
from hypothesis import strategies as st

from trio_gw.http.errors import RequestRejected
from trio_gw.http.guards import check_request_head
from trio_gw.http.headers import HOP_BY_HOP, PROTECTED, downstream_response_headers, upstream_request_headers
from trio_gw.http.routing import RequestFacts, RouteMatch, Router, select_route
from trio_gw.model.entities import Route, Service

SERVICES = {
    "s": Service(id="s", host="up", path="/s"),
    "t": Service(id="t", host="up2"),
    "off": Service(id="off", host="x", enabled=False),
}
HOSTS = ["a.com", "b.com", "*.a.com", "x.a.com", "a.*", "a.com:8080", "*.a.com:81"]
PATHS = ["/", "/a", "/ab", "/a/b", "/b", r"~/a/\d+", "~/b.*", "~/a"]
HEADERS: list[dict[str, tuple[str, ...]]] = [{}, {"x-v": ("1",)}, {"x-v": ("1", "2"), "x-w": ("~*^a",)}]


@st.composite
def routes(draw: st.DrawFn) -> list[Route]:
    count = draw(st.integers(0, 8))
    out = []
    for i in range(count):
        protocols = draw(st.sampled_from([("http", "https"), ("https",), ("http",)]))
        out.append(
            Route(
                id=f"r{i}",
                service=draw(st.sampled_from(["s", "s", "t", "off"])),
                protocols=protocols,
                methods=draw(st.sampled_from([(), ("GET",), ("POST",), ("GET", "POST")])),
                hosts=tuple(draw(st.lists(st.sampled_from(HOSTS), max_size=2, unique=True))),
                paths=tuple(draw(st.lists(st.sampled_from(PATHS), max_size=3, unique=True))),
                headers=draw(st.sampled_from(HEADERS)),
                snis=draw(st.sampled_from([(), ("a.com",)])) if "https" in protocols else (),
                regex_priority=draw(st.integers(0, 2)),
                strip_path=draw(st.booleans()),
                path_handling=draw(st.sampled_from(["v0", "v1"])),
                preserve_host=draw(st.booleans()),
                created_at=draw(st.integers(0, 3)),
            )
        )
    return out


requests = st.builds(
    RequestFacts,
    method=st.sampled_from(["GET", "POST", "PUT"]),
    host=st.sampled_from(["a.com", "b.com", "x.a.com", "y.x.a.com", "a.org", "c.com", ""]),
    path=st.sampled_from(["/", "/a", "/ab", "/a/1", "/a/b/c", "/b", "/b/x", "/c"]),
    query=st.sampled_from(["", "q=1"]),
    protocol=st.sampled_from(["http", "https"]),
    sni=st.sampled_from([None, "a.com", "b.com"]),
    headers=st.sampled_from([{}, {"x-v": ("2",)}, {"x-v": ("1",), "x-w": ("Abc",)}]),
    port=st.sampled_from([None, 80, 81, 8080]),
)


def _host_ok(pattern: str, facts: RequestFacts) -> bool:
    name, _, port = pattern.partition(":")
    if port and int(port) != facts.effective_port:
        return False
    return re.fullmatch(re.escape(name).replace(r"\*", ".+"), facts.host) is not None


def _reference(routes: list[Route], facts: RequestFacts) -> tuple[str, bool, str | None] | None:
    """Kong's rules, written independently of the router: (route id, https_required, path)."""
    best = None
    for r in routes:
        if SERVICES[r.service or ""].enabled is False:
            continue
        https_required = facts.protocol == "http" and "http" not in r.protocols
        if facts.protocol not in r.protocols and not https_required:
            continue
        if r.methods and facts.method not in r.methods:
            continue
        if r.hosts and not any(_host_ok(h, facts) for h in r.hosts):
            continue
        if r.snis and facts.protocol == "https" and facts.sni not in r.snis:
            continue
        if any(
            not any(v.lower() in {c.lower() for c in want if not c.startswith("~*")}
                    or any(re.search(c[2:], v, re.I) for c in want if c.startswith("~*"))
                    for v in facts.headers.get(name, ()))
            for name, want in r.headers.items()
        ):
            continue
        weight = sum(map(bool, (r.methods, r.hosts, r.headers, r.snis, r.paths)))
        plain = int(bool(r.hosts) and not any("*" in h for h in r.hosts))
        options: list[tuple[str | None, int, int]] = [(None, 0, 0)] if not r.paths else []
        for p in r.paths:
            if p.startswith("~") and re.match(p[1:], facts.path):
                options.append((p, 1, r.regex_priority))
            elif not p.startswith("~") and facts.path.startswith(p):
                options.append((p, 0, -len(p)))
        for path, is_regex, prio_or_len in options:
            rank = (-weight, -plain, -len(r.headers), -is_regex,
                    -prio_or_len if is_regex else 0, prio_or_len if not is_regex else 0,
                    r.created_at, r.id)
            if best is None or rank < best[0]:
                best = (rank, (r.id, https_required, path))
    return None if best is None else best[1]


def _summary(match: RouteMatch | None) -> tuple[str, bool, str | None] | None:
    return None if match is None else (match.route.id, match.https_required, match.matched_path)


@given(routes(), st.randoms(use_true_random=False), st.lists(requests, min_size=1, max_size=5))
def test_routing_is_independent_of_route_order(rs: list[Route], rnd: object, reqs: list[RequestFacts]) -> None:
    shuffled = list(rs)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    a, b = Router.build(rs, SERVICES), Router.build(shuffled, SERVICES)
    for facts in reqs:
        assert select_route(a, facts) == select_route(b, facts)


@given(routes(), st.lists(requests, min_size=1, max_size=5))
def test_selection_agrees_with_brute_force_reference(rs: list[Route], reqs: list[RequestFacts]) -> None:
    router = Router.build(rs, SERVICES)
    for facts in reqs:
        match = select_route(router, facts)
        assert _summary(match) == _reference(rs, facts)
        if match is not None:
            assert match.upstream_path.startswith("/")


names = st.one_of(
    st.sampled_from(sorted(HOP_BY_HOP | PROTECTED | {b"x-a", b"x-b", b"Close", b"accept"})),
    st.from_regex(rb"\A[a-z][a-z0-9-]{0,8}\Z"),
)
values = st.one_of(
    st.lists(names, max_size=4).map(lambda ns: b", ".join(ns)),
    st.binary(max_size=12).filter(lambda v: b"\r" not in v and b"\n" not in v),
)
header_lists = st.lists(st.tuples(names, values), max_size=12)


def _forbidden(headers: list[tuple[bytes, bytes]]) -> frozenset[bytes]:
    named = {
        token.strip().lower()
        for name, value in headers
        if name.lower() == b"connection"
        for token in value.split(b",")
    }
    return (HOP_BY_HOP | named) - PROTECTED


@given(header_lists, st.booleans())
def test_no_hop_by_hop_or_connection_named_header_survives(
    headers: list[tuple[bytes, bytes]], trusted: bool
) -> None:
    headers = [(n.lower(), v) for n, v in headers]
    router = Router.build([Route(id="r", service="s")], SERVICES)
    facts = RequestFacts(method="GET", host="a.com", path="/x")
    match = select_route(router, facts)
    assert match is not None
    up = upstream_request_headers(headers, match, facts, client_ip="10.0.0.1", server_port=80, trusted=trusted)
    down = downstream_response_headers(headers)
    forbidden = _forbidden(headers)
    assert not forbidden & {n for n, _ in up}
    assert not forbidden & {n for n, _ in down}


VALID = [
    b"GET / HTTP/1.1\r\nHost: a.com\r\n\r\n",
    b"POST /x?y=1 HTTP/1.1\r\nHost: a.com:8080\r\nContent-Length: 3\r\n\r\nabc",
    b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    b"GET http://a.com/ HTTP/1.1\r\nHost: a.com\r\nX-A: b\r\n c\r\n\r\n",
    b"GET / HTTP/1.0\n\n",
]


def _mutate(data: st.DataObject, raw: bytes) -> bytes:
    ops = data.draw(st.lists(st.tuples(st.integers(0, len(raw)), st.binary(max_size=4), st.integers(0, 3)), max_size=4))
    for at, insert, delete in ops:
        at = min(at, len(raw))
        raw = raw[:at] + insert + raw[at + delete :]
    return raw


def _drive(chunks: list[bytes]) -> None:
    connection = h11.Connection(h11.SERVER, max_incomplete_event_size=4096)
    try:
        for chunk in chunks:
            connection.receive_data(chunk)
            while True:
                event = connection.next_event()
                if isinstance(event, h11.Request):
                    check_request_head(event, max_header_size=2048, max_headers=20)
                if event in (h11.NEED_DATA, h11.PAUSED) or isinstance(event, h11.ConnectionClosed):
                    break
        connection.receive_data(b"")
    except (h11.RemoteProtocolError, RequestRejected):
        pass


@given(st.data(), st.sampled_from(VALID))
@example(None, b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n")
def test_any_bytes_give_events_protocol_errors_or_rejections(data: st.DataObject | None, raw: bytes) -> None:
    if data is not None:
        raw = _mutate(data, raw)
    _drive([raw])
    _drive([raw[i : i + 1] for i in range(len(raw))])


@given(st.binary(max_size=300))
def test_random_bytes(raw: bytes) -> None:
    _drive([raw])
