"""The settings table: every node setting with its parser, default and help (one row each).

Names follow kong.conf wherever the seed documents use a Kong name (``proxy_listen``,
``ssl_cert``, ``database`` ...), so Kong users recognise them.  ``docs/settings.md`` is
generated from this table (``trio-gw settings --markdown``); a test keeps them in sync, and
another keeps :class:`trio_gw.settings.Settings`' typed fields equal to the rows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from trio_gw.settings.values import (
    parse_bool,
    choice,
    parse_duration,
    parse_int,
    parse_optional_bool,
    parse_optional_int,
    parse_optional_str,
    parse_plugin_names,
    parse_positive_int,
    parse_size,
    as_written,
    parse_str,
    parse_str_list,
    parse_verify_client,
    parse_listen,
    parse_rotation_interval,
    parse_workers,
    parse_staple_policy,
)

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
       "Proxy listeners (kong.conf). Flags: `ssl`, `http2`, `reuseport`, `backlog=N` (the listen queue, 16384 "
       "unless set, as in Kong's default; any `*_listen` takes it). Kong binds 0.0.0.0; we default to loopback. "
       "`http2` on an `ssl` listener offers HTTP/2 by ALPN (`h2`, then `http/1.1`); on a plain listener it is "
       "ignored with a warning at start (no h2c: HTTP/1.1 is served)."),
    _s("enable_http2", parse_bool, False, "bool",
       "Tyk `http_server_options.enable_http2`: offer HTTP/2 on every `ssl` proxy listener, as if each had the "
       "`http2` flag."),
    _s("admin_listen", parse_listen, "127.0.0.1:8001, 127.0.0.1:8444 ssl", "listen list",
       "Admin API listeners (kong.conf default)."),
    _s("status_listen", parse_listen, "127.0.0.1:8007", "listen list",
       "Status listener serving `/status` (Kong's default port). Flag `ssl`: served over TLS with `status_ssl_cert`."),
    # data
    _s("prefix", parse_str, "trio-gw-data", "path",
       "Data directory: dev PKI, SQLite file, ready file. Relative to the working directory."),
    _s("database", choice("off", "sqlite", "postgres"), "sqlite", "off|sqlite|postgres",
       "`sqlite`: one file under `prefix` (embedded default); `postgres`: shared by a cluster; "
       "`off`: the declarative file is the configuration (Kong DB-less)."),
    _s("pg_host", parse_str, "127.0.0.1", "host", "PostgreSQL host (Kong's name)."),
    _s("pg_port", parse_int, 5432, "int", "PostgreSQL port."),
    _s("pg_user", parse_str, "postgres", "string", "PostgreSQL user."),
    _s("pg_password", parse_optional_str, None, "secret", "PostgreSQL password (never logged)."),
    _s("pg_database", parse_str, "trio_gw", "string", "PostgreSQL database."),
    _s("pg_schema", parse_str, "trio_gw", "string", "PostgreSQL schema holding trio-gw's tables."),
    _s("pg_timeout", parse_duration, 5.0, "duration", "PostgreSQL connect timeout."),
    # TLS to PostgreSQL: Kong's names, mapped to libpq by trio_gw.tls.postgres
    _s("pg_ssl", parse_bool, False, "bool",
       "Kong: TLS to PostgreSQL. On alone, TLS is used when the server offers it and plain TCP otherwise "
       "(libpq `sslmode=prefer`; Kong: \"only a hint\")."),
    _s("pg_ssl_required", parse_bool, False, "bool",
       "Kong: with `pg_ssl`, refuse a PostgreSQL that does not offer TLS (libpq `sslmode=require`)."),
    _s("pg_ssl_verify", parse_bool, False, "bool",
       "Kong: with `pg_ssl`, verify PostgreSQL's certificate against `lua_ssl_trusted_certificate` and its "
       "names against `pg_host` (libpq `sslmode=verify-full`). Implies `pg_ssl_required`: unlike Kong, a "
       "server answering without TLS cannot downgrade a verified connection to plaintext."),
    _s("pg_ssl_version", choice("tlsv1_1", "tlsv1_2", "tlsv1_3", "any"), "tlsv1_2", "tlsv1_2|tlsv1_3|any",
       "Kong: the TLS version to PostgreSQL: `tlsv1_2` or `tlsv1_3` exactly, `any` the highest both support "
       "(at least TLS 1.2). `tlsv1_1` is refused (RFC 8996)."),
    _s("pg_ssl_cert", parse_optional_str, None, "path",
       "Kong: client certificate (PEM, leaf first) presented to PostgreSQL, e.g. for `hostssl ... cert` in "
       "pg_hba.conf. Needs `pg_ssl` and `pg_ssl_cert_key`; copied owner-only under `prefix`/pg-tls for libpq."),
    _s("pg_ssl_cert_key", parse_optional_str, None, "path",
       "Kong: private key (PEM, unencrypted) of `pg_ssl_cert`; checked against the certificate at start."),
    _s("db_update_frequency", parse_duration, 1.0, "duration",
       "How often a node polls the datastore for changes made elsewhere, as a fallback: changes arrive "
       "through the datastore's change feed (PostgreSQL LISTEN/NOTIFY, SQLite's data_version) within "
       "100 ms (Kong: 5s)."),
    # workers and cluster (issue 14: trio_gw.runtime.supervisor, trio_gw.runtime.ticket_ring)
    _s("workers", parse_workers, 1, "int|auto",
       "Worker processes, one Trio loop each (Kong's `nginx_worker_processes`, accepted under that name). "
       "`auto`: one per usable core. With more than one, a supervisor binds the proxy listeners (each "
       "worker accepts on them; with the `reuseport` flag each worker has its own socket), serves the "
       "Admin API and status listeners once for the node, restarts a crashed worker with backoff, and "
       "passes SIGHUP and SIGTERM on to every worker."),
    _s("ssl_session_ticket_key", parse_str_list, (), "path list",
       "nginx `ssl_session_ticket_key`: files of 80 (or 48) random bytes (`openssl rand 80 > file`); the "
       "first encrypts TLS session tickets, all decrypt, so nodes given the same files resume each other's "
       "sessions; rotate by replacing the files and reloading (SIGHUP). Unset: with a datastore, every node "
       "and worker shares a ring of keys kept there (sealed with `private_key_encryption_secret`) and rotated "
       "every `ssl_session_ticket_rotation`; with `database: off` the workers of a node share a ring."),
    _s("ssl_session_ticket_rotation", parse_rotation_interval, 43200.0, "duration",
       "How long a shared session-ticket key encrypts before the next one takes over (Caddy: 12h); the "
       "previous key still decrypts for `ssl_session_timeout`, so outstanding tickets resume. At least 5s."),
    _s("private_key_encryption_secret", parse_optional_str, None, "secret",
       "Seal private keys at rest in the datastore (Tyk's `private_certificate_encoding_secret`). "
       "Never logged; change it with `trio-gw keys reseal`."),
    _s("declarative_config", parse_optional_str, None, "path",
       "decK-format file loaded at start (and on SIGHUP) when `database: off`."),
    # server certificates
    _s("ssl_cert", parse_str_list, (), "path list",
       "Default server certificate chain(s), PEM; paired in order with `ssl_cert_key`."),
    _s("ssl_cert_key", parse_str_list, (), "path list", "Private key(s) for `ssl_cert`, PEM."),
    _s("ssl_certificates", parse_str_list, (), "list",
       "Tyk's `ssl_certificates`: combined PEM files (chain + key) or store certificate ids "
       "(`sha256:<hex>` or UUID); matched by their SAN/CN names."),
    _s("certificate_expiry_warning_days", parse_int, 30, "int",
       "Log a warning at load and daily for every certificate expiring within this many days."),
    _s("admin_mtls", parse_bool, False, "bool",
       "Require a client certificate from `admin_mtls_ca_certificates` on the Admin API "
       "(Tyk's `control_api_use_mutual_tls`); every `admin_listen` entry must then be `ssl`."),
    _s("admin_mtls_ca_certificates", parse_str_list, (), "path list", "PEM CA bundle(s) for `admin_mtls`."),
    _s("admin_ssl_cert", parse_str_list, (), "path list", "Server certificate(s) of the Admin API's ssl listeners."),
    _s("admin_ssl_cert_key", parse_str_list, (), "path list", "Private key(s) for `admin_ssl_cert`."),
    _s("status_ssl_cert", parse_str_list, (), "path list",
       "Kong: server certificate(s) of the Status API's ssl listeners (`status_listen ... ssl`); "
       "unset: the generated certificate under `prefix`/pki, as for the Admin API."),
    _s("status_ssl_cert_key", parse_str_list, (), "path list", "Kong: private key(s) for `status_ssl_cert`."),
    _s("lua_ssl_trusted_certificate", parse_str_list, ("system",), "path list",
       "Kong: CA certificates (PEM files) trusted for the gateway's own outbound TLS that is not proxying — "
       "downloads of CRLs from https distribution points, OCSP responders, ACME servers, event webhooks, and "
       "PostgreSQL's certificate under `pg_ssl_verify`. `system` stands for the OS trust store; "
       "a list without it trusts only the files."),
    _s("lua_ssl_verify_depth", parse_optional_int, None, "int",
       "Kong: most intermediates in the chain of a server the gateway itself talks to "
       "(`lua_ssl_trusted_certificate`).", "(OpenSSL: 100)"),
    # TLS policy (validated by trio_gw.tls)
    _s("ssl_protocols", as_written, None, "string",
       "Kong's list, e.g. `TLSv1.2 TLSv1.3`. `ssl_min_version`/`ssl_max_version` win when set.", "(preset's)"),
    _s("ssl_min_version", as_written, None, "version",
       "Lowest TLS version: `1.2`, `TLSv1.2` or `771` (Tyk's `min_version`).", "1.2"),
    _s("ssl_max_version", as_written, None, "version", "Highest TLS version (Tyk's `max_version`).", "1.3"),
    _s("ssl_cipher_suite", as_written, None, "preset",
       "Mozilla preset as in Kong: `modern`, `intermediate`, `old`, or `custom` with `ssl_ciphers`.",
       "intermediate"),
    _s("ssl_ciphers", as_written, None, "names",
       "Explicit suites, IANA or OpenSSL names (Tyk's `ssl_ciphers`); an unknown name is rejected by name.",
       "(preset's)"),
    _s("ssl_prefer_server_ciphers", as_written, None, "bool",
       "Server cipher preference; presets modern/intermediate: off, old and custom: on.", "(preset's)"),
    _s("ssl_dhparam", as_written, None, "group|path|PEM",
       "Kong/nginx `ssl_dhparam`: DH parameters of the DHE suites: `ffdhe2048`...`ffdhe8192` (RFC 7919), a PEM file's "
       "path, or the PEM. Loaded only when a DHE suite is enabled; under 2048 bits refused.",
       "ffdhe2048 (when a DHE suite is enabled)"),
    _s("ssl_ecdh_curve", as_written, None, "groups",
       "nginx `ssl_ecdh_curve` (Kong `nginx_http_ssl_ecdh_curve`, Envoy `ecdh_curves`, Traefik `curvePreferences`, "
       "Caddy `curves`): key-exchange groups of TLS 1.2 ECDHE and TLS 1.3, most preferred first. The default is "
       "Mozilla's (Server Side TLS 5.7, as the presets); `auto` is OpenSSL's list, which adds X448, P-521 and "
       "TLS 1.3 finite-field groups up to ffdhe8192.", "X25519:P-256:P-384"),
    _s("ssl_session_tickets", as_written, None, "bool", "TLS session tickets (Kong: on).", "on"),
    _s("ssl_session_timeout", as_written, None, "duration", "Session lifetime, at most 7 days (Kong: 1d).", "1d"),
    _s("ssl_session_cache_size", as_written, None, "size",
       "Kong `ssl_session_cache_size`: the cache of the sessions TLS 1.2 clients resume by session ID (no "
       "ticket), read as nginx reads `ssl_session_cache shared:SSL:<size>`: about 4,000 sessions per megabyte; "
       "the oldest makes room when it is full. One per worker process. At least 32k.", "10m"),
    _s("ssl_sni_strict", parse_bool, False, "bool",
       "Unknown or missing SNI gets the `unrecognized_name` alert instead of the default certificate."),
    _s("ssl_handshake_timeout", parse_duration, 10.0, "duration", "Deadline for a client's TLS handshake."),
    _s("skip_client_ca_announcement", parse_bool, False, "bool",
       "Tyk `http_server_options.skip_client_ca_announcement`: never list trusted CA names in the "
       "CertificateRequest, even for mtls-auth `send_ca_dn`. (trio-gw announces none unless `send_ca_dn` asks.)"),
    _s("ssl_verify_client", parse_verify_client, "off", "off|optional|on",
       "nginx `ssl_verify_client` (Gravitee `http.ssl.clientAuth`): `on` makes every proxy TLS handshake require a "
       "client certificate trusted by `ssl_client_certificate` or by a route's client-certificate plugin (the union); "
       "`optional` asks for one. Each route still applies its own plugins. `off`: asked only when the client's SNI "
       "(or no SNI) can reach a route that needs one."),
    _s("ssl_client_certificate", parse_str_list, (), "path list",
       "nginx `ssl_client_certificate` (Gravitee's server truststore): PEM CA bundle(s) trusted for client "
       "certificates in the handshake when `ssl_verify_client` is `on` or `optional`."),
    _s("plugins", parse_plugin_names, ("bundled",), "plugin list",
       "Kong's `plugins` (formerly `plugins_available`): the plugins enabled on this node — names, `bundled` "
       "(every plugin of trio-gw) or `off`. A configuration using a plugin not enabled here is refused "
       "(start-up error, Admin API 400)."),
    _s("allow_unsafe_dynamic_mtls_token", parse_bool, False, "bool",
       "Tyk 5.12 `security.allow_unsafe_dynamic_mtls_token`: accept a key-auth key bound to client certificates "
       "without one of them (token only). Unsafe: the key alone does not prove possession of the private key; "
       "each plugin relying on it is reported in the node's warnings."),
    # proxy behaviour
    _s("trusted_ips", parse_str_list, (), "CIDR list",
       "Clients whose X-Forwarded-* headers are believed (Kong). Everyone else's are replaced."),
    _s("client_header_timeout", parse_duration, 60.0, "duration",
       "Deadline for a complete request head (nginx: 60s)."),
    _s("client_body_timeout", parse_duration, 60.0, "duration",
       "Deadline between two reads of a request body (nginx: 60s); a body that stops for longer is "
       "answered 408 when nothing was answered yet."),
    _s("proxy_ignore_client_abort", parse_bool, False, "bool",
       "nginx `proxy_ignore_client_abort` (Kong `nginx_proxy_proxy_ignore_client_abort`): off, a client that "
       "closes its connection while its HTTP/1.1 request waits on the upstream ends that request (the upstream "
       "connection is closed, the access log says 499); on, the upstream exchange runs to its end."),
    _s("send_timeout", parse_duration, 60.0, "duration",
       "Deadline between two writes of a response to a client that has stopped reading (or, in HTTP/2, "
       "gives no flow-control credit); the connection (HTTP/2: the stream) is then closed (nginx: 60s)."),
    _s("keepalive_timeout", parse_duration, 60.0, "duration",
       "Idle keep-alive connections to clients close after this (Kong: 60s)."),
    _s("keepalive_requests", parse_positive_int, 10000, "int", "Requests per client connection (Kong: 10000)."),
    _s("max_header_size", parse_positive_int, 32768, "bytes",
       "Largest request head accepted; larger gets 431 (nginx: 4 x 8k buffers)."),
    _s("max_headers", parse_positive_int, 100, "int", "Most header fields in a request head; more gets 431 (nginx-like)."),
    _s("client_max_body_size", parse_size, 0, "size",
       "nginx `client_max_body_size` (Kong `nginx_http_client_max_body_size`): the largest request body, in bytes "
       "or with a unit (`10m`, `512k`); a larger Content-Length gets 413 `body_too_large` before anything goes "
       "upstream, and a body without one (chunked, or HTTP/2 DATA) as soon as its size passes the limit: the "
       "bytes beyond it never go upstream, and the upstream request is abandoned. 0, Kong's default, is no "
       "limit."),
    _s("max_connections", parse_positive_int, 16384, "int",
       "Concurrent client connections per worker (Kong's worker_connections)."),
    _s("upstream_keepalive_pool_size", parse_int, 512, "int",
       "Idle upstream connections kept per pool key; 0 disables pooling (Kong: 512)."),
    _s("upstream_keepalive_max_requests", parse_positive_int, 10000, "int",
       "Requests per upstream connection before it is retired (Kong: 10000)."),
    _s("upstream_keepalive_idle_timeout", parse_duration, 60.0, "duration",
       "Idle upstream connections close after this (Kong: 60s)."),
    _s("graceful_shutdown_timeout", parse_duration, 10.0, "duration",
       "On SIGTERM/SIGINT: stop accepting, let in-flight requests finish up to this, then close."),
    # upstream TLS (validated by trio_gw.tls.upstream; per-service fields win, see docs/upstream-tls.md)
    _s("client_ssl", parse_optional_bool, None, "bool",
       "Kong: present `client_ssl_cert` to upstreams. Unset: on when `client_ssl_cert` is set; "
       "`off` with a certificate configured is an error (never ignored).", "(auto)"),
    _s("client_ssl_cert", parse_optional_str, None, "path",
       "Kong: client certificate chain (PEM) presented to every https upstream without a more specific one."),
    _s("client_ssl_cert_key", parse_optional_str, None, "path", "Kong: private key (PEM) of `client_ssl_cert`."),
    _s("upstream_certificates", as_written, None, "host map",
       "Tyk `security.certificates.upstream`: `{\"*.example.com\": id}`; keys `*`, `*.domain`, `host`, "
       "`host:port`; values a store certificate id (UUID or `sha256:<hex>`) or a combined PEM file.", "(none)"),
    _s("proxy_ssl_trusted_certificate", parse_str_list, (), "path list",
       "Kong `nginx_proxy_proxy_ssl_trusted_certificate`: CA PEM files for upstream verification "
       "(services' `ca_certificates` win); empty: the system roots."),
    _s("proxy_ssl_verify", parse_optional_bool, None, "bool",
       "Kong `nginx_proxy_proxy_ssl_verify` (the seed's `nginx_proxy_proxy_tls_verify`): verify upstream "
       "certificates (chain and name) globally. On by default — Kong's default is off. The inverse of Tyk's "
       "`proxy_ssl_insecure_skip_verify`: set either; both set and disagreeing is an error. "
       "Services' `tls_verify` wins.", "on"),
    _s("proxy_ssl_insecure_skip_verify", parse_optional_bool, None, "bool",
       "Tyk: do not verify upstream certificates (the inverse of `proxy_ssl_verify`; services' `tls_verify` "
       "wins). Not for production.", "off"),
    _s("proxy_ssl_verify_depth", parse_optional_int, None, "int",
       "Kong `nginx_proxy_proxy_ssl_verify_depth`: most intermediates in an upstream chain.", "(OpenSSL: 100)"),
    _s("proxy_ssl_min_version", as_written, None, "version", "Tyk: lowest TLS version to upstreams.", "1.2"),
    _s("proxy_ssl_max_version", as_written, None, "version", "Tyk: highest TLS version to upstreams.", "1.3"),
    _s("proxy_ssl_ciphers", as_written, None, "names", "Tyk: upstream cipher suites (IANA or OpenSSL names).",
       "(intermediate)"),
    _s("proxy_ssl_disable_renegotiation", as_written, None, "bool",
       "Tyk compatibility: upstream renegotiation is always refused; only `true` is accepted.", "on"),
    _s("proxy_enable_http2", parse_bool, False, "bool",
       "Tyk: offer HTTP/2 to https upstreams (ALPN `h2, http/1.1`); an upstream that picks `h2` is spoken to in "
       "HTTP/2, one request at a time per pooled connection (as nginx's `grpc_pass`), the others in HTTP/1.1. "
       "Plain-http upstreams stay HTTP/1.1 (no h2c). Trailers are not forwarded, as on HTTP/1.1."),
    _s("ssl_force_common_name_check", parse_bool, False, "bool",
       "Tyk: accept a SAN-less upstream certificate whose CN equals the host (chain still verified)."),
    _s("pinned_public_keys", as_written, None, "host map",
       "Tyk `security.pinned_public_keys`: host → `sha256//<base64>` pins or certificate ids "
       "(list or comma-separated), checked before any request byte.", "(none)"),
    # logs
    _s("proxy_access_log", parse_str, "stdout", "stdout|stderr|off|path", "Where the access log goes (Kong's name)."),
    _s("access_log_format", choice("text", "json"), "text", "text|json", "One line per request, text or JSON."),
    _s("log_level", choice("debug", "info", "notice", "warn", "error", "crit"), "notice", "level",
       "Error log level (Kong's names)."),
    # observability: certificate expiry events, webhooks, rejection log (parsed by
    # trio_gw.model.expiry_monitor, trio_gw.model.event_handlers and trio_gw.tls.rejection_log)
    _s("certificate_expiry_monitor", as_written, None, "mapping",
       "Tyk `security.certificate_expiry_monitor`: `warning_threshold_days` (30: fire `CertificateExpiringSoon` "
       "this many days ahead), `check_cooldown_seconds` (3600: how often every certificate of every role is "
       "checked), `event_cooldown_seconds` (86400: at most one event per certificate and kind in this time). "
       "`warning_threshold_days` is `certificate_expiry_warning_days` under Tyk's name: set one of them.",
       "30 / 3600 / 86400"),
    _s("event_handlers", as_written, None, "mapping",
       "Tyk's gateway `event_handlers` for `CertificateExpiringSoon` and `CertificateExpired`: "
       "`{events: {<Event>: [{handler_name: eh_web_hook_handler, handler_meta: {target_path, method, header_map, "
       "event_timeout}}, {handler_name: eh_log_handler, handler_meta: {prefix}}]}}`. Webhooks receive the event's "
       "metadata as JSON; https targets are verified against `lua_ssl_trusted_certificate`.", "(none)"),
    _s("external_services", as_written, None, "mapping",
       "Tyk's gateway `external_services` for trio-gw's own outbound connections: `proxy` (`http_proxy`, "
       "`https_proxy`, `no_proxy`, `use_environment`) for every one of them (webhooks, CRL and OCSP fetches), and "
       "`webhooks: {proxy, mtls: {enabled, cert_file, key_file, ca_file, insecure_skip_verify, tls_min_version, "
       "tls_max_version}}` for the event webhooks. `oauth`, `storage`, `health` and `discovery` are Tyk "
       "integrations trio-gw does not have: a block that sets anything there is refused.", "(none: direct, "
       "lua_ssl_trusted_certificate)"),
    _s("event_webhook_timeout", parse_duration, 10.0, "duration",
       "Deadline of one webhook delivery attempt (connect, TLS, request, answer)."),
    _s("event_webhook_retries", parse_int, 3, "int",
       "Retries of a webhook after a connection failure, a timeout, 408, 429 or 5xx, with exponential backoff "
       "(1s, 2s, 4s ... at most 30s); 0: one attempt only."),
    _s("rejection_log_interval", parse_duration, 60.0, "duration",
       "Failed TLS handshakes are logged with their reason code, one line per reason and client network "
       "(IPv4 /24, IPv6 /64) per interval; the lines held back are counted in the next one, so a scan cannot "
       "flood the log."),
    # certificate lifecycle: OCSP stapling (nginx's names, Envoy's policy) and revocation of client
    # certificates trusted by the server truststore and admin mTLS (nginx's ssl_ocsp); validated together by
    # trio_gw.tls.stapling.parse_stapling_settings and trio_gw.tls.client_revocation.parse_ssl_ocsp
    _s("ssl_stapling", parse_bool, False, "bool",
       "nginx `ssl_stapling`: staple an OCSP response to every served certificate whose status is known. Responses "
       "are fetched from the certificate's AIA responder (or `ssl_stapling_responder`) in the background, verified, "
       "kept until their `nextUpdate` and refreshed before it; a handshake never waits for a responder."),
    _s("ssl_stapling_verify", parse_bool, True, "bool",
       "nginx `ssl_stapling_verify`: staple only responses signed by the certificate's issuer or its delegated "
       "responder. On by default (nginx: off): a client that checks staples must never get one that fails."),
    _s("ssl_stapling_file", parse_optional_str, None, "path",
       "nginx `ssl_stapling_file`: a DER OCSP response stapled instead of asking a responder, for the served "
       "certificate it is about (matched by its CertID); never refetched."),
    _s("ssl_stapling_responder", parse_optional_str, None, "URL",
       "nginx `ssl_stapling_responder`: the OCSP responder asked for every served certificate, instead of the "
       "certificates' AIA URLs."),
    _s("ocsp_staple_policy", parse_staple_policy, "lenient", "lenient|strict|must_staple",
       "Envoy `ocsp_staple_policy`: `lenient` staples a good response when one is at hand and never affects a "
       "handshake; `strict` refuses to serve a certificate whose status is revoked, unknown or stale; "
       "`must_staple` also refuses a certificate with the TLS Feature must-staple extension until a good response "
       "is at hand. `strict` and `must_staple` need `ssl_stapling`."),
    _s("ssl_ocsp", choice("off", "on", "leaf"), "off", "off|on|leaf",
       "nginx `ssl_ocsp`: check the revocation of client certificates trusted by the server truststore "
       "(`ssl_client_certificate`): OCSP from the certificates' AIA responders first, then CRLs (`ssl_crl`, distribution points). "
       "`on` checks the whole chain, `leaf` the leaf only; a revoked certificate gets 401 `revoked`, one whose "
       "status cannot be learned 401 `revocation_unknown` (nginx fails closed too)."),
    _s("ssl_crl", parse_str_list, (), "path list",
       "nginx `ssl_crl`: CRL files (PEM or DER) for the client certificates of the server truststore, checked "
       "after OCSP when `ssl_ocsp` is on. Read again at every reload."),
    _s("admin_ssl_ocsp", choice("off", "on", "leaf"), "off", "off|on|leaf",
       "`ssl_ocsp` for the Admin API's mTLS (`admin_mtls`): a revoked admin certificate gets 401 `revoked`, one "
       "whose status cannot be learned 401 `revocation_unknown`."),
    _s("admin_ssl_crl", parse_str_list, (), "path list",
       "`ssl_crl` for the Admin API's mTLS: CRL files of `admin_mtls_ca_certificates`, checked after OCSP."),
)

BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}

#: Other names accepted for a setting (Kong's full ``nginx_*`` names): alias → setting.  Giving a
#: setting twice in one source (by its name and an alias) is an error; a later source wins as usual.
ALIASES: dict[str, str] = {
    "nginx_proxy_proxy_ssl_trusted_certificate": "proxy_ssl_trusted_certificate",
    "nginx_proxy_proxy_ssl_verify": "proxy_ssl_verify",
    "nginx_proxy_proxy_tls_verify": "proxy_ssl_verify",
    "nginx_proxy_proxy_ssl_verify_depth": "proxy_ssl_verify_depth",
    "nginx_proxy_proxy_ignore_client_abort": "proxy_ignore_client_abort",
    "nginx_http_client_max_body_size": "client_max_body_size",
    "nginx_proxy_client_max_body_size": "client_max_body_size",
    "nginx_worker_processes": "workers",
    "nginx_http_ssl_ecdh_curve": "ssl_ecdh_curve",
    "nginx_http_ssl_dhparam": "ssl_dhparam",
}


#: Settings whose values are never printed.
SECRET_SETTINGS = frozenset({"pg_password", "private_key_encryption_secret"})

