"""Assembly of one gateway node: snapshot holder, listeners, reload, shutdown.

Start-up is all-or-nothing: settings, declarative file, certificates and TLS
policy are all loaded and compiled before the first listener accepts, and any
problem stops start-up with a :class:`ConfigError` naming it.  A reload
(SIGHUP) that fails keeps the current snapshot and logs why.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import ssl
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import trio

from trio_gw.errors import CertificateError, ConfigError, Problem
from trio_gw.model.certificates import certificate_warnings, parse_certificate_entity
from trio_gw.model.declarative import load_declarative_text
from trio_gw.model.entities import Certificate, Entities
from trio_gw.net.http_fetch import FetchError, fetch, outbound_tls_context
from trio_gw.net.contexts import ALPN_H2, ALPN_HTTP11
from trio_gw.net.h2_proxy import Http2Server
from trio_gw.net.proxy import ConnectionInfo, Exchange, ProxyServer
from trio_gw.plugins.crl_cache import CrlCache, crl_fetch_settings
from trio_gw.pki.keys import key_type
from trio_gw.pki.info import describe_certificate
from trio_gw.pki.parse import parse_certificates
from trio_gw.net.server import Listener, open_listener
from trio_gw.net.tls_client import UpstreamTls
from trio_gw.net.tls_server import ServerTls
from trio_gw.net.upstream import UpstreamPool
from trio_gw.net.admin_server import AdminServer
from trio_gw.runtime.accesslog import AccessLog
from trio_gw.runtime.admin import AdminApi, AdminTls, admin_tls_context, listener_tls_context
from trio_gw.runtime.datastore import open_store
from trio_gw.store import Store, StoreError
from trio_gw.runtime.devpki import ensure_dev_pki
from trio_gw.runtime.logs import NOTICE, configure_logging
from trio_gw.runtime.metrics import Metrics
from trio_gw.settings import Settings, http2_flag_warnings, serves_http2
from trio_gw.tls.resumed_chain import IntermediateCache
from trio_gw.runtime.status import StatusServer
from trio_gw.snapshot import Snapshot, build_snapshot

log = logging.getLogger("trio_gw")

READY_FILE = "trio-gw.ready.json"
#: How often wanted CRLs are fetched, and each fetch's deadline.
CRL_FETCH_INTERVAL = 2.0
CRL_FETCH_TIMEOUT = 10.0
#: Expiry warnings are repeated this often, independent of traffic.
EXPIRY_WARNING_INTERVAL = 24 * 3600.0
PEM_BLOCK = re.compile(r"-----BEGIN [A-Z0-9 ]+-----\r?\n.*?-----END [A-Z0-9 ]+-----\r?\n?", re.S)
#: A certificate of the store named in ``ssl_certificates`` (Tyk: certificate ids).
STORE_REFERENCE = re.compile(r"^(sha256:[0-9a-fA-F]{64}|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})$")


def _read(path: str, key: str, problems: list[Problem]) -> str | None:
    try:
        return Path(path).read_text()
    except OSError as exc:
        problems.append(Problem(key, f"cannot read {path}: {exc.strerror}"))
        return None


def _merge_alt_pairs(certs: list[Certificate]) -> list[Certificate]:
    """Serve an RSA and an ECDSA ``ssl_cert`` pair together (Kong's dual default certificates).

    OpenSSL picks between the pairs of one context by the client's signature
    algorithms, so the first pair of another key type becomes ``cert_alt``.
    """
    if len(certs) < 2:
        return certs
    first = certs[0]
    first_type = key_type(parse_certificates(first.cert)[0].public_key())
    for i, other in enumerate(certs[1:], start=1):
        if key_type(parse_certificates(other.cert)[0].public_key()) != first_type:
            merged = replace(first, cert_alt=other.cert, key_alt=other.key)
            return [merged] + certs[1:i] + certs[i + 1 :]
    return certs


def _subject(pem: str) -> str:
    """The RFC 4514 subject of the first certificate of ``pem``, for log lines."""
    return describe_certificate(parse_certificates(pem)[0]).subject


def read_pairs(pairs: list[tuple[str, str]], setting: str, *, now: int) -> list[Certificate]:
    """Read certificate/key file pairs into certificate entities.

    Raises:
        ConfigError: a file is unreadable or its content unusable, naming ``setting[i]``.
    """
    certs: list[Certificate] = []
    problems: list[Problem] = []
    for i, (cert_path, key_path) in enumerate(pairs):
        cert_text = _read(cert_path, f"{setting}[{i}]", problems)
        key_text = _read(key_path, f"{setting}_key[{i}]", problems)
        if cert_text is None or key_text is None:
            continue
        try:
            certs.append(parse_certificate_entity({"cert": cert_text, "key": key_text}, now=now, id=f"{setting}#{i}"))
        except ConfigError as exc:
            for p in exc.problems:  # a key problem names the key's setting and file
                if p.path == "key":
                    problems.append(Problem(f"{setting}_key[{i}] ({key_path})", p.message))
                else:
                    problems.extend(ConfigError([p]).prefixed(f"{setting}[{i}] ({cert_path})").problems)
    if problems:
        raise ConfigError(problems)
    return certs


def read_default_certificates(settings: Settings, *, now: int) -> list[Certificate]:
    """Read the ``ssl_cert``/``ssl_cert_key`` pairs (a generated one when none and an ssl listener).

    Raises:
        ConfigError: a file is unreadable or its content unusable, naming the setting.
    """
    pairs = list(zip(settings.ssl_cert, settings.ssl_cert_key))
    if not pairs and not settings.ssl_certificates and any(a.ssl for a in settings.proxy_listen):
        # Kong generates a default certificate when none is configured; so do we, under
        # prefix/pki, signed by a local CA the user can choose to trust.  With Tyk's
        # ssl_certificates the first of them is the default instead (tls/sni.py rule 7).
        pki = ensure_dev_pki(Path(settings.prefix) / "pki")
        log.warning("no ssl_cert configured: serving the generated certificate %s (CA %s)",
                    pki.server_cert, pki.ca_cert)
        pairs = [(str(pki.server_cert), str(pki.server_key))]
    return _merge_alt_pairs(read_pairs(pairs, "ssl_cert", now=now))


def read_ssl_certificates_files(settings: Settings, *, now: int) -> list[Certificate]:
    """The combined-PEM files of Tyk's ``ssl_certificates`` setting as certificate entities."""
    certs: list[Certificate] = []
    problems: list[Problem] = []
    for i, entry in enumerate(settings.ssl_certificates):
        if STORE_REFERENCE.match(entry):
            continue  # a store certificate: checked against the entities in build_snapshot
        text = _read(entry, f"ssl_certificates[{i}]", problems)
        if text is None:
            continue
        blocks = PEM_BLOCK.findall(text)
        key = "".join(b for b in blocks if "PRIVATE KEY" in b.split("\n", 1)[0])
        chain = "".join(b for b in blocks if "PRIVATE KEY" not in b.split("\n", 1)[0])
        if not key or not chain:
            # Tyk: "must contain both the certificate (public key) and private key"
            missing = "private key" if chain else "certificate"
            problems.append(Problem(f"ssl_certificates[{i}] ({entry})", f"holds no {missing}: a server certificate "
                                    "pair is one PEM file with the certificate chain and its private key"))
            continue
        try:
            certs.append(parse_certificate_entity({"cert": chain, "key": key}, now=now, id=f"ssl_certificates#{i}"))
        except ConfigError as exc:
            problems.extend(exc.prefixed(f"ssl_certificates[{i}] ({entry})").problems)
    if problems:
        raise ConfigError(problems)
    return certs


def read_client_truststore(settings: Settings) -> list[str]:
    """The CA certificates of ``ssl_client_certificate`` (PEM bundles), one PEM per certificate.

    Raises:
        ConfigError: a file is unreadable, holds no certificate, or a certificate
            that is not a CA, naming ``ssl_client_certificate[i]``.
    """
    from cryptography.hazmat.primitives.serialization import Encoding

    from trio_gw.pki.info import describe_certificate

    pems: list[str] = []
    problems: list[Problem] = []
    for i, path in enumerate(settings.ssl_client_certificate):
        key = f"ssl_client_certificate[{i}]"
        text = _read(path, key, problems)
        if text is None:
            continue
        try:
            certs = parse_certificates(text)
        except CertificateError as exc:
            problems.append(Problem(key, f"{path}: {exc}"))
            continue
        for cert in certs:
            if not describe_certificate(cert).is_ca:
                problems.append(Problem(key, f"{path}: {cert.subject.rfc4514_string()} is not a CA certificate"))
            pems.append(cert.public_bytes(Encoding.PEM).decode("ascii"))
    if problems:
        raise ConfigError(problems)
    return pems


def read_entities(settings: Settings, *, now: int) -> Entities:
    """The configuration for ``database: off``: the declarative file, or nothing."""
    path = settings.declarative_config
    if path is None:
        return Entities()
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}", path="declarative_config") from exc
    try:
        return load_declarative_text(text, now=now)
    except ConfigError as exc:
        raise exc.prefixed(f"{path}") from None


def check_database_settings(settings: Settings) -> None:
    if settings.database != "off" and settings.declarative_config is not None:
        raise ConfigError(
            f"is only read with database: off; with database: {settings.database}, import the file once "
            "with `trio-gw config load FILE`",
            path="declarative_config",
        )


class Gateway:
    """One node: owns the live snapshot and every listener."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.prefix = Path(settings.prefix)
        # One family of server contexts per ALPN offer in use (the list follows the SNI context).
        self.server_tls = ServerTls(
            ALPN_H2 if serves_http2(a, settings.enable_http2) else ALPN_HTTP11 for a in settings.proxy_listen if a.ssl
        )
        self.upstream_tls = UpstreamTls()
        self.pool = UpstreamPool(
            size=settings.upstream_keepalive_pool_size,
            idle_timeout=settings.upstream_keepalive_idle_timeout,
            max_requests=settings.upstream_keepalive_max_requests,
        )
        self.access_log = AccessLog(settings.proxy_access_log, settings.access_log_format)
        self.metrics = Metrics()
        self.proxy = ProxyServer(self.snapshot_now, self.pool, self.upstream_tls, self._record)
        self.http2 = Http2Server(self.proxy)
        self.crl_cache = CrlCache()
        self.crl_fetch_timeout = CRL_FETCH_TIMEOUT
        #: Trust of the node's own https fetches (``lua_ssl_trusted_certificate``), built at start.
        self.fetch_tls: ssl.SSLContext | None = None
        self.proxy.crl_source = self.crl_cache
        self._snapshot: Snapshot | None = None
        self.store: Store | None = None
        self.store_version = -1
        self.store_reachable = True
        self._write_lock = trio.Lock()
        self.listeners: dict[str, list[Listener]] = {"proxy": [], "admin": [], "status": []}
        self.https_port = 443
        self.started_at = time.time()

    def _record(self, info: ConnectionInfo, ex: Exchange) -> None:
        self.access_log.record(info, ex)
        self.metrics.record_request(info, ex)

    def snapshot_now(self) -> Snapshot:
        assert self._snapshot is not None
        return self._snapshot

    # --- configuration ----------------------------------------------------------

    def _compile(self, entities: Entities | None = None) -> Snapshot:
        """Read, validate and compile everything (blocking: run in a worker thread).

        ``entities`` is a configuration about to be written (Admin API); otherwise
        it is read from the datastore or the declarative file.
        """
        now = int(time.time())
        if entities is None:
            if self.store is not None:
                self.store_version = self.store.version()
                entities = self.store.load()
            else:
                entities = read_entities(self.settings, now=now)
        defaults = read_default_certificates(self.settings, now=now)
        extra = read_ssl_certificates_files(self.settings, now=now)
        snapshot = build_snapshot(
            self.settings, entities, default_certificates=defaults, extra_certificates=extra,
            client_truststore=read_client_truststore(self.settings), https_port=self.https_port, now=time.time(),
        )
        try:
            self.server_tls.prepare(snapshot)
            self.upstream_tls.prepare(snapshot)
        except CertificateError as exc:
            raise ConfigError(str(exc), path="certificates") from exc
        return snapshot

    def _activate(self, snapshot: Snapshot) -> None:
        self.server_tls.activate()
        self.upstream_tls.activate()
        self._snapshot = snapshot
        self.crl_cache.ttl, self.crl_fetch_timeout = crl_fetch_settings(snapshot.entities)
        self.metrics.observe_snapshot(snapshot)
        for warning in snapshot.warnings:
            log.warning("%s", warning)

    async def load(self) -> Snapshot:
        """Compile a new snapshot off the loop and make it live (one swap)."""
        async with self._write_lock:
            snapshot = await trio.to_thread.run_sync(self._compile)
            self._activate(snapshot)
        self.warn_expiring(snapshot)
        return snapshot

    async def write(self, entities: Entities) -> Snapshot:
        """Make ``entities`` the configuration: compile, persist, swap — or change nothing.

        Raises:
            ConfigError: the configuration cannot be served (nothing was written).
            StoreConflict: another writer changed the datastore meanwhile (nothing was written).
            StoreError: the datastore failed (nothing was written).
        """
        async with self._write_lock:
            current = self.snapshot_now().entities
            snapshot = await trio.to_thread.run_sync(self._compile, entities)
            if self.store is not None:
                store = self.store
                self.store_version = await trio.to_thread.run_sync(store.commit, current, entities)
            self._activate(snapshot)
        return snapshot

    def warn_expiring(self, snapshot: Snapshot) -> None:
        """Log every certificate, whatever its role, that expires soon or has expired."""
        now = int(time.time())
        days = self.settings.certificate_expiry_warning_days
        for cert in snapshot.certificates.values():
            for text in certificate_warnings(cert.cert, now=now, warn_days=days):
                log.warning("certificate %s (%s): %s", cert.id, _subject(cert.cert), text)
        for ca in snapshot.entities.ca_certificates.values():
            for text in certificate_warnings(ca.cert, now=now, warn_days=days):
                log.warning("CA certificate %s (%s): %s", ca.id, _subject(ca.cert), text)

    async def _fetch_crls(self) -> None:
        """Fetch the CRLs revocation checks asked for (CRL distribution points), off the request path."""
        while True:
            await trio.sleep(CRL_FETCH_INTERVAL)
            for url in self.crl_cache.wanted():
                try:
                    body = await fetch(url, timeout=self.crl_fetch_timeout, ssl_context=self.fetch_tls)
                except FetchError as exc:
                    log.warning("CRL %s could not be fetched: %s", url, exc)
                    self.crl_cache.failed(url)
                    continue
                try:
                    self.crl_cache.store(url, body, time.time())
                except CertificateError as exc:
                    log.warning("CRL %s is not usable: %s", url, exc)
                    self.crl_cache.failed(url)

    async def _daily_expiry_warnings(self) -> None:
        while True:
            await trio.sleep(EXPIRY_WARNING_INTERVAL)
            self.warn_expiring(self.snapshot_now())

    async def _watch_store(self) -> None:
        """Pick up writes made by other processes or nodes (Kong's db_update_frequency)."""
        store = self.store
        assert store is not None
        while True:
            await trio.sleep(self.settings.db_update_frequency)
            try:
                version = await trio.to_thread.run_sync(store.version)
            except StoreError as exc:
                if self.store_reachable:
                    log.error("datastore unreachable, still serving the last configuration: %s", exc)
                self.store_reachable = False
                continue
            if not self.store_reachable:
                log.log(NOTICE, "datastore reachable again")
                self.store_reachable = True
            if version != self.store_version:
                await self.reload()

    async def reload(self) -> None:
        try:
            snapshot = await self.load()
        except ConfigError as exc:
            log.error("reload failed, still serving the previous configuration:\n%s", exc)
            return
        log.log(NOTICE, "configuration reloaded (hash %s)", snapshot.config_hash)

    # --- listeners --------------------------------------------------------------

    async def _bind(self) -> None:
        s = self.settings
        limiter = trio.CapacityLimiter(s.max_connections)
        chains = IntermediateCache()  # one for every proxy listener: they share the snapshot's tickets
        for warning in http2_flag_warnings(s.proxy_listen, s.admin_listen, s.status_listen):
            log.warning("%s", warning)
        for addr in s.proxy_listen:
            http2 = serves_http2(addr, s.enable_http2)
            listener = await open_listener(
                addr.host, addr.port, name=f"proxy {addr}",
                handler=self.http2.serve_connection if http2 else self.proxy.serve_connection,
                tls=self.server_tls.source(ALPN_H2 if http2 else ALPN_HTTP11) if addr.ssl else None,
                handshake_timeout=s.ssl_handshake_timeout,
                limiter=limiter, reuseport=addr.reuseport, observe=self.metrics.record_handshake, chains=chains,
            )
            self.listeners["proxy"].append(listener)
        ssl_ports = [lst.port for lst, a in zip(self.listeners["proxy"], s.proxy_listen) if a.ssl]
        if ssl_ports:
            self.https_port = ssl_ports[0]
        admin = AdminServer(AdminApi(self).handle)
        admin_tls = None
        if any(a.ssl for a in s.admin_listen):
            admin_tls = AdminTls(await trio.to_thread.run_sync(admin_tls_context, s))
        for addr in s.admin_listen:
            listener = await open_listener(
                addr.host, addr.port, name=f"admin {addr}", handler=admin.serve_connection,
                tls=admin_tls if addr.ssl else None, handshake_timeout=s.ssl_handshake_timeout, limiter=limiter,
            )
            self.listeners["admin"].append(listener)
        status = StatusServer(self)
        status_tls = None
        if any(a.ssl for a in s.status_listen):
            status_tls = AdminTls(await trio.to_thread.run_sync(
                listener_tls_context, s, "status_ssl_cert", "Status API"))
        for addr in s.status_listen:
            listener = await open_listener(
                addr.host, addr.port, name=f"status {addr}", handler=status.serve_connection,
                tls=status_tls if addr.ssl else None, handshake_timeout=s.ssl_handshake_timeout, limiter=limiter,
            )
            self.listeners["status"].append(listener)

    def _write_ready_file(self) -> None:
        self.prefix.mkdir(parents=True, exist_ok=True)
        listeners: dict[str, list[dict[str, Any]]] = {}
        for kind, items in self.listeners.items():
            listeners[kind] = [{"host": li.host, "port": li.port, "ssl": li.tls is not None} for li in items]
        data = {"pid": os.getpid(), "listeners": listeners}
        tmp = self.prefix / (READY_FILE + ".tmp")
        tmp.write_text(json.dumps(data))
        tmp.replace(self.prefix / READY_FILE)

    async def run(self, *, task_status: trio.TaskStatus[Gateway] = trio.TASK_STATUS_IGNORED) -> None:
        """Start, serve until SIGTERM/SIGINT (or cancellation), then drain and stop."""
        check_database_settings(self.settings)
        self.fetch_tls = await trio.to_thread.run_sync(
            outbound_tls_context, self.settings.lua_ssl_trusted_certificate, self.settings.lua_ssl_verify_depth)
        self.store = await trio.to_thread.run_sync(open_store, self.settings)
        await self._bind()
        try:
            await self.load()
            self._write_ready_file()
            for kind, items in self.listeners.items():
                for li in items:
                    log.info("%s listening on %s:%d%s", kind, li.host, li.port, " (ssl)" if li.tls else "")
            async with trio.open_nursery() as connections:
                async with trio.open_nursery() as accepting:
                    for items in self.listeners.values():
                        for li in items:
                            accepting.start_soon(li.serve, connections)
                    accepting.start_soon(self._signals, accepting)
                    accepting.start_soon(self._daily_expiry_warnings)
                    accepting.start_soon(self._fetch_crls)
                    if self.store is not None:
                        accepting.start_soon(self._watch_store)
                    task_status.started(self)
                # accepting stopped: drain in-flight requests, then close the rest
                await self._drain(connections)
        finally:
            for items in self.listeners.values():
                for li in items:
                    await li.socket_listener.aclose()
            with trio.CancelScope(shield=True):
                await self.pool.aclose()
            (self.prefix / READY_FILE).unlink(missing_ok=True)
            self.access_log.close()
            if self.store is not None:
                self.store.close()

    async def _signals(self, accepting: trio.Nursery) -> None:
        with trio.open_signal_receiver(signal.SIGHUP, signal.SIGTERM, signal.SIGINT) as signals:
            async for signum in signals:
                if signum == signal.SIGHUP:
                    await self.reload()
                else:
                    log.log(NOTICE, "received %s: stopping", signal.Signals(signum).name)
                    accepting.cancel_scope.cancel()
                    return

    def stop(self) -> None:
        """Programmatic equivalent of SIGTERM (tests)."""
        os.kill(os.getpid(), signal.SIGTERM)

    async def _drain(self, connections: trio.Nursery) -> None:
        self.proxy.start_draining()
        with trio.move_on_after(self.settings.graceful_shutdown_timeout):
            while self.proxy.in_flight:
                await trio.sleep(0.05)
        connections.cancel_scope.cancel()


async def run_gateway(settings: Settings) -> None:
    configure_logging(settings.log_level)
    await Gateway(settings).run()
