"""Compiled route candidates: one per (route, path group), with its Kong rank.

Private to :mod:`trio_gw.http.routing`, which documents the matching rules and
the priority order this module implements.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from trio_gw.errors import ConfigError, Problem
from trio_gw.http.facts import RequestFacts
from trio_gw.model.entities import Route, Service
from trio_gw.model.hosts import HostPattern, parse_host_pattern

#: (https_required, matched host pattern, matched route path, matched length)
Hit = tuple[bool, str | None, str | None, int]

_SERVED_PROTOCOLS = frozenset({"http", "https"})
_DEFAULT_PORTS = {"http": 80, "https": 443}
_PCRE_NAMED_GROUP = re.compile(r"\(\?<(?=[A-Za-z_])")


def authority(host: str, port: int | None, scheme: str | None) -> str:
    """``host[:port]`` for a Host header, omitting the scheme's default port.

    Args:
        host: a host name or IP literal (IPv6 gets brackets).
        port: the port, or ``None``.
        scheme: ``"http"``/``"https"`` (whose default port is omitted), or ``None``.

    Returns:
        The authority string.
    """
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    if port is None or _DEFAULT_PORTS.get(scheme or "") == port:
        return host
    return f"{host}:{port}"


def _compile_regex(pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(_PCRE_NAMED_GROUP.sub("(?P<", pattern))
    except re.error as exc:
        raise ConfigError(f"invalid regex {pattern!r}: {exc}") from exc


@dataclass(frozen=True, slots=True)
class Candidate:
    """One (route, path group) pair, compiled for matching.

    ``rank`` sorts ascending, best first; see :mod:`trio_gw.http.routing`.
    """

    route: Route
    service: Service
    rank: tuple[int, int, int, int, int, int, int, str]
    protocols: frozenset[str]
    methods: frozenset[str] | None
    hosts: tuple[HostPattern, ...]
    snis: frozenset[str] | None
    headers: tuple[tuple[str, frozenset[str], tuple[re.Pattern[str], ...]], ...]
    prefixes: tuple[str, ...]
    regexes: tuple[tuple[str, re.Pattern[str]], ...]
    service_authority: str

    @property
    def header_names(self) -> tuple[str, ...]:
        """Header names this candidate matches on."""
        return tuple(name for name, _, _ in self.headers)

    def sort_key(self) -> tuple[int, int, int, int, int, int, int, str]:
        """The rank (for ``sorted(key=Candidate.sort_key)``)."""
        return self.rank

    def match(self, facts: RequestFacts) -> Hit | None:
        """Match every configured attribute (see module docs).

        Args:
            facts: the request facts.

        Returns:
            ``(https_required, matched_host, matched_path, matched_len)`` or ``None``.
        """
        protocol = facts.protocol
        https_required = False
        if protocol not in self.protocols:
            if protocol != "http" or "https" not in self.protocols:
                return None
            https_required = True
        if self.methods is not None and facts.method not in self.methods:
            return None
        matched_host = None
        if self.hosts:
            host, port = facts.host, facts.effective_port
            for pattern in self.hosts:
                if pattern.matches(host, port):
                    matched_host = pattern.text
                    break
            else:
                return None
        if self.snis is not None and protocol == "https" and facts.sni not in self.snis:
            return None
        if self.headers and not self._match_headers(facts.headers):
            return None
        path = facts.path
        if self.prefixes:
            for prefix in self.prefixes:
                if path.startswith(prefix):
                    return (https_required, matched_host, prefix, len(prefix))
            return None
        for text, regex in self.regexes:
            m = regex.match(path)
            if m is not None:
                return (https_required, matched_host, text, m.end())
        if self.regexes:
            return None
        return (https_required, matched_host, None, 0)

    def _match_headers(self, headers: Mapping[str, tuple[str, ...]]) -> bool:
        for name, plain, regexes in self.headers:
            values = headers.get(name)
            if not values:
                return False
            for value in values:
                if value.lower() in plain or any(r.search(value) for r in regexes):
                    break
            else:
                return False
        return True


def _path_groups(paths: tuple[str, ...]) -> list[tuple[tuple[str, ...], tuple[tuple[str, re.Pattern[str]], ...]]]:
    problems: list[Problem] = []
    regexes: list[tuple[str, re.Pattern[str]]] = []
    by_length: dict[int, list[str]] = {}
    for i, path in enumerate(paths):
        if path.startswith("~"):
            try:
                regexes.append((path, _compile_regex(path[1:])))
            except ConfigError as exc:
                problems.extend(exc.prefixed(f"paths[{i}]").problems)
        elif not path.startswith("/"):
            problems.append(Problem(f"paths[{i}]", "must start with '/' or '~'"))
        else:
            by_length.setdefault(len(path), []).append(path)
    if problems:
        raise ConfigError(problems)
    groups: list[tuple[tuple[str, ...], tuple[tuple[str, re.Pattern[str]], ...]]]
    groups = [(tuple(p), ()) for _, p in sorted(by_length.items())]
    if regexes:
        groups.append(((), tuple(regexes)))
    return groups or [((), ())]


def _compile_headers(
    headers: Mapping[str, tuple[str, ...]],
) -> tuple[tuple[str, frozenset[str], tuple[re.Pattern[str], ...]], ...]:
    out = []
    for name, values in sorted(headers.items()):
        plain = frozenset(v.lower() for v in values if not v.startswith("~*"))
        try:
            regexes = tuple(
                re.compile(_PCRE_NAMED_GROUP.sub("(?P<", v[2:]), re.IGNORECASE)
                for v in values
                if v.startswith("~*")
            )
        except re.error as exc:
            raise ConfigError(f"invalid regex: {exc}", f"headers.{name}") from exc
        out.append((name.lower(), plain, regexes))
    return tuple(out)


def compile_route(route: Route, service: Service) -> list[Candidate]:
    """Compile one route into its candidates (one per path group).

    Args:
        route: the route.
        service: its (enabled) service.

    Returns:
        The candidates; empty when the route serves neither http nor https.

    Raises:
        ConfigError: a host, path or header regex cannot be used.
    """
    protocols = frozenset(route.protocols) & _SERVED_PROTOCOLS
    if not protocols:
        return []
    problems: list[Problem] = []
    hosts: list[HostPattern] = []
    for i, text in enumerate(route.hosts):
        try:
            hosts.append(parse_host_pattern(text))
        except ConfigError as exc:
            problems.extend(exc.prefixed(f"hosts[{i}]").problems)
    try:
        groups = _path_groups(route.paths)
        headers = _compile_headers(route.headers)
    except ConfigError as exc:
        problems.extend(exc.problems)
    if problems:
        raise ConfigError(problems)
    weight = sum(map(bool, (route.methods, route.hosts, route.headers, route.snis, route.paths)))
    plain_hosts = int(bool(hosts) and all(h.kind == "exact" for h in hosts))
    methods = frozenset(route.methods) if route.methods else None
    snis = frozenset(s.lower().rstrip(".") for s in route.snis) if route.snis else None
    service_authority = authority(service.host, service.port, service.protocol)
    out = []
    for prefixes, regexes in groups:
        is_regex = int(bool(regexes))
        rank = (
            -weight,
            -plain_hosts,
            -len(headers),
            -is_regex,
            -route.regex_priority if is_regex else 0,
            -len(prefixes[0]) if prefixes else 0,
            route.created_at,
            route.id,
        )
        out.append(
            Candidate(
                route, service, rank, protocols, methods, tuple(hosts), snis, headers,
                prefixes, regexes, service_authority,
            )
        )
    return out
