"""Node settings: one table of every setting, read from YAML, environment and CLI flags.

Precedence, lowest to highest: the default in ``SETTINGS`` → the YAML file given
with ``-c`` → ``TRIO_GW_<KEY>`` environment variables → ``--set key=value`` CLI
flags.  Names follow kong.conf wherever the seed documents use a Kong name
(``proxy_listen``, ``ssl_cert``, ``database`` ...), so Kong users recognise them.

Every problem found (unknown key — with the closest valid key suggested —,
wrong type, unreadable file) is collected into one :class:`ConfigError`, and the
gateway does not start half-configured.  ``docs/settings.md`` is generated from
this table (``trio-gw settings --markdown``); a test keeps them in sync.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from trio_gw.errors import ConfigError, Problem

ENV_PREFIX = "TRIO_GW_"


@dataclass(frozen=True)
class ListenAddress:
    """One entry of a ``*_listen`` setting: ``host:port`` plus flags (``ssl``, ``http2``, ``reuseport``)."""

    host: str
    port: int
    ssl: bool = False
    http2: bool = False
    reuseport: bool = False

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        flags = "".join(f" {f}" for f in ("ssl", "http2", "reuseport") if getattr(self, f))
        return f"{host}:{self.port}{flags}"


def serves_http2(address: ListenAddress, enable_http2: bool = False) -> bool:
    """Whether a proxy listener offers HTTP/2: an ``ssl`` listener with the ``http2`` flag or
    ``enable_http2`` on (Tyk).  HTTP/2 is negotiated by ALPN, so never on a plain listener."""
    return address.ssl and (address.http2 or enable_http2)


def http2_flag_warnings(
    proxy_listen: tuple[ListenAddress, ...],
    admin_listen: tuple[ListenAddress, ...] = (),
    status_listen: tuple[ListenAddress, ...] = (),
) -> list[str]:
    """One warning per listener whose ``http2`` flag has no effect (never ignored silently).

    Kong accepts ``http2`` on any listener; trio-gw offers HTTP/2 only through
    ALPN on ``ssl`` proxy listeners, and the Admin API and status listeners
    speak HTTP/1.1 only.
    """
    out = [
        f"proxy_listen {a}: `http2` needs `ssl` (HTTP/2 is offered by ALPN; h2c is not supported): "
        "this listener serves HTTP/1.1 only"
        for a in proxy_listen if a.http2 and not a.ssl
    ]
    for name, addresses in (("admin_listen", admin_listen), ("status_listen", status_listen)):
        out += [f"{name} {a}: `http2` is ignored: this listener serves HTTP/1.1 only" for a in addresses if a.http2]
    return out


# --- value parsers: raw value -> typed value, or ValueError with a reason -------------

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
_TRUE = {"on", "true", "yes", "1"}
_FALSE = {"off", "false", "no", "0"}


def _bool(v: object) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, (str, int)) and str(v).strip().lower() in _TRUE | _FALSE:
        return str(v).strip().lower() in _TRUE
    raise ValueError(f"expected on/off (a boolean), got {v!r}")


def _int(v: object) -> int:
    if isinstance(v, bool):
        raise ValueError(f"expected an integer, got {v!r}")
    if isinstance(v, int):
        return v
    if isinstance(v, str) and re.fullmatch(r"\s*-?\d+\s*", v):
        return int(v)
    raise ValueError(f"expected an integer, got {v!r}")


def _positive_int(v: object) -> int:
    n = _int(v)
    if n < 1:
        raise ValueError(f"expected a positive integer, got {n}")
    return n


def _duration(v: object) -> float:
    """Seconds, from a number or ``"500ms"``, ``"30s"``, ``"5m"``, ``"1h"``, ``"1d"``."""
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        if v < 0:
            raise ValueError(f"expected a non-negative duration, got {v!r}")
        return float(v)
    if isinstance(v, str):
        m = _DURATION.match(v)
        if m:
            return float(m.group(1)) * _UNITS[m.group(2)]
    raise ValueError(f"expected a duration such as 30, '30s', '5m' or '1d', got {v!r}")


def _str(v: object) -> str:
    if isinstance(v, (str, int, float)) and not isinstance(v, bool):
        return str(v)
    raise ValueError(f"expected a string, got {v!r}")


def _optional_str(v: object) -> str | None:
    if v is None or (isinstance(v, str) and v.strip().lower() in ("", "off", "none")):
        return None
    return _str(v)


def _str_list(v: object) -> tuple[str, ...]:
    """A YAML list, or a comma-separated string (as kong.conf and env vars write lists)."""
    if v is None:
        return ()
    if isinstance(v, str):
        return tuple(s.strip() for s in v.split(",") if s.strip())
    if isinstance(v, (list, tuple)):
        return tuple(_str(x) for x in v)
    raise ValueError(f"expected a list or a comma-separated string, got {v!r}")


def _choice(*choices: str) -> Callable[[object], str]:
    def parse(v: object) -> str:
        s = _str(v).strip().lower()
        if s not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}, got {v!r}")
        return s

    return parse


def parse_listen(v: object) -> tuple[ListenAddress, ...]:
    """Parse ``"127.0.0.1:8000, 127.0.0.1:8443 ssl"`` (or a list); ``off`` gives no listener."""
    entries = _str_list(v)
    if len(entries) == 1 and entries[0].lower() == "off":
        return ()
    out = []
    for entry in entries:
        words = entry.split()
        addr, flags = words[0], [w.lower() for w in words[1:]]
        unknown = [f for f in flags if f not in ("ssl", "http2", "reuseport") and not f.startswith("backlog=")]
        if unknown:
            raise ValueError(f"{entry!r}: unknown flag {unknown[0]!r} (known: ssl, http2, reuseport)")
        m = re.fullmatch(r"\[([0-9a-fA-F:.]+)\]:(\d+)|([^:\s\[\]]+):(\d+)", addr)
        if not m:
            raise ValueError(f"{entry!r}: expected host:port (IPv6 as [::1]:port)")
        host = m.group(1) or m.group(3)
        port = int(m.group(2) or m.group(4))
        if port > 65535:
            raise ValueError(f"{entry!r}: port {port} is out of range")
        out.append(ListenAddress(host, port, "ssl" in flags, "http2" in flags, "reuseport" in flags))
    return tuple(out)


def _verify_client(v: object) -> str:
    """nginx ``ssl_verify_client``: ``off``, ``optional`` or ``on`` (YAML booleans read as off/on)."""
    if isinstance(v, bool):
        return "on" if v else "off"
    return _choice("off", "optional", "on")(v)


def _plugin_names(v: object) -> tuple[str, ...]:
    """Kong's ``plugins``: names, ``bundled`` (every plugin of trio-gw) or ``off`` (none).

    Returns the enabled names, sorted; an unknown name is refused with the closest known one.
    """
    import trio_gw.plugins  # noqa: F401  (registers every plugin)
    from trio_gw.plugins.base import REGISTRY

    entries = ["off"] if v is False else [e.strip().lower() for e in _str_list(v)]  # YAML reads `off` as false
    if entries == ["off"]:
        return ()
    enabled: set[str] = set()
    for entry in entries:
        if entry == "bundled":
            enabled.update(REGISTRY)
        elif entry in REGISTRY:
            enabled.add(entry)
        else:
            close = difflib.get_close_matches(entry, [*REGISTRY, "bundled", "off"], n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"unknown plugin {entry!r}{hint}; known: bundled, off, {', '.join(sorted(REGISTRY))}")
    return tuple(sorted(enabled))


def _optional_bool(v: object) -> bool | None:
    return None if v is None else _bool(v)


def _optional_int(v: object) -> int | None:
    return None if v is None or (isinstance(v, str) and not v.strip()) else _int(v)


def _raw(v: object) -> object:
    """Kept as written: validated by the pure policy parser that owns the setting (``trio_gw.tls``)."""
    return v


@dataclass(frozen=True)
class Setting:
    """One row of the settings table: name, parser, default (as a user would write it) and help."""

    name: str
    parse: Callable[[object], Any]
    default: object
    help: str
    kind: str  # shown on the reference page
    shown_default: str | None = None  # when the effective default comes from a policy module


def _s(
    name: str, parse: Callable[[object], Any], default: object, kind: str, help: str, shown: str | None = None
) -> Setting:
    return Setting(name, parse, default, help, kind, shown)


# Kong's names where the seeds use them; defaults cite their precedent.
SETTINGS: tuple[Setting, ...] = (
    # listeners
    _s("proxy_listen", parse_listen, "127.0.0.1:8000, 127.0.0.1:8443 ssl", "listen list",
       "Proxy listeners (kong.conf). Flags: `ssl`, `http2`, `reuseport`. Kong binds 0.0.0.0; we default to loopback. "
       "`http2` on an `ssl` listener offers HTTP/2 by ALPN (`h2`, then `http/1.1`); on a plain listener it is "
       "ignored with a warning at start (no h2c: HTTP/1.1 is served)."),
    _s("enable_http2", _bool, False, "bool",
       "Tyk `http_server_options.enable_http2`: offer HTTP/2 on every `ssl` proxy listener, as if each had the "
       "`http2` flag."),
    _s("admin_listen", parse_listen, "127.0.0.1:8001, 127.0.0.1:8444 ssl", "listen list",
       "Admin API listeners (kong.conf default)."),
    _s("status_listen", parse_listen, "127.0.0.1:8007", "listen list",
       "Status listener serving `/status` (Kong's default port). Flag `ssl`: served over TLS with `status_ssl_cert`."),
    # data
    _s("prefix", _str, "trio-gw-data", "path",
       "Data directory: dev PKI, SQLite file, ready file. Relative to the working directory."),
    _s("database", _choice("off", "sqlite", "postgres"), "sqlite", "off|sqlite|postgres",
       "`sqlite`: one file under `prefix` (embedded default); `postgres`: shared by a cluster; "
       "`off`: the declarative file is the configuration (Kong DB-less)."),
    _s("pg_host", _str, "127.0.0.1", "host", "PostgreSQL host (Kong's name)."),
    _s("pg_port", _int, 5432, "int", "PostgreSQL port."),
    _s("pg_user", _str, "postgres", "string", "PostgreSQL user."),
    _s("pg_password", _optional_str, None, "secret", "PostgreSQL password (never logged)."),
    _s("pg_database", _str, "trio_gw", "string", "PostgreSQL database."),
    _s("pg_schema", _str, "trio_gw", "string", "PostgreSQL schema holding trio-gw's tables."),
    _s("pg_timeout", _duration, 5.0, "duration", "PostgreSQL connect timeout."),
    _s("db_update_frequency", _duration, 1.0, "duration",
       "How often a node checks the datastore for changes made elsewhere (Kong: 5s)."),
    _s("private_key_encryption_secret", _optional_str, None, "secret",
       "Seal private keys at rest in the datastore (Tyk's `private_certificate_encoding_secret`). "
       "Never logged; change it with `trio-gw keys reseal`."),
    _s("declarative_config", _optional_str, None, "path",
       "decK-format file loaded at start (and on SIGHUP) when `database: off`."),
    # server certificates
    _s("ssl_cert", _str_list, (), "path list",
       "Default server certificate chain(s), PEM; paired in order with `ssl_cert_key`."),
    _s("ssl_cert_key", _str_list, (), "path list", "Private key(s) for `ssl_cert`, PEM."),
    _s("ssl_certificates", _str_list, (), "list",
       "Tyk's `ssl_certificates`: combined PEM files (chain + key) or store certificate ids "
       "(`sha256:<hex>` or UUID); matched by their SAN/CN names."),
    _s("certificate_expiry_warning_days", _int, 30, "int",
       "Log a warning at load and daily for every certificate expiring within this many days."),
    _s("admin_mtls", _bool, False, "bool",
       "Require a client certificate from `admin_mtls_ca_certificates` on the Admin API "
       "(Tyk's `control_api_use_mutual_tls`); every `admin_listen` entry must then be `ssl`."),
    _s("admin_mtls_ca_certificates", _str_list, (), "path list", "PEM CA bundle(s) for `admin_mtls`."),
    _s("admin_ssl_cert", _str_list, (), "path list", "Server certificate(s) of the Admin API's ssl listeners."),
    _s("admin_ssl_cert_key", _str_list, (), "path list", "Private key(s) for `admin_ssl_cert`."),
    _s("status_ssl_cert", _str_list, (), "path list",
       "Kong: server certificate(s) of the Status API's ssl listeners (`status_listen ... ssl`); "
       "unset: the generated certificate under `prefix`/pki, as for the Admin API."),
    _s("status_ssl_cert_key", _str_list, (), "path list", "Kong: private key(s) for `status_ssl_cert`."),
    _s("lua_ssl_trusted_certificate", _str_list, ("system",), "path list",
       "Kong: CA certificates (PEM files) trusted for the gateway's own outbound TLS that is not proxying — "
       "downloads of CRLs from https distribution points. `system` stands for the OS trust store; "
       "a list without it trusts only the files."),
    _s("lua_ssl_verify_depth", _optional_int, None, "int",
       "Kong: most intermediates in the chain of a server the gateway itself talks to "
       "(`lua_ssl_trusted_certificate`).", "(OpenSSL: 100)"),
    # TLS policy (validated by trio_gw.tls)
    _s("ssl_protocols", _raw, None, "string",
       "Kong's list, e.g. `TLSv1.2 TLSv1.3`. `ssl_min_version`/`ssl_max_version` win when set.", "(preset's)"),
    _s("ssl_min_version", _raw, None, "version",
       "Lowest TLS version: `1.2`, `TLSv1.2` or `771` (Tyk's `min_version`).", "1.2"),
    _s("ssl_max_version", _raw, None, "version", "Highest TLS version (Tyk's `max_version`).", "1.3"),
    _s("ssl_cipher_suite", _raw, None, "preset",
       "Mozilla preset as in Kong: `modern`, `intermediate`, `old`, or `custom` with `ssl_ciphers`.",
       "intermediate"),
    _s("ssl_ciphers", _raw, None, "names",
       "Explicit suites, IANA or OpenSSL names (Tyk's `ssl_ciphers`); an unknown name is rejected by name.",
       "(preset's)"),
    _s("ssl_prefer_server_ciphers", _raw, None, "bool",
       "Server cipher preference; presets modern/intermediate: off, old and custom: on.", "(preset's)"),
    _s("ssl_session_tickets", _raw, None, "bool", "TLS session tickets (Kong: on).", "on"),
    _s("ssl_session_timeout", _raw, None, "duration", "Session lifetime, at most 7 days (Kong: 1d).", "1d"),
    _s("ssl_sni_strict", _bool, False, "bool",
       "Unknown or missing SNI gets the `unrecognized_name` alert instead of the default certificate."),
    _s("ssl_handshake_timeout", _duration, 10.0, "duration", "Deadline for a client's TLS handshake."),
    _s("skip_client_ca_announcement", _bool, False, "bool",
       "Tyk `http_server_options.skip_client_ca_announcement`: never list trusted CA names in the "
       "CertificateRequest, even for mtls-auth `send_ca_dn`. (trio-gw announces none unless `send_ca_dn` asks.)"),
    _s("ssl_verify_client", _verify_client, "off", "off|optional|on",
       "nginx `ssl_verify_client` (Gravitee `http.ssl.clientAuth`): `on` makes every proxy TLS handshake require a "
       "client certificate trusted by `ssl_client_certificate` or by a route's client-certificate plugin (the union); "
       "`optional` asks for one. Each route still applies its own plugins. `off`: asked only when the client's SNI "
       "(or no SNI) can reach a route that needs one."),
    _s("ssl_client_certificate", _str_list, (), "path list",
       "nginx `ssl_client_certificate` (Gravitee's server truststore): PEM CA bundle(s) trusted for client "
       "certificates in the handshake when `ssl_verify_client` is `on` or `optional`."),
    _s("plugins", _plugin_names, ("bundled",), "plugin list",
       "Kong's `plugins` (formerly `plugins_available`): the plugins enabled on this node — names, `bundled` "
       "(every plugin of trio-gw) or `off`. A configuration using a plugin not enabled here is refused "
       "(start-up error, Admin API 400)."),
    _s("allow_unsafe_dynamic_mtls_token", _bool, False, "bool",
       "Tyk 5.12 `security.allow_unsafe_dynamic_mtls_token`: accept a key-auth key bound to client certificates "
       "without one of them (token only). Unsafe: the key alone does not prove possession of the private key; "
       "each plugin relying on it is reported in the node's warnings."),
    # proxy behaviour
    _s("trusted_ips", _str_list, (), "CIDR list",
       "Clients whose X-Forwarded-* headers are believed (Kong). Everyone else's are replaced."),
    _s("client_header_timeout", _duration, 60.0, "duration",
       "Deadline for a complete request head (nginx: 60s)."),
    _s("client_body_timeout", _duration, 60.0, "duration",
       "Deadline between two reads of a request body (nginx: 60s)."),
    _s("send_timeout", _duration, 60.0, "duration",
       "Deadline between two writes of a response to a client that has stopped reading (or, in HTTP/2, "
       "gives no flow-control credit); the connection (HTTP/2: the stream) is then closed (nginx: 60s)."),
    _s("keepalive_timeout", _duration, 60.0, "duration",
       "Idle keep-alive connections to clients close after this (Kong: 60s)."),
    _s("keepalive_requests", _positive_int, 10000, "int", "Requests per client connection (Kong: 10000)."),
    _s("max_header_size", _positive_int, 32768, "bytes",
       "Largest request head accepted; larger gets 431 (nginx: 4 x 8k buffers)."),
    _s("max_headers", _positive_int, 100, "int", "Most header fields in a request head; more gets 431 (nginx-like)."),
    _s("max_connections", _positive_int, 16384, "int",
       "Concurrent client connections per worker (Kong's worker_connections)."),
    _s("upstream_keepalive_pool_size", _int, 512, "int",
       "Idle upstream connections kept per pool key; 0 disables pooling (Kong: 512)."),
    _s("upstream_keepalive_max_requests", _positive_int, 10000, "int",
       "Requests per upstream connection before it is retired (Kong: 10000)."),
    _s("upstream_keepalive_idle_timeout", _duration, 60.0, "duration",
       "Idle upstream connections close after this (Kong: 60s)."),
    _s("graceful_shutdown_timeout", _duration, 10.0, "duration",
       "On SIGTERM/SIGINT: stop accepting, let in-flight requests finish up to this, then close."),
    # upstream TLS (validated by trio_gw.tls.upstream; per-service fields win, see docs/upstream-tls.md)
    _s("client_ssl", _optional_bool, None, "bool",
       "Kong: present `client_ssl_cert` to upstreams. Unset: on when `client_ssl_cert` is set; "
       "`off` with a certificate configured is an error (never ignored).", "(auto)"),
    _s("client_ssl_cert", _optional_str, None, "path",
       "Kong: client certificate chain (PEM) presented to every https upstream without a more specific one."),
    _s("client_ssl_cert_key", _optional_str, None, "path", "Kong: private key (PEM) of `client_ssl_cert`."),
    _s("upstream_certificates", _raw, None, "host map",
       "Tyk `security.certificates.upstream`: `{\"*.example.com\": id}`; keys `*`, `*.domain`, `host`, "
       "`host:port`; values a store certificate id (UUID or `sha256:<hex>`) or a combined PEM file.", "(none)"),
    _s("proxy_ssl_trusted_certificate", _str_list, (), "path list",
       "Kong `nginx_proxy_proxy_ssl_trusted_certificate`: CA PEM files for upstream verification "
       "(services' `ca_certificates` win); empty: the system roots."),
    _s("proxy_ssl_verify", _optional_bool, None, "bool",
       "Kong `nginx_proxy_proxy_ssl_verify` (the seed's `nginx_proxy_proxy_tls_verify`): verify upstream "
       "certificates (chain and name) globally. On by default — Kong's default is off. The inverse of Tyk's "
       "`proxy_ssl_insecure_skip_verify`: set either; both set and disagreeing is an error. "
       "Services' `tls_verify` wins.", "on"),
    _s("proxy_ssl_insecure_skip_verify", _optional_bool, None, "bool",
       "Tyk: do not verify upstream certificates (the inverse of `proxy_ssl_verify`; services' `tls_verify` "
       "wins). Not for production.", "off"),
    _s("proxy_ssl_verify_depth", _optional_int, None, "int",
       "Kong `nginx_proxy_proxy_ssl_verify_depth`: most intermediates in an upstream chain.", "(OpenSSL: 100)"),
    _s("proxy_ssl_min_version", _raw, None, "version", "Tyk: lowest TLS version to upstreams.", "1.2"),
    _s("proxy_ssl_max_version", _raw, None, "version", "Tyk: highest TLS version to upstreams.", "1.3"),
    _s("proxy_ssl_ciphers", _raw, None, "names", "Tyk: upstream cipher suites (IANA or OpenSSL names).",
       "(intermediate)"),
    _s("proxy_ssl_disable_renegotiation", _raw, None, "bool",
       "Tyk compatibility: upstream renegotiation is always refused; only `true` is accepted.", "on"),
    _s("ssl_force_common_name_check", _bool, False, "bool",
       "Tyk: accept a SAN-less upstream certificate whose CN equals the host (chain still verified)."),
    _s("pinned_public_keys", _raw, None, "host map",
       "Tyk `security.pinned_public_keys`: host → `sha256//<base64>` pins or certificate ids "
       "(list or comma-separated), checked before any request byte.", "(none)"),
    # logs
    _s("proxy_access_log", _str, "stdout", "stdout|stderr|off|path", "Where the access log goes (Kong's name)."),
    _s("access_log_format", _choice("text", "json"), "text", "text|json", "One line per request, text or JSON."),
    _s("log_level", _choice("debug", "info", "notice", "warn", "error", "crit"), "notice", "level",
       "Error log level (Kong's names)."),
    # TLS to PostgreSQL (cluster datastore, issue 14): Kong's names, mapped to libpq by trio_gw.tls.postgres
    _s("pg_ssl", _bool, False, "bool",
       "Kong: TLS to PostgreSQL. On alone, TLS is used when the server offers it and plain TCP otherwise "
       "(libpq `sslmode=prefer`; Kong: \"only a hint\")."),
    _s("pg_ssl_required", _bool, False, "bool",
       "Kong: with `pg_ssl`, refuse a PostgreSQL that does not offer TLS (libpq `sslmode=require`)."),
    _s("pg_ssl_verify", _bool, False, "bool",
       "Kong: with `pg_ssl`, verify PostgreSQL's certificate against `lua_ssl_trusted_certificate` and its "
       "names against `pg_host` (libpq `sslmode=verify-full`). Implies `pg_ssl_required`: unlike Kong, a "
       "server answering without TLS cannot downgrade a verified connection to plaintext."),
    _s("pg_ssl_version", _choice("tlsv1_1", "tlsv1_2", "tlsv1_3", "any"), "tlsv1_2", "tlsv1_2|tlsv1_3|any",
       "Kong: the TLS version to PostgreSQL: `tlsv1_2` or `tlsv1_3` exactly, `any` the highest both support "
       "(at least TLS 1.2). `tlsv1_1` is refused (RFC 8996)."),
    _s("pg_ssl_cert", _optional_str, None, "path",
       "Kong: client certificate (PEM, leaf first) presented to PostgreSQL, e.g. for `hostssl ... cert` in "
       "pg_hba.conf. Needs `pg_ssl` and `pg_ssl_cert_key`; copied owner-only under `prefix`/pg-tls for libpq."),
    _s("pg_ssl_cert_key", _optional_str, None, "path",
       "Kong: private key (PEM, unencrypted) of `pg_ssl_cert`; checked against the certificate at start."),
)

BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}

#: Other names accepted for a setting (Kong's full ``nginx_proxy_*`` names): alias → setting.  Giving a
#: setting twice in one source (by its name and an alias) is an error; a later source wins as usual.
ALIASES: dict[str, str] = {
    "nginx_proxy_proxy_ssl_trusted_certificate": "proxy_ssl_trusted_certificate",
    "nginx_proxy_proxy_ssl_verify": "proxy_ssl_verify",
    "nginx_proxy_proxy_tls_verify": "proxy_ssl_verify",
    "nginx_proxy_proxy_ssl_verify_depth": "proxy_ssl_verify_depth",
}


#: Settings whose values are never printed.
SECRET_SETTINGS = frozenset({"pg_password", "private_key_encryption_secret"})


@dataclass(frozen=True)
class Settings:
    """The parsed node settings: every name of ``SETTINGS`` as an attribute, plus where each came from."""

    values: Mapping[str, Any]
    sources: Mapping[str, str]

    def __getattr__(self, name: str) -> Any:
        try:
            return self.values[name]
        except KeyError:
            raise AttributeError(name) from None

    @property
    def raw(self) -> Mapping[str, Any]:
        """Values as parsed, for the pure policy parsers (``tls.downstream`` etc.)."""
        return self.values


def _suggest(name: str) -> str:
    close = difflib.get_close_matches(name, [*BY_NAME, *ALIASES], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def parse_settings(layers: Iterable[tuple[str, Mapping[str, object]]]) -> Settings:
    """Merge setting layers (lowest precedence first) over the defaults and parse them.

    Args:
        layers: ``(source description, {name: raw value})`` pairs.

    Returns:
        The parsed settings.

    Raises:
        ConfigError: naming every unknown key (with a suggestion) and every bad value.
    """
    raw: dict[str, object] = {s.name: s.default for s in SETTINGS}
    sources = {s.name: "default" for s in SETTINGS}
    problems: list[Problem] = []
    for source, layer in layers:
        spelled: dict[str, str] = {}  # setting → the name this source gave it under
        for key, value in layer.items():
            key = str(key).strip().lower()
            name = ALIASES.get(key, key)
            if name not in BY_NAME:
                problems.append(Problem(key, f"unknown setting in {source}{_suggest(key)}"))
                continue
            if name in spelled:
                problems.append(Problem(key, f"{name!r} is already set in {source} as {spelled[name]!r}; use one name"))
                continue
            spelled[name] = key
            raw[name] = value
            sources[name] = source if key == name else f"{source}, as {key}"
    values: dict[str, Any] = {}
    for s in SETTINGS:
        try:
            values[s.name] = s.parse(raw[s.name])
        except ValueError as exc:
            problems.append(Problem(s.name, f"{exc} (from {sources[s.name]})"))
    if len(values.get("ssl_cert", ())) != len(values.get("ssl_cert_key", ())):
        problems.append(Problem("ssl_cert_key", "needs one key per ssl_cert entry"))
    if len(values.get("admin_ssl_cert", ())) != len(values.get("admin_ssl_cert_key", ())):
        problems.append(Problem("admin_ssl_cert_key", "needs one key per admin_ssl_cert entry"))
    if len(values.get("status_ssl_cert", ())) != len(values.get("status_ssl_cert_key", ())):
        problems.append(Problem("status_ssl_cert_key", "needs one key per status_ssl_cert entry"))
    depth = values.get("lua_ssl_verify_depth")
    if depth is not None and not 0 <= depth <= 100:
        problems.append(Problem("lua_ssl_verify_depth", f"expected 0 to 100, got {depth}"))
    if problems:
        raise ConfigError(problems)
    return Settings(values, sources)


def read_settings_file(path: str | os.PathLike[str]) -> dict[str, object]:
    """Read a YAML settings file into a mapping.

    Raises:
        ConfigError: the file is unreadable, not YAML, or not a mapping.
    """
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read settings file: {exc.strerror}", path=str(path)) from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"not valid YAML: {exc}", path=str(path)) from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError("expected a mapping of setting names to values", path=str(path))
    return data


def env_layer(environ: Mapping[str, str]) -> dict[str, object]:
    """The ``TRIO_GW_<KEY>`` variables as a settings layer (names lowercased)."""
    return {k[len(ENV_PREFIX):].lower(): v for k, v in environ.items() if k.startswith(ENV_PREFIX)}


def cli_layer(assignments: Iterable[str]) -> dict[str, object]:
    """``key=value`` strings from ``--set`` flags as a settings layer."""
    out: dict[str, object] = {}
    for item in assignments:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--set expects key=value, got {item!r}", path=key)
        out[key.strip()] = value
    return out


def load_settings(
    path: str | os.PathLike[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, object] | None = None,
) -> Settings:
    """Defaults → YAML file → ``TRIO_GW_*`` environment → CLI overrides."""
    layers: list[tuple[str, Mapping[str, object]]] = []
    if path is not None:
        layers.append((str(path), read_settings_file(path)))
    layers.append(("environment", env_layer(os.environ if environ is None else environ)))
    if overrides:
        layers.append(("command line", overrides))
    return parse_settings(layers)


def settings_reference_markdown() -> str:
    """The reference page of every setting with its default (``docs/settings.md``)."""
    lines = [
        "# Settings reference",
        "",
        "Generated from `trio_gw/runtime/settings.py` by `trio-gw settings --markdown`; a test keeps it in sync.",
        "Each setting can be set in the YAML file given with `-c`, as an environment variable",
        "`TRIO_GW_<NAME>` (upper case), or with `--set name=value`; later sources win.",
        "Lists may be YAML lists or comma-separated strings. Durations: seconds, or `500ms`, `30s`, `5m`, `1h`, `1d`.",
        "",
        "| setting | type | default | description |",
        "| --- | --- | --- | --- |",
    ]
    for s in SETTINGS:
        default = s.shown_default if s.shown_default is not None else s.default
        if isinstance(default, tuple):
            default = ", ".join(default) if default else "(none)"
        elif default is None:
            default = "(none)"
        elif isinstance(default, bool):
            default = "on" if default else "off"
        aliases = ", ".join(f"`{a}`" for a, name in ALIASES.items() if name == s.name)
        text = f"{s.help} Also accepted as {aliases}." if aliases else s.help
        lines.append(f"| `{s.name}` | {s.kind} | `{default}` | {text} |")
    return "\n".join(lines) + "\n"
