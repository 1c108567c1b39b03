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
import signal
import time
from pathlib import Path
from typing import Any

import trio

from trio_gw.errors import CertificateError, ConfigError, Problem
from trio_gw.model.certificates import parse_certificate_entity
from trio_gw.model.declarative import load_declarative_text
from trio_gw.model.entities import Certificate, Entities
from trio_gw.net.proxy import ProxyServer
from trio_gw.net.server import Listener, open_listener
from trio_gw.net.tls_client import UpstreamTls
from trio_gw.net.tls_server import ServerTls
from trio_gw.net.upstream import UpstreamPool
from trio_gw.runtime.accesslog import AccessLog
from trio_gw.runtime.settings import Settings
from trio_gw.runtime.status import StatusServer
from trio_gw.snapshot import Snapshot, build_snapshot

log = logging.getLogger("trio_gw")

READY_FILE = "trio-gw.ready.json"


def read_default_certificates(settings: Settings, *, now: int) -> list[Certificate]:
    """Read the ``ssl_cert``/``ssl_cert_key`` files into certificate entities.

    Raises:
        ConfigError: a file is unreadable or its content unusable, naming the setting.
    """
    certs: list[Certificate] = []
    problems: list[Problem] = []
    for i, (cert_path, key_path) in enumerate(zip(settings.ssl_cert, settings.ssl_cert_key)):
        texts = []
        for name, path in (("ssl_cert", cert_path), ("ssl_cert_key", key_path)):
            try:
                texts.append(Path(path).read_text())
            except OSError as exc:
                problems.append(Problem(f"{name}[{i}]", f"cannot read {path}: {exc.strerror}"))
        if len(texts) != 2:
            continue
        try:
            certs.append(parse_certificate_entity({"cert": texts[0], "key": texts[1]}, now=now, id=f"ssl_cert#{i}"))
        except ConfigError as exc:
            problems.extend(exc.prefixed(f"ssl_cert[{i}] ({cert_path})").problems)
    if problems:
        raise ConfigError(problems)
    return certs


def read_entities(settings: Settings, *, now: int) -> Entities:
    """The configuration for ``database: off``: the declarative file, or nothing."""
    path = settings.declarative_config
    if settings.database != "off":
        raise ConfigError(
            f"database '{settings.database}' is not available in this build yet; use 'off' with declarative_config",
            path="database",
        )
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


class Gateway:
    """One node: owns the live snapshot and every listener."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.prefix = Path(settings.prefix)
        self.server_tls = ServerTls()
        self.upstream_tls = UpstreamTls()
        self.pool = UpstreamPool(
            size=settings.upstream_keepalive_pool_size,
            idle_timeout=settings.upstream_keepalive_idle_timeout,
            max_requests=settings.upstream_keepalive_max_requests,
        )
        self.access_log = AccessLog(settings.proxy_access_log, settings.access_log_format)
        self.proxy = ProxyServer(self.snapshot_now, self.pool, self.upstream_tls, self.access_log.record)
        self._snapshot: Snapshot | None = None
        self.listeners: dict[str, list[Listener]] = {"proxy": [], "admin": [], "status": []}
        self.https_port = 443
        self.started_at = time.time()

    def snapshot_now(self) -> Snapshot:
        assert self._snapshot is not None
        return self._snapshot

    # --- configuration ----------------------------------------------------------

    def _compile(self) -> Snapshot:
        """Read, validate and compile everything (blocking: run in a worker thread)."""
        now = int(time.time())
        entities = read_entities(self.settings, now=now)
        defaults = read_default_certificates(self.settings, now=now)
        snapshot = build_snapshot(
            self.settings, entities, default_certificates=defaults, https_port=self.https_port, now=time.time()
        )
        try:
            self.server_tls.prepare(snapshot)
            self.upstream_tls.prepare(snapshot)
        except CertificateError as exc:
            raise ConfigError(str(exc), path="certificates") from exc
        return snapshot

    async def load(self) -> Snapshot:
        """Compile a new snapshot off the loop and make it live (one swap)."""
        snapshot = await trio.to_thread.run_sync(self._compile)
        self.server_tls.activate()
        self.upstream_tls.activate()
        self._snapshot = snapshot
        for warning in snapshot.warnings:
            log.warning("%s", warning)
        return snapshot

    async def reload(self) -> None:
        try:
            snapshot = await self.load()
        except ConfigError as exc:
            log.error("reload failed, still serving the previous configuration:\n%s", exc)
            return
        log.warning("configuration reloaded (hash %s)", snapshot.config_hash)

    # --- listeners --------------------------------------------------------------

    async def _bind(self) -> None:
        s = self.settings
        limiter = trio.CapacityLimiter(s.max_connections)
        for addr in s.proxy_listen:
            listener = await open_listener(
                addr.host, addr.port, name=f"proxy {addr}", handler=self.proxy.serve_connection,
                tls=self.server_tls if addr.ssl else None, handshake_timeout=s.ssl_handshake_timeout,
                limiter=limiter, reuseport=addr.reuseport,
            )
            self.listeners["proxy"].append(listener)
        ssl_ports = [lst.port for lst, a in zip(self.listeners["proxy"], s.proxy_listen) if a.ssl]
        if ssl_ports:
            self.https_port = ssl_ports[0]
        status = StatusServer(self)
        for addr in s.status_listen:
            listener = await open_listener(
                addr.host, addr.port, name=f"status {addr}", handler=status.serve_connection,
                tls=None, handshake_timeout=s.ssl_handshake_timeout, limiter=limiter,
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
        await self._bind()
        try:
            await self.load()
            self._write_ready_file()
            for kind, items in self.listeners.items():
                for li in items:
                    log.warning("%s listening on %s:%d%s", kind, li.host, li.port, " (ssl)" if li.tls else "")
            async with trio.open_nursery() as connections:
                async with trio.open_nursery() as accepting:
                    for items in self.listeners.values():
                        for li in items:
                            accepting.start_soon(li.serve, connections)
                    accepting.start_soon(self._signals, accepting)
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

    async def _signals(self, accepting: trio.Nursery) -> None:
        with trio.open_signal_receiver(signal.SIGHUP, signal.SIGTERM, signal.SIGINT) as signals:
            async for signum in signals:
                if signum == signal.SIGHUP:
                    await self.reload()
                else:
                    log.warning("received %s: stopping", signal.Signals(signum).name)
                    accepting.cancel_scope.cancel()
                    return

    def stop(self) -> None:
        """Programmatic equivalent of SIGTERM (tests)."""
        os.kill(os.getpid(), signal.SIGTERM)

    async def _drain(self, connections: trio.Nursery) -> None:
        self.proxy.draining = True
        with trio.move_on_after(self.settings.graceful_shutdown_timeout):
            while self.proxy.in_flight:
                await trio.sleep(0.05)
        connections.cancel_scope.cancel()


def configure_logging(level: str) -> None:
    levels = {"debug": logging.DEBUG, "info": logging.INFO, "notice": logging.WARNING, "warn": logging.WARNING,
              "error": logging.ERROR, "crit": logging.CRITICAL}
    logging.basicConfig(level=levels.get(level, logging.INFO), format="%(asctime)s [%(levelname)s] %(name)s: %(message)s")


async def run_gateway(settings: Settings) -> None:
    configure_logging(settings.log_level)
    await Gateway(settings).run()
