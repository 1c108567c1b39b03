"""Route selection, Kong-compatible (``router_flavor = traditional_compatible``).

Theory of operation
-------------------
A route *matches* a request when every attribute it configures matches:

* ``hosts``: exact (``api.example.com``), leading wildcard (``*.example.com``:
  any non-empty label sequence before ``.example.com``, never the apex) or
  trailing wildcard (``example.*``); each may carry ``:port``, compared with
  the request port (the Host header's port, else 80/443 by protocol).
  Hosts compare case-insensitively, a trailing dot ignored.
* ``paths``: prefix (``/api``, a plain string prefix as in Kong) or regex
  (``~/v\\d+/users``, matched from the start of the path, ``re.match``), over
  the *normalised* path (:func:`trio_gw.http.paths.normalize_path`).
* ``methods``: exact, case-sensitive.
* ``headers``: for each configured name, one of the request's values equals a
  configured value case-insensitively, or matches a ``~*regex`` value.
* ``snis``: the TLS server name is one of them; checked for https requests
  only (as Kong: ``net.protocol != "https" || tls.sni == ...``).

Protocols are not part of the match, as in Kong, where the proxy handler
checks them after routing: an http request whose best route only allows
https yields a match with ``https_required=True`` (answer with
:func:`https_redirect`).  A route that does not allow the request's protocol
otherwise (an https request to an http-only route) is skipped, because Kong
documents such requests as refused.

Priority, highest first (Kong's ``traditional_compatible`` 64-bit priority,
compared field by field):

1. number of configured attributes among methods, hosts, headers, snis, paths;
2. plain hosts only (no wildcard) before wildcard or no hosts;
3. number of header names;
4. regex paths before prefix paths;
5. higher ``regex_priority`` (regex paths only);
6. longer prefix path;
7. older ``created_at``, then smaller ``id`` (so the result never depends on
   the order routes are given).

As in Kong, a route with paths of different kinds or lengths is split into one
candidate per group (all regex paths; prefixes of one length), each ranked on
its own.  Routes of disabled or missing services, and routes with no http or
https protocol, are not served.

Indexes and cost
----------------
``Router.build`` groups candidates into buckets: one per exact host, one per
wildcard suffix (``.example.com``) and prefix (``example.``), and one for
routes without hosts.  Inside a bucket, prefix candidates are in a dict keyed
by the prefix, probed once per distinct prefix length; regex and path-less
candidates are in one ranked list.  Selection probes the exact-host bucket, the
wildcard buckets for each dot in the host and the host-less bucket, takes the
first matching candidate of each ranked list and keeps the best.  Cost:
O(labels(host) + distinct prefix lengths + regex candidates tried), not
O(routes).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass


from trio_gw.errors import ConfigError, Problem
from trio_gw.http._candidates import Candidate, Hit, authority, compile_route
from trio_gw.http.facts import RequestFacts, parse_host_header
from trio_gw.http.paths import join_upstream_path
from trio_gw.http.responses import error_body
from trio_gw.model.entities import Route, Service

__all__ = [
    "RequestFacts",
    "RouteMatch",
    "Router",
    "HttpsRedirect",
    "https_redirect",
    "parse_host_header",
    "select_route",
    "select_route_linear",
]



@dataclass(frozen=True, slots=True)
class RouteMatch:
    """The chosen route and what to send upstream.

    Attributes:
        route: the matched route.
        service: its service.
        upstream_path: service path joined with the request path (path_handling).
        upstream_host_header: the Host value for the upstream request.
        https_required: the route does not allow http; answer with
            :func:`https_redirect` instead of proxying.
        matched_host: the route's host pattern that matched, if any.
        matched_path: the route's path (as configured) that matched, if any.
        stripped_prefix: the part of the request path removed by
            ``strip_path`` (Kong's ``X-Forwarded-Prefix``), else ``None``.
        query: the request's query string (without ``?``).
    """

    route: Route
    service: Service
    upstream_path: str
    upstream_host_header: str
    https_required: bool = False
    matched_host: str | None = None
    matched_path: str | None = None
    stripped_prefix: str | None = None
    query: str = ""


class _Bucket:
    """Candidates sharing one host key, indexed by prefix (see module docs)."""

    __slots__ = ("by_prefix", "lengths", "rest")

    def __init__(self, candidates: Iterable[Candidate]) -> None:
        by_prefix: dict[str, list[Candidate]] = {}
        rest: list[Candidate] = []
        for cand in candidates:
            if cand.prefixes:
                for prefix in cand.prefixes:
                    by_prefix.setdefault(prefix, []).append(cand)
            else:
                rest.append(cand)
        for lst in by_prefix.values():
            lst.sort(key=Candidate.sort_key)
        rest.sort(key=Candidate.sort_key)
        self.by_prefix = by_prefix
        self.lengths = sorted({len(p) for p in by_prefix}, reverse=True)
        self.rest = rest

    def select(
        self, facts: RequestFacts, best: tuple[Candidate, Hit] | None
    ) -> tuple[Candidate, Hit] | None:
        path = facts.path
        lists: list[list[Candidate]] = [self.rest]
        for length in self.lengths:
            if length <= len(path):
                lst = self.by_prefix.get(path[:length])
                if lst:
                    lists.append(lst)
        for lst in lists:
            for cand in lst:
                if best is not None and not cand.rank < best[0].rank:
                    break
                hit = cand.match(facts)
                if hit is not None:
                    best = (cand, hit)
                    break
        return best


@dataclass(frozen=True, slots=True)
class Router:
    """Immutable route index; build once per snapshot with :meth:`build`.

    Attributes:
        header_names: header names any route matches on (pass to
            :meth:`RequestFacts.from_h11`).
        candidates: every candidate, best first (for inspection and tests).
    """

    exact: Mapping[str, _Bucket]
    suffixes: Mapping[str, _Bucket]
    prefixes: Mapping[str, _Bucket]
    hostless: _Bucket
    header_names: frozenset[str]
    candidates: tuple[Candidate, ...]

    @classmethod
    def build(cls, routes: Iterable[Route], services: Mapping[str, Service]) -> Router:
        """Compile routes into the index.

        Args:
            routes: every route (any order).
            services: services by id.

        Returns:
            The router.

        Raises:
            ConfigError: a path regex or host pattern cannot be used; every
                problem is reported, located as ``routes[<id>].paths[<i>]``.
        """
        candidates: list[Candidate] = []
        problems: list[Problem] = []
        for route in routes:
            service = services.get(route.service) if route.service else None
            if service is None or not service.enabled:
                continue
            try:
                candidates.extend(compile_route(route, service))
            except ConfigError as exc:
                problems.extend(exc.prefixed(f"routes[{route.id}]").problems)
        if problems:
            raise ConfigError(problems)
        candidates.sort(key=Candidate.sort_key)
        groups: dict[tuple[str, str], list[Candidate]] = {}
        for cand in candidates:
            keys = {("exact", h.name) for h in cand.hosts if h.kind == "exact"}
            keys |= {(h.kind, h.name) for h in cand.hosts if h.kind != "exact"}
            for key in keys or {("none", "")}:
                groups.setdefault(key, []).append(cand)

        def buckets(kind: str) -> dict[str, _Bucket]:
            return {name: _Bucket(c) for (k, name), c in groups.items() if k == kind}

        return cls(
            exact=buckets("exact"),
            suffixes=buckets("suffix"),
            prefixes=buckets("prefix"),
            hostless=_Bucket(groups.get(("none", ""), [])),
            header_names=frozenset(n for c in candidates for n in c.header_names),
            candidates=tuple(candidates),
        )

    def _buckets(self, host: str) -> list[_Bucket]:
        found = [self.hostless]
        bucket = self.exact.get(host)
        if bucket is not None:
            found.append(bucket)
        if self.suffixes or self.prefixes:
            dot = host.find(".", 1)
            while dot > 0:
                bucket = self.suffixes.get(host[dot:])
                if bucket is not None:
                    found.append(bucket)
                if dot + 1 < len(host):
                    bucket = self.prefixes.get(host[: dot + 1])
                    if bucket is not None:
                        found.append(bucket)
                dot = host.find(".", dot + 1)
        return found


def select_route(router: Router, request: RequestFacts) -> RouteMatch | None:
    """Choose the route for a request.

    Args:
        router: the compiled router.
        request: the request facts.

    Returns:
        The match (possibly with ``https_required``), or ``None`` (answer 404).
    """
    best: tuple[Candidate, Hit] | None = None
    for bucket in router._buckets(request.host):
        best = bucket.select(request, best)
    if best is None:
        return None
    cand, (https_required, matched_host, matched_path, matched_len) = best
    return _route_match(cand, request, https_required, matched_host, matched_path, matched_len)


def select_route_linear(candidates: Sequence[Candidate], request: RequestFacts) -> RouteMatch | None:
    """Reference selection: scan every candidate in rank order (tests, debugging).

    Args:
        candidates: ``Router.candidates``.
        request: the request facts.

    Returns:
        The same answer :func:`select_route` must give.
    """
    for cand in sorted(candidates, key=Candidate.sort_key):
        hit = cand.match(request)
        if hit is not None:
            return _route_match(cand, request, *hit)
    return None


def _route_match(
    cand: Candidate,
    request: RequestFacts,
    https_required: bool,
    matched_host: str | None,
    matched_path: str | None,
    matched_len: int,
) -> RouteMatch:
    route, service = cand.route, cand.service
    path = request.path
    postfix = path[matched_len:] if matched_path is not None else path[1:]
    stripped = path[:matched_len] if route.strip_path and matched_path is not None else None
    upstream_path = join_upstream_path(
        service.path,
        path,
        postfix,
        strip_path=route.strip_path and matched_path is not None,
        path_handling=route.path_handling,
    )
    if route.preserve_host and request.host_header is not None:
        host_header = request.host_header
    elif route.preserve_host:
        host_header = authority(request.host, request.port, None)
    else:
        host_header = cand.service_authority
    return RouteMatch(
        route=route,
        service=service,
        upstream_path=upstream_path,
        upstream_host_header=host_header,
        https_required=https_required,
        matched_host=matched_host,
        matched_path=matched_path,
        stripped_prefix=stripped if stripped not in (None, "/") else None,
        query=request.query,
    )


@dataclass(frozen=True, slots=True)
class HttpsRedirect:
    """The answer to an http request whose route requires https.

    Attributes:
        status: 426, or 301/302/307/308.
        headers: response headers, without ``content-length`` (the driver adds
            it, and ``connection: close`` when it will close).
        body: the body (JSON for 426, empty for redirects).
    """

    status: int
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes


_UPGRADE_REQUIRED = HttpsRedirect(
    426,
    (
        (b"content-type", b"application/json; charset=utf-8"),
        (b"connection", b"Upgrade"),
        (b"upgrade", b"TLS/1.2, HTTP/1.1"),
    ),
    error_body(426),
)


def https_redirect(match: RouteMatch, request: RequestFacts, https_port: int) -> HttpsRedirect:
    """Decide the answer to an http request whose route requires https.

    Args:
        match: a match with ``https_required``.
        request: the request facts.
        https_port: the port of the gateway's https listener.

    Returns:
        For ``https_redirect_status_code`` 426 (Kong's default): JSON
        ``{"message": "Please use HTTPS protocol"}`` with ``Upgrade: TLS/1.2,
        HTTP/1.1``.  For 301/302/307/308: an empty redirect to
        ``https://host[:port]/path?query`` (port omitted when 443).  426 also
        when the request has no host to redirect to.
    """
    status = match.route.https_redirect_status_code
    if status not in (301, 302, 307, 308) or not request.host:
        return _UPGRADE_REQUIRED
    location = "https://" + authority(request.host, https_port, "https") + request.path
    if request.query:
        location += "?" + request.query
    return HttpsRedirect(status, ((b"location", location.encode("latin-1")),), b"")
