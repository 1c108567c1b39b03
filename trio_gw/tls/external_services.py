"""Tyk's ``external_services``: proxy and mTLS for the gateway's own outbound connections.

Theory of operation
-------------------
Tyk's gateway config has one block for the connections the gateway makes for
itself, not for an API::

    external_services:
      proxy: {http_proxy, https_proxy, no_proxy, use_environment}   # every external service
      webhooks:
        proxy: {...}                                                 # replaces the global block
        mtls: {enabled, cert_file, key_file, ca_file, insecure_skip_verify,
               tls_min_version, tls_max_version}
      oauth: {...}   storage: {...}   health: {...}   discovery: {...}

trio-gw's external services are the event webhooks (``event_handlers``) and
its own fetches (CRL distribution points, OCSP responders).  ``webhooks`` and the
global ``proxy`` apply; ``oauth``, ``storage``, ``health`` and ``discovery``
name integrations trio-gw does not have, so a block that sets anything there
is refused by name rather than silently ignored.

*Proxy.*  ``http_proxy`` carries ``http://`` targets and ``https_proxy``
``https://`` ones (a tunnel by ``CONNECT``; the target's TLS runs through it,
verified against the target's name).  ``use_environment`` takes the
``HTTP_PROXY``/``HTTPS_PROXY``/``NO_PROXY`` variables (either case) for what the
block leaves empty.  ``no_proxy`` is comma-separated: ``*``, a host name (which
also covers its subdomains), ``.domain`` (its subdomains only), an IP address
or a CIDR block, each optionally with ``:port``.  A service's own ``proxy``
block, when it sets anything, replaces the global one for that service.

*mTLS.*  With ``enabled``, the service's https connections present
``cert_file``/``key_file`` (both or neither), trust ``ca_file`` instead of
``lua_ssl_trusted_certificate``, and use the ``tls_min_version`` to
``tls_max_version`` range (default 1.2 to 1.3).  ``insecure_skip_verify`` turns
verification off — accepted, as Tyk does, but logged as a warning at start.
Without ``enabled`` the block must set nothing else: half a configuration is
an error, not a silent no-op.

This module only parses and decides; ``net.http_fetch`` builds the context and
opens the connections.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from trio_gw.errors import ConfigError, Problem
from trio_gw.tls.hostmap import split_host_port
from trio_gw.tls.proxy_url import ForwardProxy, parse_proxy_url
from trio_gw.tls.versions import VersionRange, parse_version_range

__all__ = [
    "ExternalServices",
    "MtlsSettings",
    "NoProxy",
    "ProxySettings",
    "parse_external_services",
]

#: The setting's name (errors name keys under it).
SETTING = "external_services"
#: Tyk's service blocks that trio-gw has no integration for, and what Tyk uses them for.
UNSUPPORTED_SERVICES = {
    "oauth": "OAuth/JWK providers",
    "storage": "Redis storage",
    "health": "health-check services",
    "discovery": "service discovery",
}
_PROXY_KEYS = ("http_proxy", "https_proxy", "no_proxy", "use_environment")
_MTLS_KEYS = ("enabled", "cert_file", "key_file", "ca_file", "insecure_skip_verify", "tls_min_version",
              "tls_max_version")


@dataclass(frozen=True)
class NoProxy:
    """The ``no_proxy`` list, parsed: which targets bypass the proxy."""

    everything: bool = False
    #: (name, port or None, subdomains only)
    names: tuple[tuple[str, int | None, bool], ...] = ()
    #: (network, port or None)
    networks: tuple[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, int | None], ...] = ()

    def bypasses(self, host: str, port: int) -> bool:
        """Whether a connection to ``host:port`` goes direct."""
        if self.everything:
            return True
        name = host.strip("[]").rstrip(".").lower()
        try:
            address = ipaddress.ip_address(name)
        except ValueError:
            address = None
        if address is not None:
            return any(address in net and (p is None or p == port) for net, p in self.networks)
        for entry, p, sub_only in self.names:
            if p is not None and p != port:
                continue
            if name.endswith("." + entry) or (name == entry and not sub_only):
                return True
        return False


@dataclass(frozen=True)
class ProxySettings:
    """Where a service's outbound connections go: direct, or through a forward proxy."""

    http: ForwardProxy | None = None
    https: ForwardProxy | None = None
    no_proxy: NoProxy = NoProxy()

    def proxy_for(self, scheme: str, host: str, port: int) -> ForwardProxy | None:
        """The proxy for a ``scheme://host:port`` target, or ``None`` for a direct connection."""
        proxy = self.https if scheme == "https" else self.http
        if proxy is None or self.no_proxy.bypasses(host, port):
            return None
        return proxy

    def proxy_for_url(self, url: str) -> ForwardProxy | None:
        """:meth:`proxy_for` an ``http(s)://`` URL (``None`` for anything else: the fetch refuses it)."""
        try:
            parts = urlsplit(url)
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            return None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return None
        return self.proxy_for(parts.scheme, parts.hostname, port)


@dataclass(frozen=True)
class MtlsSettings:
    """One service's TLS client settings (Tyk ``mtls``)."""

    enabled: bool = False
    cert_file: str | None = None
    key_file: str | None = field(default=None, repr=False)
    ca_file: str | None = None
    insecure_skip_verify: bool = False
    versions: VersionRange = VersionRange()


@dataclass(frozen=True)
class ExternalServices:
    """What applies to trio-gw's outbound connections (see the module docstring)."""

    #: The global proxy: the gateway's own fetches (CRL, OCSP) and any service without its own.
    proxy: ProxySettings = ProxySettings()
    webhooks_proxy: ProxySettings | None = None
    webhooks_mtls: MtlsSettings = MtlsSettings()

    @property
    def webhook_proxies(self) -> ProxySettings:
        """The webhooks' own proxy block, else the global one."""
        return self.webhooks_proxy if self.webhooks_proxy is not None else self.proxy


def parse_external_services(raw: object, *, environ: Mapping[str, str]) -> ExternalServices:
    """Parse the ``external_services`` setting.

    Args:
        raw: the setting as written (``None``: absent).
        environ: the process environment, read only where ``use_environment`` is set.

    Returns:
        The settings that apply.

    Raises:
        ConfigError: every problem, each naming its key (``external_services.webhooks.mtls.cert_file``...).
    """
    if raw is None:
        return ExternalServices()
    problems: list[Problem] = []
    top = _mapping(raw, SETTING, problems)
    if top is None:
        raise ConfigError(problems)
    for key in top:
        if key not in ("proxy", "webhooks", *UNSUPPORTED_SERVICES):
            problems.append(Problem(f"{SETTING}.{key}", "unknown key: expected proxy, webhooks, "
                                    + ", ".join(UNSUPPORTED_SERVICES)))
    for key, what in UNSUPPORTED_SERVICES.items():
        if key in top and _sets_anything(top[key]):
            problems.append(Problem(f"{SETTING}.{key}", f"trio-gw has no integration with {what}, so this block "
                                    "has nothing to apply to; remove it (its only external services are the "
                                    "event webhooks and its own CRL and OCSP fetches)"))
    proxy = _proxy(top.get("proxy"), f"{SETTING}.proxy", environ, problems) or ProxySettings()
    webhooks_proxy: ProxySettings | None = None
    mtls = MtlsSettings()
    hooks = top.get("webhooks")
    if hooks is not None:
        block = _mapping(hooks, f"{SETTING}.webhooks", problems)
        if block is not None:
            for key in block:
                if key not in ("proxy", "mtls"):
                    problems.append(Problem(f"{SETTING}.webhooks.{key}", "unknown key: expected proxy or mtls"))
            webhooks_proxy = _proxy(block.get("proxy"), f"{SETTING}.webhooks.proxy", environ, problems)
            mtls = _mtls(block.get("mtls"), f"{SETTING}.webhooks.mtls", problems)
    if problems:
        raise ConfigError(problems)
    return ExternalServices(proxy, webhooks_proxy, mtls)


def parse_no_proxy(text: str, *, path: str) -> NoProxy:
    """Parse a ``no_proxy`` list (see the module docstring for the entries).

    Raises:
        ConfigError: an entry that is neither a name, an address nor a CIDR block, or a bad port.
    """
    everything = False
    names: list[tuple[str, int | None, bool]] = []
    networks: list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, int | None]] = []
    for i, item in enumerate(part.strip() for part in text.split(",")):
        if not item:
            continue
        if item == "*":
            everything = True
            continue
        if item.startswith("[") and "]/" in item:  # [v6]/prefix: a CIDR block, no port
            host, port = item[1:].replace("]", "", 1), None
        else:
            host, port = split_host_port(item, path=f"{path}[{i}]")
        try:
            networks.append((ipaddress.ip_network(host.strip("[]"), strict=False), port))
            continue
        except ValueError:
            pass
        sub_only = host.startswith(".")
        name = host.lstrip(".").rstrip(".").lower()
        if not name or not all(label and all(c.isalnum() or c in "-_*" for c in label) for label in name.split(".")):
            raise ConfigError(f"{item!r} is not a host name, a domain, an IP address or a CIDR block", f"{path}[{i}]")
        names.append((name.removeprefix("*."), port, sub_only or name.startswith("*.")))
    return NoProxy(everything, tuple(names), tuple(networks))


def _mapping(raw: object, path: str, problems: list[Problem]) -> Mapping[str, Any] | None:
    if not isinstance(raw, Mapping):
        problems.append(Problem(path, f"expected a mapping, got {type(raw).__name__}"))
        return None
    return raw


def _sets_anything(value: object) -> bool:
    """Whether a (Tyk default-filled) block sets anything: empty strings, ``false`` and empty blocks do not."""
    if isinstance(value, Mapping):
        return any(_sets_anything(v) for v in value.values())
    return value not in (None, "", False, [], 0)


def _string(block: Mapping[str, Any], key: str, path: str, problems: list[Problem]) -> str | None:
    value = block.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        problems.append(Problem(f"{path}.{key}", f"expected a string, got {type(value).__name__}"))
        return None
    return value.strip() or None


def _boolean(block: Mapping[str, Any], key: str, path: str, problems: list[Problem]) -> bool:
    value = block.get(key, False)
    if not isinstance(value, bool):
        problems.append(Problem(f"{path}.{key}", f"expected true or false, got {value!r}"))
        return False
    return value


def _proxy(raw: object, path: str, environ: Mapping[str, str], problems: list[Problem]) -> ProxySettings | None:
    """A proxy block; ``None`` when absent or setting nothing (so a service falls back to the global one)."""
    if raw is None:
        return None
    block = _mapping(raw, path, problems)
    if block is None:
        return None
    for key in block:
        if key not in _PROXY_KEYS:
            problems.append(Problem(f"{path}.{key}", "unknown key: expected " + ", ".join(_PROXY_KEYS)))
    if not _sets_anything(block):
        return None
    from_env = _boolean(block, "use_environment", path, problems)
    texts = {key: _string(block, key, path, problems) for key in ("http_proxy", "https_proxy", "no_proxy")}
    where = dict.fromkeys(texts, path)
    if from_env:
        for key in texts:
            if texts[key] is None:
                name = key.upper() if environ.get(key.upper(), "").strip() else key
                env = environ.get(name, "").strip()
                if env:
                    texts[key], where[key] = env, f"{path}.use_environment ({name})"
    proxies: dict[str, ForwardProxy | None] = {}
    for key in ("http_proxy", "https_proxy"):
        text = texts[key]
        proxies[key] = None
        if text is not None:
            try:
                proxies[key] = parse_proxy_url(text, path=f"{where[key]}.{key}" if where[key] == path else where[key])
            except ConfigError as exc:
                problems.extend(exc.problems)
    no_proxy = NoProxy()
    if texts["no_proxy"] is not None:
        try:
            no_proxy = parse_no_proxy(texts["no_proxy"], path=where["no_proxy"] if where["no_proxy"] != path
                                      else f"{path}.no_proxy")
        except ConfigError as exc:
            problems.extend(exc.problems)
    return ProxySettings(proxies["http_proxy"], proxies["https_proxy"], no_proxy)


def _mtls(raw: object, path: str, problems: list[Problem]) -> MtlsSettings:
    if raw is None:
        return MtlsSettings()
    block = _mapping(raw, path, problems)
    if block is None:
        return MtlsSettings()
    for key in block:
        if key not in _MTLS_KEYS:
            problems.append(Problem(f"{path}.{key}", "unknown key: expected " + ", ".join(_MTLS_KEYS)))
    enabled = _boolean(block, "enabled", path, problems)
    if not enabled:
        rest = {k: v for k, v in block.items() if k != "enabled"}
        if _sets_anything(rest):
            problems.append(Problem(f"{path}.enabled", "the block sets " + ", ".join(sorted(
                k for k, v in rest.items() if _sets_anything(v))) + " but enabled is not true: set enabled: true "
                "for them to apply, or remove them"))
        return MtlsSettings()
    cert = _string(block, "cert_file", path, problems)
    key_file = _string(block, "key_file", path, problems)
    if (cert is None) != (key_file is None):
        missing = "key_file" if key_file is None else "cert_file"
        problems.append(Problem(f"{path}.{missing}", "cert_file and key_file go together: the client certificate "
                                "needs its private key"))
    ca = _string(block, "ca_file", path, problems)
    skip = _boolean(block, "insecure_skip_verify", path, problems)
    if skip and ca is not None:
        problems.append(Problem(f"{path}.ca_file", "insecure_skip_verify turns verification off, so ca_file would "
                                "never be used: keep one of them"))
    versions = VersionRange()
    try:
        versions = parse_version_range(block.get("tls_min_version") or None, block.get("tls_max_version") or None,
                                       minimum_path=f"{path}.tls_min_version",
                                       maximum_path=f"{path}.tls_max_version")
    except ConfigError as exc:
        problems.extend(exc.problems)
    return MtlsSettings(True, cert, key_file, ca, skip, versions)
