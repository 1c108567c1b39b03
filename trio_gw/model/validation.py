"""Field rules for services, routes, SNIs, consumers and plugins.

Each ``read_*`` function reads one entity mapping of a declarative document
(Kong decK format) and returns the keyword arguments for its dataclass in
:mod:`trio_gw.model.entities`, with ``id`` (``None`` when not given) and with
references to other entities left as :class:`~trio_gw.model.fields.Ref` values.
Problems are recorded in the shared :class:`~trio_gw.model.fields.Context`,
never raised, so one load reports all of them.  Rules that need more than one
entity (ids, uniqueness, references) are the loader's (``model.declarative``).

Certificates and CA certificates are validated by ``model.certificates``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping
from typing import Any, Final
from urllib.parse import urlsplit

from trio_gw.errors import ConfigError, Problem
from trio_gw.model.entities import DEFAULT_HTTPS_REDIRECT_STATUS, DEFAULT_UPSTREAM_TIMEOUT_MS
from trio_gw.model.fields import Context, Fields, Ref, describe, join_path
from trio_gw.model.values import (
    InvalidValue,
    check_header_name,
    check_header_value,
    check_method,
    check_name,
    check_plain_path,
    check_route_host,
    check_route_path,
    check_route_sni,
    check_service_host,
    check_sni_name,
    migrate_legacy_path,
    parse_service_url,
)

#: Validates and normalises one plugin's ``config``.  Called with the config
#: and its path in the document (for context only); raises ConfigError with
#: paths relative to the config, which the loader places under that path.
PluginSchema = Callable[[Mapping[str, Any], str], Mapping[str, Any]]
#: Plugin name → schema.  Plugins register here; a name without an entry keeps its config as given.
PLUGIN_SCHEMAS: dict[str, PluginSchema] = {}

SUPPORTED_PROTOCOLS: Final = ("http", "https")
#: Kong protocols trio-gw does not serve yet (they get "not supported yet", not "invalid").
UNSUPPORTED_PROTOCOLS: Final = ("grpc", "grpcs", "tcp", "tls", "tls_passthrough", "udp", "ws", "wss")
#: A plugin may be limited to gRPC requests too (Kong's default plugin protocols).
PLUGIN_PROTOCOLS: Final = ("grpc", "grpcs", "http", "https")
HTTPS_REDIRECT_STATUSES: Final = (426, 301, 302, 307, 308)
PATH_HANDLINGS: Final = ("v0", "v1")
#: Kong: ``timeout`` typedef is 1..2^31-2 ms; ``retries`` 0..32767; verify depth 0..64.
MAX_TIMEOUT_MS: Final = 2**31 - 2
MAX_RETRIES: Final = 32767
MAX_VERIFY_DEPTH: Final = 64
DEFAULT_RETRIES: Final = 5
_INT32: Final = 2**31

_COMMON: Final = frozenset({"id", "tags", "created_at", "updated_at"})
SERVICE_FIELDS: Final = _COMMON | {
    "name", "url", "protocol", "host", "port", "path", "retries", "connect_timeout",
    "read_timeout", "write_timeout", "enabled", "client_certificate", "certificates",
    "ca_certificates", "tls_verify", "tls_verify_depth",
    # beyond Kong (Tyk's tlsTransport, certificatePinning and proxy; see docs/upstream-tls.md)
    "tls_min_version", "tls_max_version", "tls_ciphers", "tls_force_common_name_check",
    "tls_pinned_public_keys", "proxy_url",
}  # fmt: skip
#: Service fields that only make sense for an https upstream.
SERVICE_TLS_FIELDS: Final = (
    "client_certificate", "certificates", "ca_certificates", "tls_verify", "tls_verify_depth",
    "tls_min_version", "tls_max_version", "tls_ciphers", "tls_force_common_name_check",
    "tls_pinned_public_keys",
)  # fmt: skip
#: TLS version spellings (Kong/Tyk/OpenSSL) → canonical ``1.x`` (parsed again by ``tls.versions``).
_TLS_VERSIONS: Final[Mapping[str, str]] = {
    **{f"{p}1{s}{m}": f"1.{m}" for p in ("", "tls", "tlsv") for s in (".", "_") for m in "0123"},
    **{f"{p}1": "1.0" for p in ("tls", "tlsv")}, **{str(769 + m): f"1.{m}" for m in range(4)},
}  # fmt: skip
ROUTE_FIELDS: Final = _COMMON | {
    "name", "service", "protocols", "methods", "hosts", "paths", "headers", "snis",
    "https_redirect_status_code", "regex_priority", "strip_path", "preserve_host", "path_handling",
}  # fmt: skip
#: Kong route fields not implemented: accepted only with Kong's default (decK dumps carry them).
ROUTE_KONG_DEFAULTS: Final[Mapping[str, object]] = {
    "request_buffering": True, "response_buffering": True,
    "sources": None, "destinations": None, "expression": None, "priority": None,
}  # fmt: skip
SNI_FIELDS: Final = _COMMON | {"name", "certificate"}
CONSUMER_FIELDS: Final = _COMMON | {"username", "custom_id"}
PLUGIN_FIELDS: Final = _COMMON | {"name", "config", "enabled", "protocols", "service", "route", "consumer"}
PLUGIN_KONG_DEFAULTS: Final[Mapping[str, object]] = {"instance_name": None, "ordering": None}
#: Which field of each kind a reference may use besides ``id``.
NATURAL_KEYS: Final[Mapping[str, str | None]] = {
    "services": "name", "routes": "name", "consumers": "username",
    "certificates": None, "ca_certificates": None,
}  # fmt: skip
_PLUGIN_NAME: Final = re.compile(r"[A-Za-z0-9_-]+")


def read_service(raw: Mapping[Any, Any], path: str, ctx: Context, nested: Collection[str] = ()) -> dict[str, Any]:
    """Read a service: ``url`` or ``protocol``/``host``/``port``/``path``, timeouts, upstream TLS.

    Args:
        raw: the service mapping.
        path: its path, e.g. ``services[0]``.
        ctx: the load context (problems are recorded there).
        nested: keys the caller reads itself (``routes``, ``plugins``).

    Returns:
        Keyword arguments for :class:`~trio_gw.model.entities.Service`.
    """
    f = Fields(raw, path, ctx)
    f.check_keys(SERVICE_FIELDS | set(nested))
    out: dict[str, Any] = {"id": f.identity(), "name": f.string("name", check_name)}
    out.update(_url(f) if f.get("url") is not None else _location(f))
    out["retries"] = f.integer("retries", 0, MAX_RETRIES, DEFAULT_RETRIES)
    for key in ("connect_timeout", "read_timeout", "write_timeout"):
        out[key] = f.integer(key, 1, MAX_TIMEOUT_MS, DEFAULT_UPSTREAM_TIMEOUT_MS)
    out.update(enabled=f.boolean("enabled", True), tags=f.tags(), **f.timestamps())
    out.update(_upstream_tls(f, out["protocol"]))
    return out


def _protocol(value: str) -> str:
    if value in SUPPORTED_PROTOCOLS:
        return value
    if value in UNSUPPORTED_PROTOCOLS:
        raise InvalidValue(f"protocol {value!r} is not supported yet (supported: http, https)")
    raise InvalidValue(f"expected one of 'http', 'https', got {value!r}")


def _location(f: Fields) -> dict[str, Any]:
    protocol = f.string("protocol", _protocol) or "http"
    # Kong defaults to 80 whatever the protocol; an https upstream on port 80 is
    # almost always a mistake, so the port follows the protocol, as for ``url``.
    default_port = 443 if protocol == "https" else 80
    return {
        "protocol": protocol,
        "host": f.string("host", check_service_host, required=True) or "",
        "port": f.integer("port", 0, 65535, default_port),
        "path": f.string("path", check_plain_path),
    }


def _url(f: Fields) -> dict[str, Any]:
    for key in ("protocol", "host", "port", "path"):
        if f.get(key) is not None:
            f.report(key, "cannot be combined with 'url' (which sets it)")
    url = f.string("url")
    try:
        protocol, host, port, path = parse_service_url(url or "")
    except InvalidValue as exc:
        if url is not None:
            f.report("url", str(exc))
        return {"protocol": "http", "host": "", "port": 80, "path": None}
    return {"protocol": protocol, "host": host, "port": port, "path": path}


def _upstream_tls(f: Fields, protocol: str) -> dict[str, Any]:
    certificates = _client_certificates(f)
    out: dict[str, Any] = {
        "client_certificate": certificates[0] if certificates else None,
        "client_certificate_alternates": certificates[1:],
        "ca_certificates": _references(f, "ca_certificates", "ca_certificates"),
        "tls_verify": f.boolean("tls_verify", None),
        "tls_verify_depth": f.integer("tls_verify_depth", 0, MAX_VERIFY_DEPTH, None),
        "tls_min_version": _tls_version(f, "tls_min_version"),
        "tls_max_version": _tls_version(f, "tls_max_version"),
        "tls_ciphers": _name_list(f, "tls_ciphers", ":,"),
        "tls_force_common_name_check": f.boolean("tls_force_common_name_check", None),
        "tls_pinned_public_keys": _name_list(f, "tls_pinned_public_keys", ","),
        "proxy_url": f.string("proxy_url", _proxy_url),
    }
    if protocol != "https":
        for key in SERVICE_TLS_FIELDS:
            if f.get(key) is not None:
                f.report(key, "only allowed when protocol is 'https'")
    return out


def _client_certificates(f: Fields) -> tuple[Ref, ...]:
    """Kong's ``client_certificate``, or the ``certificates: [refs]`` form of Kong's docs (seed 001).

    With several certificates, the first one currently valid is presented
    (``tls.upstream``), so a replacement can be listed before the old one expires.
    """
    if f.get("certificates") is None:
        ref = f.reference("client_certificate", "certificates", None)
        return (ref,) if ref is not None else ()
    if f.get("client_certificate") is not None:
        f.report("certificates", "cannot be combined with 'client_certificate' (use only one)")
        return ()
    return _references(f, "certificates", "certificates")


def _tls_version(f: Fields, key: str) -> str | None:
    value = f.get(key)
    if value is None:
        return None
    text = str(value).strip().lower().replace(" ", "") if isinstance(value, str | int | float) else ""
    if isinstance(value, bool) or text not in _TLS_VERSIONS:
        f.report(key, f"expected a TLS version 1.0, 1.1, 1.2 or 1.3 (also TLSv1.2 or 771), got {describe(value)}")
        return None
    return _TLS_VERSIONS[text]


def _name_list(f: Fields, key: str, separators: str) -> tuple[str, ...]:
    """A list of strings, or one string separated by any of ``separators`` (Tyk writes both)."""
    value = f.get(key)
    if isinstance(value, str):
        for sep in separators[1:]:
            value = value.replace(sep, separators[0])
        items = tuple(v.strip() for v in value.split(separators[0]) if v.strip())
        if not items:
            f.report(key, "expected at least one value")
        return items
    return f.strings(key)


def _proxy_url(value: str) -> str:
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError as exc:
        raise InvalidValue(f"not a proxy URL: {exc}") from exc
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise InvalidValue("expected http://[user:password@]host:port or https://...")
    if parts.path not in ("", "/") or parts.query or parts.fragment or port == 0:
        raise InvalidValue("a forward proxy URL has a host and a port (1-65535) only, no path or query")
    return value.strip()


def _references(f: Fields, key: str, kind: str) -> tuple[Ref, ...]:
    value = f.get(key)
    if value is None:
        return ()
    if not isinstance(value, list | tuple):
        f.report(key, f"expected a list of ids, got {describe(value)}")
        return ()
    refs: list[Ref] = []
    for index, item in enumerate(value):
        ref = f.reference_value(item, join_path(f.at(key), index), kind, NATURAL_KEYS[kind])
        if ref is not None and ref in refs:
            f.ctx.problems.append(Problem(ref.path, f"duplicate value {ref.value!r}"))
        elif ref is not None:
            refs.append(ref)
    return tuple(refs)


def read_route(
    raw: Mapping[Any, Any], path: str, ctx: Context, nested: Collection[str] = (), *, in_service: bool = False
) -> dict[str, Any]:
    """Read a route: match rules (protocols, methods, hosts, paths, headers, snis) and behaviour.

    Args:
        raw: the route mapping.
        path: its path, e.g. ``services[0].routes[1]``.
        ctx: the load context.
        nested: keys the caller reads itself (``plugins``).
        in_service: the route is nested in a service, so it may not name one.

    Returns:
        Keyword arguments for :class:`~trio_gw.model.entities.Route`.
    """
    f = Fields(raw, path, ctx)
    f.check_keys(ROUTE_FIELDS | set(nested), ROUTE_KONG_DEFAULTS)
    if in_service and f.get("service") is not None:
        f.report("service", "not allowed in a route nested in a service (it belongs to that service)")
    check_path = _legacy_route_path if ctx.legacy_paths else check_route_path
    out: dict[str, Any] = {
        "id": f.identity(),
        "name": f.string("name", check_name),
        "protocols": _protocols(f, SUPPORTED_PROTOCOLS, SUPPORTED_PROTOCOLS),
        "methods": f.strings("methods", check_method),
        "hosts": f.strings("hosts", check_route_host),
        "paths": f.strings("paths", check_path),
        "headers": _headers(f),
        "snis": f.strings("snis", check_route_sni),
        "https_redirect_status_code": f.choice(
            "https_redirect_status_code", HTTPS_REDIRECT_STATUSES, DEFAULT_HTTPS_REDIRECT_STATUS
        ),
        "regex_priority": f.integer("regex_priority", -_INT32, _INT32 - 1, 0),
        "strip_path": f.boolean("strip_path", True),
        "preserve_host": f.boolean("preserve_host", False),
        "path_handling": f.choice("path_handling", PATH_HANDLINGS, "v0"),
        "tags": f.tags(),
        **f.timestamps(),
    }
    if not in_service:
        out["service"] = f.reference("service", "services", "name")
    _check_route_rules(f, out)
    return out


def _legacy_route_path(value: str) -> str:
    return check_route_path(migrate_legacy_path(value))


def _check_route_rules(f: Fields, route: Mapping[str, Any]) -> None:
    matchers = ("methods", "hosts", "paths", "headers", "snis")
    if not any(route[key] or f.get(key) for key in matchers):
        f.report(None, "must set one of 'methods', 'hosts', 'headers', 'paths', 'snis' (a route must match something)")
    if route["snis"] and "https" not in route["protocols"]:
        f.report("snis", "can only be set when 'protocols' includes 'https'")


def _protocols(f: Fields, supported: tuple[str, ...], default: tuple[str, ...]) -> tuple[str, ...]:
    def check(value: str) -> str:
        if value in supported:
            return value
        if value in UNSUPPORTED_PROTOCOLS:
            raise InvalidValue(f"protocol {value!r} is not supported yet (supported: {', '.join(supported)})")
        raise InvalidValue(f"expected one of {', '.join(map(repr, supported))}, got {value!r}")

    protocols = f.strings("protocols", check, default)
    if not protocols and f.get("protocols") is not None:
        if f.get("protocols") == []:
            f.report("protocols", "must not be empty")
        return default
    return protocols


def _headers(f: Fields) -> dict[str, tuple[str, ...]]:
    headers: dict[str, tuple[str, ...]] = {}
    for name, values in (f.mapping("headers") or {}).items():
        try:
            if not isinstance(name, str):
                raise InvalidValue(f"expected header names to be strings, got {describe(name)}")
            key = check_header_name(name)
            if key in headers:
                raise InvalidValue(f"duplicate header {name!r} (names are case-insensitive)")
        except InvalidValue as exc:
            f.report("headers", str(exc))
            continue
        inner = Fields({name: values}, f.at("headers"), f.ctx)
        checked = inner.strings(name, check_header_value)
        if values == []:
            inner.report(name, "expected at least one value")
        headers[key] = checked
    return headers


def read_sni(raw: Mapping[Any, Any], path: str, ctx: Context, *, in_certificate: bool = False) -> dict[str, Any]:
    """Read an SNI: a server name (exact, one wildcard at either end, or ``*``) and its certificate.

    Args:
        raw: the SNI mapping.
        path: its path, e.g. ``snis[0]`` or ``certificates[0].snis[1]``.
        ctx: the load context.
        in_certificate: nested in a certificate, which it then belongs to.

    Returns:
        Keyword arguments for :class:`~trio_gw.model.entities.SNI`; ``certificate`` is a
        :class:`Ref` (or ``None`` when nested or missing).
    """
    f = Fields(raw, path, ctx)
    f.check_keys(SNI_FIELDS)
    if in_certificate and f.get("certificate") is not None:
        f.report("certificate", "not allowed in an SNI nested in a certificate (it belongs to that certificate)")
    certificate = None
    if not in_certificate:
        certificate = f.reference("certificate", "certificates", None)
        if f.get("certificate") is None:
            f.report("certificate", "required field missing")
    return {
        "id": f.identity(),
        "name": f.string("name", check_sni_name, required=True),
        "certificate": certificate,
        "tags": f.tags(),
        **f.timestamps(),
    }


def read_consumer(raw: Mapping[Any, Any], path: str, ctx: Context, nested: Collection[str] = ()) -> dict[str, Any]:
    """Read a consumer: ``username`` and/or ``custom_id``.

    Args:
        raw: the consumer mapping.
        path: its path, e.g. ``consumers[0]``.
        ctx: the load context.
        nested: keys the caller reads itself (``plugins``, credential lists).

    Returns:
        Keyword arguments for :class:`~trio_gw.model.entities.Consumer`.
    """
    f = Fields(raw, path, ctx)
    f.check_keys(CONSUMER_FIELDS | set(nested))
    out = {
        "id": f.identity(),
        "username": f.string("username"),
        "custom_id": f.string("custom_id"),
        "tags": f.tags(),
        **f.timestamps(),
    }
    if f.get("username") is None and f.get("custom_id") is None:
        f.report(None, "at least one of 'username' or 'custom_id' is required")
    return out


def read_plugin(raw: Mapping[Any, Any], path: str, ctx: Context, *, parent: str | None = None) -> dict[str, Any]:
    """Read a plugin: ``name``, ``config`` (checked by :data:`PLUGIN_SCHEMAS`), scope references.

    Args:
        raw: the plugin mapping.
        path: its path, e.g. ``services[0].plugins[0]``.
        ctx: the load context.
        parent: ``"service"``, ``"route"`` or ``"consumer"`` when nested in one (that
            scope is then set by the loader and may not be given).

    Returns:
        Keyword arguments for :class:`~trio_gw.model.entities.Plugin`; scopes are
        :class:`Ref` values (the parent scope is left out).
    """
    f = Fields(raw, path, ctx)
    f.check_keys(PLUGIN_FIELDS, PLUGIN_KONG_DEFAULTS)
    name = f.string("name", _plugin_name, required=True)
    out: dict[str, Any] = {
        "id": f.identity(),
        "name": name or "",
        "config": _plugin_config(f, name),
        "enabled": f.boolean("enabled", True),
        "protocols": _protocols(f, PLUGIN_PROTOCOLS, PLUGIN_PROTOCOLS),
        "tags": f.tags(),
        **f.timestamps(),
    }
    for scope, kind in (("service", "services"), ("route", "routes"), ("consumer", "consumers")):
        if scope == parent:
            if f.get(scope) is not None:
                f.report(scope, f"not allowed in a plugin nested in a {scope} (it applies to that {scope})")
            continue
        out[scope] = f.reference(scope, kind, NATURAL_KEYS[kind])
    return out


def _plugin_name(value: str) -> str:
    if not _PLUGIN_NAME.fullmatch(value):
        raise InvalidValue(f"invalid plugin name {value!r}: use letters, digits, '-' and '_'")
    return value


def _plugin_config(f: Fields, name: str | None) -> dict[Any, Any]:
    config = dict(f.mapping("config") or {})
    schema = PLUGIN_SCHEMAS.get(name) if name else None
    if schema is None:
        return config
    try:
        return dict(schema(config, f.at("config")))
    except ConfigError as exc:
        f.ctx.problems.extend(exc.prefixed(f.at("config")).problems)
        return config
