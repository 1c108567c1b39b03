"""Entity types: the configuration objects users create (Kong's names and shapes).

These are plain immutable values.  They are produced by the declarative loader
(``model.declarative``), by the datastores and by the Admin API, and compiled
into the runtime view by ``trio_gw.snapshot``.  Validation that needs more than
one entity (references, uniqueness) lives with the producer; field-level rules
live in ``model.validation``.

Times are Unix seconds (ints), as in Kong's ``created_at``/``updated_at``.
Timeouts are milliseconds, as in Kong's service ``connect_timeout`` etc.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from trio_gw.model.credentials import Credential

#: Kong's default for ``connect_timeout``/``read_timeout``/``write_timeout`` (ms).
DEFAULT_UPSTREAM_TIMEOUT_MS = 60_000
#: Kong's default for a route's ``https_redirect_status_code``.
DEFAULT_HTTPS_REDIRECT_STATUS = 426


@dataclass(frozen=True)
class Certificate:
    """A server (or upstream client) certificate with its private key.

    ``cert`` is the PEM chain (leaf first).  ``cert_alt``/``key_alt`` hold an
    optional second pair of the other key type (RSA + ECDSA), served together
    so OpenSSL picks by the client's signature algorithms.
    """

    id: str
    cert: str
    key: str = field(repr=False)
    cert_alt: str | None = None
    key_alt: str | None = field(default=None, repr=False)
    tags: tuple[str, ...] = ()
    created_at: int = 0
    updated_at: int = 0


@dataclass(frozen=True)
class CACertificate:
    """A trusted CA certificate (one certificate, ``CA:TRUE``)."""

    id: str
    cert: str
    cert_digest: str = ""
    #: CRLs issued by this CA (PEM), used by revocation checks before any is fetched.
    crls: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    created_at: int = 0
    updated_at: int = 0


@dataclass(frozen=True)
class SNI:
    """A server name (exact, ``*.x.y`` or ``x.*`` wildcard, or ``*``) bound to a certificate."""

    id: str
    name: str
    certificate: str
    tags: tuple[str, ...] = ()
    created_at: int = 0
    updated_at: int = 0


@dataclass(frozen=True)
class Service:
    """An upstream API: where requests go, and how to talk TLS to it."""

    id: str
    host: str
    name: str | None = None
    protocol: str = "http"
    port: int = 80
    path: str | None = None
    retries: int = 5
    connect_timeout: int = DEFAULT_UPSTREAM_TIMEOUT_MS
    write_timeout: int = DEFAULT_UPSTREAM_TIMEOUT_MS
    read_timeout: int = DEFAULT_UPSTREAM_TIMEOUT_MS
    enabled: bool = True
    client_certificate: str | None = None
    tls_verify: bool | None = None
    tls_verify_depth: int | None = None
    ca_certificates: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    created_at: int = 0
    updated_at: int = 0
    # Upstream TLS beyond Kong's fields (trio_gw.tls.upstream; unset = the global setting).
    #: Further client certificates after ``client_certificate`` (``certificates: [a, b]``):
    #: the first one currently valid is presented, for rotation without downtime.
    client_certificate_alternates: tuple[str, ...] = ()
    tls_min_version: str | None = None  # Tyk tlsTransport.minVersion
    tls_max_version: str | None = None  # Tyk tlsTransport.maxVersion
    tls_ciphers: tuple[str, ...] = ()  # Tyk tlsTransport.ciphers (IANA or OpenSSL names)
    tls_force_common_name_check: bool | None = None  # Tyk tlsTransport.forceCommonNameCheck
    tls_pinned_public_keys: tuple[str, ...] = ()  # Tyk certificatePinning: sha256//<b64> or certificate ids
    proxy_url: str | None = None  # Tyk upstream.proxy.url: http(s)://[user:pass@]host:port


@dataclass(frozen=True)
class Route:
    """Rules that match requests and send them to a service."""

    id: str
    name: str | None = None
    service: str | None = None
    protocols: tuple[str, ...] = ("http", "https")
    methods: tuple[str, ...] = ()
    hosts: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()
    headers: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    snis: tuple[str, ...] = ()
    https_redirect_status_code: int = DEFAULT_HTTPS_REDIRECT_STATUS
    regex_priority: int = 0
    strip_path: bool = True
    preserve_host: bool = False
    path_handling: str = "v0"
    tags: tuple[str, ...] = ()
    created_at: int = 0
    updated_at: int = 0


@dataclass(frozen=True)
class Consumer:
    """An API client (Gravitee's "application")."""

    id: str
    username: str | None = None
    custom_id: str | None = None
    tags: tuple[str, ...] = ()
    created_at: int = 0
    updated_at: int = 0


@dataclass(frozen=True)
class Plugin:
    """A request-phase policy, global or scoped to a route, service and/or consumer."""

    id: str
    name: str
    config: Mapping[str, Any] = field(default_factory=dict)
    route: str | None = None
    service: str | None = None
    consumer: str | None = None
    enabled: bool = True
    protocols: tuple[str, ...] = ("grpc", "grpcs", "http", "https")
    tags: tuple[str, ...] = ()
    created_at: int = 0
    updated_at: int = 0


@dataclass(frozen=True)
class Entities:
    """One complete configuration: every entity, each kind keyed by id.

    Dict fields are never mutated after construction; producers build new
    ``Entities`` instead.
    """

    services: Mapping[str, Service] = field(default_factory=dict)
    routes: Mapping[str, Route] = field(default_factory=dict)
    certificates: Mapping[str, Certificate] = field(default_factory=dict)
    ca_certificates: Mapping[str, CACertificate] = field(default_factory=dict)
    snis: Mapping[str, SNI] = field(default_factory=dict)
    consumers: Mapping[str, Consumer] = field(default_factory=dict)
    plugins: Mapping[str, Plugin] = field(default_factory=dict)
    #: Consumer credentials of every kind (``trio_gw.model.credentials``), keyed by id.
    credentials: Mapping[str, Credential] = field(default_factory=dict)
