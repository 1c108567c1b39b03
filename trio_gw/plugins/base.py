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

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from cryptography import x509

from trio_gw.errors import ConfigError, Problem
from trio_gw.http.facts import RequestFacts
from trio_gw.model.entities import Consumer, Entities, Plugin, Route
from trio_gw.model.validation import PLUGIN_SCHEMAS
from trio_gw.tls.client_revocation import OcspAnswers

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
    #: The certificates the client sent after its leaf, DER, in the order sent
    #: (``get_unverified_chain()[1:]``); empty on a resumed session.
    peer_chain_der: tuple[bytes, ...] = ()
    #: Where CRLs fetched from distribution points are cached (IO layer fills it).
    crl_source: CrlSource | None = None
    #: Where verified OCSP answers are cached (IO layer fills it); consulted before CRLs.
    ocsp_source: OcspAnswers | None = None

    def header(self, name: bytes) -> bytes | None:
        """The first value of header ``name`` (lowercase), or ``None``."""
        for k, v in self.headers:
            if k == name:
                return v
        return None


class CrlSource(Protocol):
    """CRLs by distribution-point URL, as the IO layer last fetched them.

    ``crl_for`` never blocks: it answers from a cache and, on a miss, may
    note the URL so the IO layer fetches it (see
    :class:`trio_gw.plugins.crl_cache.CrlCache`, a pure implementation).
    """

    def crl_for(self, url: str, now: float) -> x509.CertificateRevocationList | None:
        """The cached, parsed CRL at ``url``, or ``None`` (unknown or expired)."""
        ...


@dataclass(frozen=True)
class Allow:
    """Let the request through.

    ``upstream_headers`` are added to the upstream request; ``strip_headers``
    (lowercase names) are removed from the client's headers first, so a client
    can never inject identity headers; ``consumer`` is the authenticated
    consumer; ``credential`` the id of the credential that matched.
    """

    upstream_headers: tuple[Header, ...] = ()
    consumer: Consumer | None = None
    strip_headers: frozenset[bytes] = frozenset()
    credential: str | None = None
    #: Query parameters removed before proxying (key-auth ``hide_credentials``).
    strip_query: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Deny:
    """Refuse the request: status, message, stable reason, extra answer headers.

    ``consumer`` is set by :func:`decide_all` when an earlier plugin had
    authenticated one (the access log names who was refused).
    """

    status: int
    message: str
    reason: str
    headers: tuple[Header, ...] = ()
    consumer: Consumer | None = None


Decision = Allow | Deny
ALLOW = Allow()


@dataclass(frozen=True)
class PrepareEnv:
    """What ``prepare`` may look at: the configuration and the node options.

    ``options`` are the node settings (``Settings.as_mapping()``), e.g.
    ``allow_unsafe_dynamic_mtls_token``; empty means every default.
    """

    entities: Entities
    options: Mapping[str, Any] = field(default_factory=dict)
    plugin_id: str = ""


@dataclass(frozen=True)
class PluginSpec:
    """A plugin: name, priority (higher first), config parser, decision.

    ``prepare(config, env)`` (optional) turns the parsed config into what
    ``decide`` gets, once per snapshot; ``for_route(prepared, route)``
    (optional) specialises it per route; ``warnings(prepared)`` (optional)
    lists node warnings it causes.
    """

    name: str
    priority: int
    parse_config: Callable[[Mapping[str, Any], str], Mapping[str, Any]]
    decide: Callable[[Any, RequestContext], Decision]
    prepare: Callable[[Mapping[str, Any], PrepareEnv], Any] | None = None
    for_route: Callable[[Any, Route], Any] | None = None
    warnings: Callable[[Any], Sequence[str]] | None = None
    #: Config fields never shown by the Admin API (a private key): see :func:`public_config`.
    secret_fields: frozenset[str] = frozenset()
    #: ``False`` for a plugin that configures the node rather than requests (``acme``): never bound to routes.
    per_request: bool = True


@dataclass(frozen=True)
class BoundPlugin:
    spec: PluginSpec
    config: Any = field(hash=False)
    plugin_id: str = ""


REGISTRY: dict[str, PluginSpec] = {}


def register(spec: PluginSpec) -> PluginSpec:
    """Make ``spec`` available by name to the loader, the Admin API and the snapshot."""
    REGISTRY[spec.name] = spec
    PLUGIN_SCHEMAS[spec.name] = spec.parse_config
    return spec


def public_config(name: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """A plugin's config as the Admin API shows it: without its secret fields (a private key).

    Like certificates, whose keys the Admin API never returns, a secret field is
    left out (a PATCH that does not name it keeps the stored value).
    """
    import trio_gw.plugins  # noqa: F401  (registers every plugin, so each one's secret fields are known)

    spec = REGISTRY.get(name)
    secret = spec.secret_fields if spec is not None else frozenset()
    return {k: v for k, v in config.items() if k not in secret}


def check_plugins_available(entities: Entities, enabled: Collection[str] | None = None) -> None:
    """Refuse a configuration naming a plugin trio-gw does not have, or one not enabled on this node.

    Accepting it silently would let a user believe a policy (say, ``acl``) is
    enforced when it is not.  ``enabled`` is the node's ``plugins`` setting
    (Kong's ``plugins``, formerly ``plugins_available``): a plugin trio-gw has
    but this node does not enable is refused as Kong refuses it (the start
    fails; an Admin API write gets 400), whether the plugin entity is enabled
    or not.

    Args:
        entities: the configuration.
        enabled: the plugin names enabled on the node; ``None``: every plugin.

    Raises:
        ConfigError: naming each unknown or not enabled plugin.
    """
    problems = []
    for p in sorted(entities.plugins.values(), key=lambda p: p.id):
        if p.name not in REGISTRY:
            problems.append(Problem(f"plugins[{p.id}].name", f"plugin {p.name!r} is not available in trio-gw "
                                    f"(available: {', '.join(sorted(REGISTRY)) or 'none'})"))
        elif enabled is not None and p.name not in enabled:
            problems.append(Problem(
                f"plugins[{p.id}].name",
                f"plugin {p.name!r} is not enabled on this node; add it to the 'plugins' setting "
                f"(enabled: {', '.join(sorted(enabled)) or 'none'})",
            ))
    if problems:
        raise ConfigError(problems)


def plugins_by_route(
    entities: Entities, options: Mapping[str, Any] | None = None
) -> dict[str, tuple[BoundPlugin, ...]]:
    """For each route, the plugins that apply to it, highest priority first.

    Consumer-scoped plugins are left for the authentication phase.  Each
    plugin entity is prepared once (see the module docstring).

    Args:
        entities: the configuration.
        options: the node settings (``Settings.as_mapping()``) plugins may read.

    Raises:
        ConfigError: a plugin's config cannot be prepared against the
            configuration (e.g. a CA certificate it names is missing).
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
    prepared = _Prepared(entities, options or {})
    out: dict[str, tuple[BoundPlugin, ...]] = {}
    for route in entities.routes.values():
        merged = _merge(global_, by_service.get(route.service or "", {}), by_route.get(route.id, {}))
        out[route.id] = _bind(merged, prepared, route)
    return out


def plugin_warnings(entities: Entities, options: Mapping[str, Any] | None = None) -> tuple[str, ...]:
    """Node warnings caused by enabled plugins (an unsafe option in use), for the snapshot.

    Args:
        entities: the configuration.
        options: the node settings (``Settings.as_mapping()``).

    Returns:
        One line per warning, stable order.
    """
    prepared = _Prepared(entities, options or {})
    found: list[str] = []
    for p in sorted(entities.plugins.values(), key=lambda p: p.id):
        spec = REGISTRY.get(p.name)
        if p.enabled and spec is not None and spec.warnings is not None:
            found.extend(spec.warnings(prepared.get(spec, p)))
    return tuple(found)


class _Prepared:
    """Prepared configs by plugin id, for one snapshot."""

    def __init__(self, entities: Entities, options: Mapping[str, Any]) -> None:
        self.entities = entities
        self.options = options
        self.cache: dict[str, Any] = {}

    def get(self, spec: PluginSpec, plugin: Plugin) -> Any:
        if spec.prepare is None:
            return plugin.config
        if plugin.id not in self.cache:
            env = PrepareEnv(self.entities, self.options, plugin.id)
            try:
                self.cache[plugin.id] = spec.prepare(plugin.config, env)
            except ConfigError as exc:
                raise exc.prefixed(f"plugins[{plugin.id}].config") from exc
        return self.cache[plugin.id]


def _merge(*layers: Mapping[str, Plugin]) -> Iterable[Plugin]:
    merged: dict[str, Plugin] = {}
    for layer in layers:  # least specific first: later layers win per name
        merged.update(layer)
    return merged.values()


def _bind(plugins: Iterable[Plugin], prepared: _Prepared, route: Route) -> tuple[BoundPlugin, ...]:
    bound = []
    for p in plugins:
        spec = REGISTRY.get(p.name)
        if spec is None or not spec.per_request:
            continue
        config = prepared.get(spec, p)
        if spec.for_route is not None:
            config = spec.for_route(config, route)
        bound.append(BoundPlugin(spec, config, p.id))
    bound.sort(key=lambda b: (-b.spec.priority, b.spec.name))
    return tuple(bound)


def decide_all(plugins: Sequence[BoundPlugin], request: RequestContext) -> Decision:
    """Apply a route's plugins in priority order; the first denial wins.

    The allowances are merged: headers added in order, strip sets united, the
    last consumer named wins.  (The proxy's ``run_plugins`` should call this.)

    Args:
        plugins: the route's bound plugins (from :func:`plugins_by_route`).
        request: the request.

    Returns:
        The first :class:`Deny`, or the merged :class:`Allow`.
    """
    headers: list[Header] = []
    strip: set[bytes] = set()
    strip_query: set[str] = set()
    consumer: Consumer | None = None
    credential: str | None = None
    for bound in plugins:
        decision = bound.spec.decide(bound.config, request)
        if isinstance(decision, Deny):
            return replace(decision, consumer=consumer) if consumer is not None else decision
        headers.extend(decision.upstream_headers)
        strip |= decision.strip_headers
        strip_query |= decision.strip_query
        if decision.consumer is not None:
            consumer, credential = decision.consumer, decision.credential
    return Allow(tuple(headers), consumer, frozenset(strip), credential, frozenset(strip_query))


def routes_with_plugin(entities: Entities, name: str) -> list[tuple[Route, Plugin]]:
    """Every route a plugin named ``name`` applies to, with the plugin entity itself."""
    plugins = {p.id: p for p in entities.plugins.values()}
    found = []
    for route_id, bound in plugins_by_route(entities).items():
        for b in bound:
            if b.spec.name == name:
                found.append((entities.routes[route_id], plugins[b.plugin_id]))
    return found
