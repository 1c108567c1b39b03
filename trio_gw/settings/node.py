"""The node settings, typed: one field per row of :data:`~trio_gw.settings.table.SETTINGS`.

Precedence, lowest to highest: the default in the table → the YAML file given with
``-c`` → ``TRIO_GW_<KEY>`` environment variables → ``--set key=value`` (reading those
sources is :mod:`trio_gw.runtime.settings`; this module only merges and parses).

Every problem found (unknown key — with the closest valid key suggested —, wrong type,
inconsistent pairs) is collected into one :class:`ConfigError`; nothing starts
half-configured.  Settings whose values are TLS policy (``ssl_min_version``,
``ssl_ciphers``, host maps ...) are typed ``object``: they are kept as written and
validated by the pure policy parser that owns them (``trio_gw.tls``), which reads them
through :meth:`Settings.as_mapping`.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from trio_gw.errors import ConfigError, Problem
from trio_gw.settings.table import ALIASES, BY_NAME, SETTINGS
from trio_gw.settings.values import ListenAddress
from trio_gw.tls.stapling import STAPLING_SETTING_NAMES, parse_stapling_settings

__all__ = ["Settings", "parse_settings", "default_settings"]


@dataclass(frozen=True)
class Settings:
    """The parsed node settings (see the table for each one's meaning and default)."""

    # listeners
    proxy_listen: tuple[ListenAddress, ...]
    enable_http2: bool
    admin_listen: tuple[ListenAddress, ...]
    status_listen: tuple[ListenAddress, ...]
    # data
    prefix: str
    database: str
    pg_host: str
    pg_port: int
    pg_user: str
    pg_password: str | None = field(repr=False)
    pg_database: str
    pg_schema: str
    pg_timeout: float
    pg_ssl: bool
    pg_ssl_required: bool
    pg_ssl_verify: bool
    pg_ssl_version: str
    pg_ssl_cert: str | None
    pg_ssl_cert_key: str | None
    db_update_frequency: float
    # workers and cluster
    workers: int | None
    ssl_session_ticket_key: tuple[str, ...]
    ssl_session_ticket_rotation: float
    private_key_encryption_secret: str | None = field(repr=False)
    declarative_config: str | None
    # server certificates
    ssl_cert: tuple[str, ...]
    ssl_cert_key: tuple[str, ...]
    ssl_certificates: tuple[str, ...]
    certificate_expiry_warning_days: int
    admin_mtls: bool
    admin_mtls_ca_certificates: tuple[str, ...]
    admin_ssl_cert: tuple[str, ...]
    admin_ssl_cert_key: tuple[str, ...]
    status_ssl_cert: tuple[str, ...]
    status_ssl_cert_key: tuple[str, ...]
    lua_ssl_trusted_certificate: tuple[str, ...]
    lua_ssl_verify_depth: int | None
    # TLS policy, validated by trio_gw.tls
    ssl_protocols: object
    ssl_min_version: object
    ssl_max_version: object
    ssl_cipher_suite: object
    ssl_ciphers: object
    ssl_prefer_server_ciphers: object
    ssl_dhparam: object
    ssl_ecdh_curve: object
    ssl_session_tickets: object
    ssl_session_timeout: object
    ssl_session_cache_size: object
    ssl_sni_strict: bool
    ssl_handshake_timeout: float
    skip_client_ca_announcement: bool
    ssl_verify_client: str
    ssl_client_certificate: tuple[str, ...]
    plugins: tuple[str, ...]
    allow_unsafe_dynamic_mtls_token: bool
    # proxy behaviour
    trusted_ips: tuple[str, ...]
    client_header_timeout: float
    client_body_timeout: float
    proxy_ignore_client_abort: bool
    send_timeout: float
    keepalive_timeout: float
    keepalive_requests: int
    max_header_size: int
    max_headers: int
    client_max_body_size: int
    max_connections: int
    upstream_keepalive_pool_size: int
    upstream_keepalive_max_requests: int
    upstream_keepalive_idle_timeout: float
    graceful_shutdown_timeout: float
    # upstream TLS, validated by trio_gw.tls.upstream
    client_ssl: bool | None
    client_ssl_cert: str | None
    client_ssl_cert_key: str | None
    upstream_certificates: object
    proxy_ssl_trusted_certificate: tuple[str, ...]
    proxy_ssl_verify: bool | None
    proxy_ssl_insecure_skip_verify: bool | None
    proxy_ssl_verify_depth: int | None
    proxy_ssl_min_version: object
    proxy_ssl_max_version: object
    proxy_ssl_ciphers: object
    proxy_ssl_disable_renegotiation: object
    proxy_enable_http2: bool
    ssl_force_common_name_check: bool
    pinned_public_keys: object
    # logs
    proxy_access_log: str
    access_log_format: str
    log_level: str
    # observability
    certificate_expiry_monitor: object
    event_handlers: object
    external_services: object
    event_webhook_timeout: float
    event_webhook_retries: int
    rejection_log_interval: float
    # certificate lifecycle: OCSP stapling, revocation of truststore and admin client certificates
    ssl_stapling: bool
    ssl_stapling_verify: bool
    ssl_stapling_file: str | None
    ssl_stapling_responder: str | None
    ocsp_staple_policy: str
    ssl_ocsp: str
    ssl_crl: tuple[str, ...]
    admin_ssl_ocsp: str
    admin_ssl_crl: tuple[str, ...]
    #: Where each value came from (``default``, a file path, ``environment``, ``command line``).
    sources: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    def as_mapping(self) -> Mapping[str, object]:
        """Every setting by name, as parsed: the input of the pure policy parsers (``trio_gw.tls``)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "sources"}


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
    problems += _pair_problems(values)
    if problems:
        raise ConfigError(problems)
    return Settings(**values, sources=sources)


def default_settings(**overrides: object) -> Settings:
    """The defaults, with ``overrides`` given as a user would write them (tests, tools)."""
    return parse_settings([("overrides", overrides)])


def _pair_problems(values: Mapping[str, Any]) -> list[Problem]:
    problems = []
    for cert, key in (("ssl_cert", "ssl_cert_key"), ("admin_ssl_cert", "admin_ssl_cert_key"),
                      ("status_ssl_cert", "status_ssl_cert_key")):
        if len(values.get(cert, ())) != len(values.get(key, ())):
            problems.append(Problem(key, f"needs one key per {cert} entry"))
    depth = values.get("lua_ssl_verify_depth")
    if depth is not None and not 0 <= depth <= 100:
        problems.append(Problem("lua_ssl_verify_depth", f"expected 0 to 100, got {depth}"))
    return problems + _lifecycle_problems(values)


def _lifecycle_problems(values: Mapping[str, Any]) -> list[Problem]:
    """The stapling settings together (a policy needs ``ssl_stapling``), and admin revocation needing admin mTLS."""
    problems: list[Problem] = []
    if "ssl_stapling" in values:  # every row parsed (a failed one is reported on its own)
        try:
            parse_stapling_settings({name: values.get(name) for name in STAPLING_SETTING_NAMES})
        except ConfigError as exc:
            problems += exc.problems
    if values.get("admin_ssl_ocsp", "off") != "off" and not values.get("admin_mtls"):
        problems.append(Problem("admin_ssl_ocsp", "checks admin client certificates: it needs admin_mtls on"))
    return problems
