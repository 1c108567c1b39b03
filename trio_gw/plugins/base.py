"""Request-phase plugins: pure ``decide(config, request) -> decision`` policies.

Theory of operation
-------------------
A plugin is a :class:`PluginSpec`: a name, a priority (higher runs first, as in
Kong), a config parser (registered with the declarative loader and the Admin
API, so bad config is refused at load time with a path), and ``decide``.  The
snapshot compiles, per route, the ordered list of ``(spec, config)`` that apply
— for each plugin name the most specific scope wins (route > service > global)
— so the proxy only iterates a tuple per request.  ``decide`` sees a
:class:`RequestContext` and returns :class:`Allow` (optionally adding upstream
headers / naming a consumer) or :class:`Deny` (status, message, stable reason).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from trio_gw.errors import ConfigError, Problem
from trio_gw.http.facts import RequestFacts
from trio_gw.model.entities import Consumer, Entities, Plugin, Route
from trio_gw.model.validation import PLUGIN_SCHEMAS

Header = tuple[bytes, bytes]


@dataclass(frozen=True)
class RequestContext:
    """What a plugin may look at: request facts, headers, and connection facts."""

    facts: RequestFacts
    headers: Sequence[Header]
    client_ip: str
    trusted_client: bool
    tls: bool = False
    tls_version: str | None = None
    sni: str | None = None
    peer_certificate_der: bytes | None = None
    now: float = 0.0

    def header(self, name: bytes) -> bytes | None:
        """The first value of header ``name`` (lowercase), or ``None``."""
        for k, v in self.headers:
            if k == name:
                return v
        return None


@dataclass(frozen=True)
class Allow:
    upstream_headers: tuple[Header, ...] = ()
    consumer: Consumer | None = None


@dataclass(frozen=True)
class Deny:
    status: int
    message: str
    reason: str
    headers: tuple[Header, ...] = ()


Decision = Allow | Deny
ALLOW = Allow()


@dataclass(frozen=True)
class PluginSpec:
    name: str
    priority: int
    parse_config: Callable[[Mapping[str, Any], str], Mapping[str, Any]]
    decide: Callable[[Mapping[str, Any], RequestContext], Decision]


@dataclass(frozen=True)
class BoundPlugin:
    spec: PluginSpec
    config: Mapping[str, Any] = field(hash=False)
    plugin_id: str = ""


REGISTRY: dict[str, PluginSpec] = {}


def register(spec: PluginSpec) -> PluginSpec:
    """Make ``spec`` available by name to the loader, the Admin API and the snapshot."""
    REGISTRY[spec.name] = spec
    PLUGIN_SCHEMAS[spec.name] = spec.parse_config
    return spec


def check_plugins_available(entities: Entities) -> None:
    """Refuse a configuration naming a plugin trio-gw does not have.

    Accepting it silently would let a user believe a policy (say, ``acl``) is
    enforced when it is not.

    Raises:
        ConfigError: naming each unknown plugin.
    """
    problems = [
        Problem(f"plugins[{p.id}].name", f"plugin {p.name!r} is not available in trio-gw "
                f"(available: {', '.join(sorted(REGISTRY)) or 'none'})")
        for p in entities.plugins.values()
        if p.name not in REGISTRY
    ]
    if problems:
        raise ConfigError(problems)


def plugins_by_route(entities: Entities) -> dict[str, tuple[BoundPlugin, ...]]:
    """For each route, the plugins that apply to it, highest priority first.

    Consumer-scoped plugins are left for the authentication phase.
    """
    global_: dict[str, Plugin] = {}
    by_service: dict[str, dict[str, Plugin]] = {}
    by_route: dict[str, dict[str, Plugin]] = {}
    for p in entities.plugins.values():
        if not p.enabled or p.consumer is not None:
            continue
        if p.route is not None:
            by_route.setdefault(p.route, {})[p.name] = p
        elif p.service is not None:
            by_service.setdefault(p.service, {})[p.name] = p
        else:
            global_[p.name] = p
    out: dict[str, tuple[BoundPlugin, ...]] = {}
    for route in entities.routes.values():
        out[route.id] = _bind(_merge(global_, by_service.get(route.service or "", {}), by_route.get(route.id, {})))
    return out


def _merge(*layers: Mapping[str, Plugin]) -> Iterable[Plugin]:
    merged: dict[str, Plugin] = {}
    for layer in layers:  # least specific first: later layers win per name
        merged.update(layer)
    return merged.values()


def _bind(plugins: Iterable[Plugin]) -> tuple[BoundPlugin, ...]:
    bound = [BoundPlugin(REGISTRY[p.name], p.config, p.id) for p in plugins if p.name in REGISTRY]
    bound.sort(key=lambda b: (-b.spec.priority, b.spec.name))
    return tuple(bound)


def routes_with_plugin(entities: Entities, name: str) -> list[tuple[Route, Plugin]]:
    """Every route a plugin named ``name`` applies to, with the plugin entity itself."""
    plugins = {p.id: p for p in entities.plugins.values()}
    found = []
    for route_id, bound in plugins_by_route(entities).items():
        for b in bound:
            if b.spec.name == name:
                found.append((entities.routes[route_id], plugins[b.plugin_id]))
    return found
