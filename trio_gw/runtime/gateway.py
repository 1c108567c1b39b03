"""Assembly of one gateway node: the generation holder, listeners, reload, writes, shutdown.

Theory of operation
-------------------
The node serves one :class:`~trio_gw.net.generation.Generation` at a time and
swaps it as one reference (:class:`~trio_gw.net.generation.GenerationHolder`).
Every change goes through one lock and one path: read the configuration (the
datastore, or the declarative file), build a generation in a worker thread,
install it.  Three things start that path:

* **a reload** — start-up, SIGHUP, or a change another node or process made
  (the datastore's change feed, ``runtime/watch.py``).  A configuration that
  cannot be served is refused and the current generation stays; a datastore
  that fails is logged once per outage, shown in ``/status``, retried with
  backoff — the node keeps serving its last generation and never exits because
  of its datastore.  A PostgreSQL node that starts without its datastore
  serves the last good configuration cached under ``prefix``
  (``runtime/last_good.py``) until it can reconnect;
* **a write** (the Admin API) — :meth:`Gateway.write` takes the node's lock
  and the datastore-wide writer lock (so writers on several nodes take turns
  instead of racing), computes the new configuration from the *latest
  committed* one, builds its generation (so a configuration that cannot be
  served is refused before anything is written), then commits with
  compare-and-swap on the datastore's version.  If a writer that does not
  take the lock committed meanwhile, the write is re-read and re-applied,
  unless that writer changed an entity this write changes too: then it is
  answered as a conflict.  An acknowledged write is never lost, and never
  silently undoes another;
* nothing else: no other state is kept in step by hand.

Start-up is all-or-nothing: settings, files, certificates and TLS policy are
compiled before the first listener accepts, and any problem stops start-up
with a :class:`ConfigError` naming it.

The ready file (``prefix/trio-gw.ready.json``: the pid and the listeners' ports)
is the last step of start-up: when it appears the node serves and handles
SIGTERM, so a process manager may stop it at once and it drains (a worker's
first report to its supervisor waits for the same point, :attr:`Gateway.serving`).

With worker processes the same class runs in every process of the node, told
by its :class:`~trio_gw.runtime.control.ProcessRole` which part it plays: the
supervisor (Admin API and status, no proxy listener), or a worker (the proxy
listeners on sockets the supervisor bound).  Each builds and swaps its own
generations.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import ssl
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import trio

from trio_gw.errors import ConfigError
from trio_gw.model.entities import Entities
from trio_gw.model.inventory import ConfiguredCertificate, Inventory
from trio_gw.net.admin_server import AdminServer
from trio_gw.net.contexts import ALPN_H2, ALPN_HTTP11
from trio_gw.net.exchange import Exchange, Proxy
from trio_gw.net.generation import Generation, GenerationBuilder, GenerationHolder, ProxyTls
from trio_gw.net.http1 import Http1Server
from trio_gw.net.http_fetch import outbound_tls_context
from trio_gw.net.limits import ADMIN_CONNECTIONS, DRAIN_IDLE_GRACE, STATUS_CONNECTIONS, ConnectionLimit
from trio_gw.net.listener import FixedTls, HandshakeObserver, Listener, open_listener
from trio_gw.net.tls_server import ServerNameGuard
from trio_gw.net.upstream import UpstreamPool
from trio_gw.http.facts import ConnectionFacts
from trio_gw.runtime.accesslog import AccessLog
from trio_gw.runtime.admin_service import AdminService
from trio_gw.runtime.certificate_files import read_entities, read_file_certificates, read_node_certificates
from trio_gw.runtime.certificate_lifecycle import CertificateLifecycle
from trio_gw.runtime.cluster_metrics import ClusterCollector
from trio_gw.runtime import heap
from trio_gw.runtime.control import SINGLE_PROCESS, ProcessRole
from trio_gw.runtime.expiry_monitor import ExpiryMonitor, monitor_config, webhook_tls_context
from trio_gw.runtime.handshake_log import HandshakeRejectionLog
from trio_gw.runtime.kong_metrics import ConnectionCounts
from trio_gw.runtime.last_good import LastGood
from trio_gw.runtime.listener_tls import admin_tls_context, listener_tls_context
from trio_gw.runtime.logs import NOTICE, configure_logging
from trio_gw.runtime.metrics import Metrics
from trio_gw.runtime.status import StatusServer
from trio_gw.runtime.ticket_ring import TicketRing
from trio_gw.runtime.watch import FeedState, keep_datastore
from trio_gw.settings import Settings, http2_flag_warnings, serves_http2
from trio_gw.store import Store, StoreConflict, StoreError
from trio_gw.store.codec import diff
from trio_gw.store.config_cache import CachedConfig
from trio_gw.tls.resumed_chain import IntermediateCache
from trio_gw.tls.ticket_keys import TicketKeyRing
from trio_gw.tls.ticket_policy import TicketSource

if TYPE_CHECKING:
    from trio_gw.net.http2 import Http2Server

log = logging.getLogger("trio_gw")

READY_FILE = "trio-gw.ready.json"
#: A write re-applied after this many conflicts with other writers gives up (409).
MAX_WRITE_ATTEMPTS = 10

T = TypeVar("T")


class WriteConflict(Exception):
    """Another writer changed an entity this write changes too: nothing was written."""


@dataclass
class DatastoreHealth:
    """What ``/status`` says about the datastore; one log line per outage, not per poll."""

    reachable: bool = True
    since: float = 0.0
    error: str | None = None
    failures: int = 0

    def failed(self, exc: BaseException, now: float) -> None:
        if self.reachable:
            log.error("datastore unreachable, still serving the last configuration: %s", exc)
            self.reachable, self.since = False, now
        self.error = str(exc)
        self.failures += 1

    def recovered(self, now: float) -> None:
        if not self.reachable:
            log.log(NOTICE, "datastore reachable again after %.1f s", now - self.since)
            self.reachable, self.since, self.error = True, now, None
        self.failures = 0


def check_database_settings(settings: Settings) -> None:
    if settings.database != "off" and settings.declarative_config is not None:
        raise ConfigError(
            f"is only read with database: off; with database: {settings.database}, import the file once "
            "with `trio-gw config load FILE`",
            path="declarative_config",
        )


class Gateway:
    """One node: owns the generation holder and every listener."""

    def __init__(self, settings: Settings, *, role: ProcessRole = SINGLE_PROCESS) -> None:
        self.settings = settings
        #: The part this process plays in its node (the only process, a supervisor or a worker).
        self.role = role
        self.prefix = Path(settings.prefix)
        # One family of server contexts per ALPN offer in use (the list follows the SNI context).
        offers = [ALPN_H2 if serves_http2(a, settings.enable_http2) else ALPN_HTTP11
                  for a in settings.proxy_listen if a.ssl]
        self.holder = GenerationHolder()
        self.pool = UpstreamPool(
            size=settings.upstream_keepalive_pool_size,
            idle_timeout=settings.upstream_keepalive_idle_timeout,
            max_requests=settings.upstream_keepalive_max_requests,
        )
        self.access_log = AccessLog(settings.proxy_access_log, settings.access_log_format)
        #: Tyk's certificate expiry monitor settings, checked before anything starts.
        self.expiry_config = monitor_config(settings)
        #: One connection limit per listener group (the proxy's closes idle keep-alive connections to make room).
        self.limits: dict[str, ConnectionLimit] = {}
        self.metrics = Metrics(node_id=node_id(settings), inventory=self._inventory, limits=self.limits,
                               before_scrape=self._scrape, multiprocess_dir=role.metrics_dir)
        self.metrics.registry.register(ClusterCollector(self))
        #: Failed handshakes of every listener: counted, and logged once per reason and client network per interval.
        self.rejections = HandshakeRejectionLog(settings.rejection_log_interval, metrics=self.metrics.kong)
        #: Warnings, events and webhooks about the live inventory (made in :meth:`run`, with the node's fetch trust).
        self.expiry: ExpiryMonitor | None = None
        #: The certificates of the Admin API and status listeners and the node's fetch trust, read once at start.
        self.node_certificates: tuple[ConfiguredCertificate, ...] = ()
        #: OCSP stapling, client-certificate revocation caches, ACME (runtime/certificate_lifecycle.py).
        self.lifecycle = CertificateLifecycle(self)
        self.builder = GenerationBuilder(settings, offers, staples=self.lifecycle.staples,
                                         challenges=self.lifecycle.challenges)
        self.proxy = Proxy(self.holder, self.pool, self._record, self.lifecycle.crls,
                           ocsp_source=self.lifecycle.client_ocsp, challenges=self.lifecycle.challenges,
                           revocation=self.lifecycle)
        self.http1 = Http1Server(self.proxy)
        # imported and made only when a listener serves HTTP/2 (h2 costs ~1.5 MiB of RSS)
        self._http2: Http2Server | None = None
        #: Trust of the node's own https fetches (``lua_ssl_trusted_certificate``), built at start.
        self.fetch_tls: ssl.SSLContext | None = None
        self.store: Store | None = None
        self.datastore = DatastoreHealth()
        #: Set once the node serves and handles its signals: what the ready file (and a worker's first state) says.
        self.serving = trio.Event()
        #: The last good configuration under prefix (PostgreSQL): what a node starts from without its datastore.
        self.last_good = LastGood(settings)
        self._cached: CachedConfig | None = None
        self.feed = FeedState("none")
        #: This process's shared session-ticket keys (installed on the listener contexts by the builder).
        self.tickets = TicketRing(settings, workers=role.workers)
        #: Non-ASCII TLS server names: one log line per minute instead of a traceback per handshake.
        self.server_name_guard = ServerNameGuard()
        self._lock = trio.Lock()  # one build at a time: reloads and writes
        self.listeners: dict[str, list[Listener]] = {"proxy": [], "admin": [], "status": []}
        self.https_port = 443 if role.https_port is None else role.https_port
        self.started_at = time.time()
        self.installed_at = 0.0

    @property
    def generation(self) -> Generation:
        """The generation the node serves now."""
        return self.holder.current

    def _record(self, conn: ConnectionFacts, ex: Exchange) -> None:
        self.access_log.record(conn, ex)
        self.metrics.record_request(conn, ex)

    def _inventory(self) -> Inventory:
        return self.holder.current.inventory if self.holder.ready else Inventory()

    def _handshakes(self, kind: str) -> HandshakeObserver:
        """The handshake observer of the ``kind`` (proxy, admin, status) listeners: metrics and the rejection log."""
        def observe(_name: str, reason: str | None, conn: ConnectionFacts) -> None:
            if reason is None:
                self.metrics.record_handshake(kind, conn.tls_version, conn.cipher)
            else:
                self.rejections.record(kind, reason, conn.client_ip, sni=conn.sni)
        return observe

    def _scrape(self, metrics: Metrics) -> None:
        """Kong's connection and datastore gauges, read when ``/metrics`` is scraped (nginx's stub_status words:
        ``writing`` a proxied request in flight, ``waiting`` idle keep-alive, ``reading`` the rest)."""
        groups = self.limits.values()
        admitted, active = sum(g.admitted for g in groups), sum(g.active for g in groups)
        writing, waiting = self.proxy.in_flight, len(self.proxy.idle)
        metrics.kong.observe_connections(ConnectionCounts(
            accepted=admitted + sum(g.shed for g in groups), handled=admitted, active=active,
            reading=max(0, active - writing - waiting), writing=writing, waiting=waiting,
            requests=metrics.requests_served))
        metrics.kong.observe_datastore(self.datastore.reachable)

    # --- configuration ----------------------------------------------------------

    def _build(self, entities: Entities, store_version: int | None, previous: Generation | None,
               lazy: dict[Any, ssl.SSLContext]) -> Generation:
        """Read the files the settings name and compile a generation (blocking: worker thread)."""
        files = read_file_certificates(self.settings, now=int(time.time()), entities=entities)
        return self.builder.build(
            entities, default_certificates=files.defaults, extra_certificates=files.extra,
            client_truststore=files.client_truststore, https_port=self.https_port,
            configured_certificates=(*self.node_certificates, *files.configured),
            store_version=store_version, previous=previous, lazy_contexts=lazy,
            stapling_response=files.stapling_response, client_crls=files.client_crls,
            dhparam_file=files.dhparam_file,
        )

    def _read(self) -> tuple[Entities, int | None]:
        """The configuration as committed now (blocking: worker thread)."""
        if self.store is not None:
            return self.store.load_versioned()
        if self._cached is not None:  # started while the datastore was unreachable
            return self._cached.entities, self._cached.version
        return read_entities(self.settings, now=int(time.time())), None

    async def _build_in_thread(self, entities: Entities, store_version: int | None) -> Generation:
        previous = self.holder.current if self.holder.ready else None
        lazy = previous.server_tls.lazy_contexts() if previous is not None else {}  # copied on the loop
        return await trio.to_thread.run_sync(self._build, entities, store_version, previous, lazy)

    def _install(self, generation: Generation) -> None:
        self.holder.install(generation)
        self.installed_at = time.time()
        self.lifecycle.installed(generation)
        self.metrics.observe_generation(generation)
        if self.role.on_install is not None:
            self.role.on_install(generation)
        for warning in generation.snapshot.warnings if self.role.primary else ():  # once per node, not per worker
            log.warning("%s", warning)
        if self.expiry is not None:
            self.expiry.recheck()  # a certificate a write added gets its event now, not within the hour

    async def load(self) -> Generation:
        """Read the configuration, build its generation off the loop and install it.

        Raises:
            ConfigError: the configuration cannot be served (the current one stays).
            StoreError: the datastore failed (the current one stays).
        """
        async with self._lock:
            entities, version = await trio.to_thread.run_sync(self._read)
            generation = await self._build_in_thread(entities, version)
            self._install(generation)
            if self.store is not None:
                self._remember(entities, version)
        if self.expiry is not None:
            self.expiry.warn()
        return generation

    def _remember(self, entities: Entities, version: int | None) -> None:
        """Cache a configuration served from the datastore (the primary process of a PostgreSQL node)."""
        self._cached = None  # the datastore answers again: the cache is no longer what is served
        if self.role.primary:
            self.last_good.offer(entities, version)

    async def reload(self) -> bool:
        """:meth:`load`, never raising: a refused configuration or a failed datastore keeps the current one.

        Returns:
            Whether a new generation was installed.
        """
        try:
            await self._refresh_tickets()
            generation = await self.load()
        except ConfigError as exc:
            log.error("reload failed, still serving the previous configuration:\n%s", exc)
            return False
        except StoreError as exc:
            self.datastore.failed(exc, time.time())
            return False
        if self.store is not None:
            self.datastore.recovered(time.time())
        log.log(NOTICE, "configuration reloaded (generation %d, hash %s)", generation.number, generation.config_hash)
        return True

    async def _refresh_tickets(self) -> None:
        """Re-read nginx's ticket key files (SIGHUP rotates them) or the datastore's ring.

        Raises:
            ConfigError: an unreadable or malformed ticket key file.
        """
        await trio.to_thread.run_sync(self.tickets.read_files)
        await self.tickets.try_sync(self.store)

    async def write(self, apply: Callable[[Entities], tuple[T, Entities | None]]) -> T:
        """Apply a change to the latest committed configuration: compile, commit (compare-and-swap), install.

        ``apply`` is pure: given a configuration it returns its answer and the new
        configuration (``None``: nothing to write).  It may run more than once
        when other nodes or processes commit meanwhile; each run sees the latest.

        Raises:
            ConfigError: the new configuration cannot be served (nothing was written).
            WriteConflict: another writer changed an entity this write changes too.
            StoreError: the datastore failed (nothing was written).
        """
        async with self._lock:
            store = self.store
            if store is None and self.settings.database != "off":
                raise StoreError(f"the datastore is unreachable ({self.datastore.error}); serving the "
                                 "configuration cached under prefix, which cannot be changed")
            if store is not None:
                await trio.to_thread.run_sync(store.acquire_writer)
            try:
                return await self._write_locked(apply)
            finally:
                if store is not None:
                    with trio.CancelScope(shield=True):
                        await trio.to_thread.run_sync(store.release_writer)

    async def _write_locked(self, apply: Callable[[Entities], tuple[T, Entities | None]]) -> T:
        base, version = await trio.to_thread.run_sync(self._latest)
        for _attempt in range(MAX_WRITE_ATTEMPTS):
            answer, wanted = apply(base)
            if wanted is None:
                return answer
            generation = await self._build_in_thread(wanted, version)
            if self.store is None:  # database: off has no writes; kept for embedding and tests
                self._install(generation)
                return answer
            try:
                committed = await trio.to_thread.run_sync(self.store.commit, base, wanted)
            except StoreConflict:
                # A writer that does not take the writer lock (`trio-gw config load`) committed meanwhile.
                latest, version = await trio.to_thread.run_sync(self.store.load_versioned)
                if _overlap(base, wanted, latest):
                    raise WriteConflict("the entity was changed by another writer meanwhile; "
                                        "read it again and retry") from None
                base = latest  # others changed other entities: re-apply on top of them
                continue
            self._install(replace(generation, store_version=committed))
            self.datastore.recovered(time.time())
            self._remember(wanted, committed)
            return answer
        raise WriteConflict(f"other writers kept committing first ({MAX_WRITE_ATTEMPTS} attempts); retry")

    def _latest(self) -> tuple[Entities, int | None]:
        """The latest committed configuration: the current generation's when the datastore has not moved."""
        current = self.holder.current
        if self.store is None or self.store.version() == current.store_version:
            return current.entities, current.store_version
        return self.store.load_versioned()


    async def _watch_store(self) -> None:
        """Follow the datastore: its change feed, polling as the fallback (``runtime/watch.py``).

        Never raises: a failing datastore is retried with backoff while the node
        serves its last generation; a node that started from its cached
        configuration reconnects first.
        """
        await keep_datastore(self)

    # --- listeners --------------------------------------------------------------

    def http2(self) -> Http2Server:
        """The HTTP/2 server, made on first use: a node without an HTTP/2 listener never imports h2."""
        if self._http2 is None:
            from trio_gw.net.http2 import Http2Server

            self._http2 = Http2Server(self.proxy, self.http1)
        return self._http2

    async def _bind(self) -> None:
        s = self.settings
        if self.role.serves_proxy:  # a supervisor's proxy connections are its workers' (in /status)
            self.limits["proxy"] = ConnectionLimit(s.max_connections, "proxy", self.proxy.idle)
        admin_limit = self.limits["admin"] = ConnectionLimit(ADMIN_CONNECTIONS, "admin")
        status_limit = self.limits["status"] = ConnectionLimit(STATUS_CONNECTIONS, "status")
        # one for every proxy listener: they share the generation's tickets (a worker's: shared with the others)
        chains = self.role.intermediates if self.role.intermediates is not None else IntermediateCache()
        for warning in http2_flag_warnings(s.proxy_listen, s.admin_listen, s.status_listen):
            log.warning("%s", warning)
        inherited = self.role.proxy_sockets
        for i, addr in enumerate(s.proxy_listen if self.role.serves_proxy else ()):
            http2 = serves_http2(addr, s.enable_http2)
            options: dict[str, Any] = dict(
                name=f"proxy {addr}", handler=self.http2().serve_connection if http2 else self.http1.serve_connection,
                tls=ProxyTls(self.holder, ALPN_H2 if http2 else ALPN_HTTP11) if addr.ssl else None,
                handshake_timeout=s.ssl_handshake_timeout, limit=self.limits["proxy"],
                observe=self._handshakes("proxy"), chains=chains,
            )
            if inherited is not None:  # a worker: the supervisor bound it
                listener = Listener(inherited[i], **options)
            else:
                listener = await open_listener(addr.host, addr.port, reuseport=addr.reuseport, backlog=addr.backlog,
                                               **options)
            self.listeners["proxy"].append(listener)
        ssl_ports = [lst.port for lst, a in zip(self.listeners["proxy"], s.proxy_listen) if a.ssl]
        if ssl_ports and self.role.https_port is None:
            self.https_port = ssl_ports[0]
        if not self.role.serves_control:
            return
        admin = AdminServer(AdminService(self).handle)
        admin_tls = None
        if any(a.ssl for a in s.admin_listen):
            admin_tls = FixedTls(await trio.to_thread.run_sync(admin_tls_context, s))
        for addr in s.admin_listen:
            listener = await open_listener(
                addr.host, addr.port, backlog=addr.backlog, name=f"admin {addr}", handler=admin.serve_connection,
                tls=admin_tls if addr.ssl else None, handshake_timeout=s.ssl_handshake_timeout, limit=admin_limit,
                observe=self._handshakes("admin"),
            )
            self.listeners["admin"].append(listener)
        status = StatusServer(self)
        status_tls = None
        if any(a.ssl for a in s.status_listen):
            status_tls = FixedTls(await trio.to_thread.run_sync(
                listener_tls_context, s, "status_ssl_cert", "Status API"))
        for addr in s.status_listen:
            listener = await open_listener(
                addr.host, addr.port, backlog=addr.backlog, name=f"status {addr}", handler=status.serve_connection,
                tls=status_tls if addr.ssl else None, handshake_timeout=s.ssl_handshake_timeout, limit=status_limit,
                observe=self._handshakes("status"),
            )
            self.listeners["status"].append(listener)

    def _write_ready_file(self) -> None:
        self.prefix.mkdir(parents=True, exist_ok=True)
        listeners: dict[str, list[dict[str, Any]]] = {}
        for kind, items in self.listeners.items():
            listeners[kind] = [{"host": li.host, "port": li.port, "ssl": li.tls is not None} for li in items]
        if self.role.supervisor is not None:
            listeners["proxy"] = self.role.supervisor.proxy_listeners()
        data = {"pid": os.getpid(), "listeners": listeners}
        tmp = self.prefix / (READY_FILE + ".tmp")
        tmp.write_text(json.dumps(data))
        tmp.replace(self.prefix / READY_FILE)

    async def run(self, *, task_status: trio.TaskStatus[Gateway] = trio.TASK_STATUS_IGNORED) -> None:
        """Start, serve until SIGTERM/SIGINT (or cancellation), then drain and stop."""
        check_database_settings(self.settings)
        self.fetch_tls = await trio.to_thread.run_sync(
            outbound_tls_context, self.settings.lua_ssl_trusted_certificate, self.settings.lua_ssl_verify_depth)
        webhook_tls = self.fetch_tls
        if self.role.primary and self.expiry_config.external.webhooks_mtls.enabled:
            webhook_tls = await trio.to_thread.run_sync(webhook_tls_context, self.expiry_config, self.settings)
        self.store, self._cached = await trio.to_thread.run_sync(self.last_good.open)
        if self._cached is not None:
            self.datastore.failed(StoreError("unreachable at start: serving the configuration cached under prefix"),
                                  float(self._cached.written_at))
        await self._refresh_tickets()
        self.builder.server_tls.ticket_keys = self.tickets.keys
        self.server_name_guard.install()
        await self.lifecycle.prepare()
        await self._bind()
        try:
            self.node_certificates = tuple(await trio.to_thread.run_sync(read_node_certificates, self.settings))
            monitor = None
            if self.role.primary:  # warnings, events and webhooks: once per node
                monitor = self.expiry = ExpiryMonitor(self._inventory, self.expiry_config,
                                                      metrics=self.metrics.kong, ssl_context=webhook_tls)
            await self.load()
            if self.role.supervisor is not None:
                await self.role.supervisor.wait_workers_ready()
            for kind, items in self.listeners.items():
                for li in items:
                    log.info("%s listening on %s:%d%s", kind, li.host, li.port, " (ssl)" if li.tls else "")
            async with trio.open_nursery() as connections:
                # idle keep-alive deadlines; stopped with the connections, after the drain
                await connections.start(self.proxy.idle.run)
                connections.start_soon(self.proxy.aborts.run)  # requests whose client left (499)
                async with trio.open_nursery() as accepting:
                    for items in self.listeners.values():
                        for li in items:
                            accepting.start_soon(li.serve, connections)
                    # a worker keeps its handlers through the drain (see _signals); started, so the
                    # handlers are in place before the ready file says SIGTERM may be sent
                    await (connections if self.role.name == "worker" else accepting).start(self._signals, accepting)
                    if monitor is not None:
                        await accepting.start(monitor.run)
                    accepting.start_soon(self.rejections.run)
                    await accepting.start(self.lifecycle.serve)
                    accepting.start_soon(self.pool.run)
                    connections.start_soon(self.access_log.run)  # stopped with the connections, after the drain
                    if self.settings.database != "off":
                        accepting.start_soon(self._watch_store)
                        accepting.start_soon(self.last_good.serve)
                    if self.role.name != "worker" or self.tickets.source is TicketSource.DATASTORE:
                        accepting.start_soon(self.tickets.serve_schedule, lambda: self.store, self._ring_published)
                    if self.role.owns_process:
                        frozen = heap.settle()  # start-up is over: what it built stays (see runtime/heap.py)
                        log.debug("cyclic collector settled: %d objects frozen, young threshold %d",
                                  frozen, heap.YOUNG_THRESHOLD)
                    # Last: a process manager may stop the node the moment the file is there, and
                    # SIGTERM before the handlers above would kill it instead of draining it.
                    self.serving.set()
                    if self.role.primary:
                        self._write_ready_file()
                    task_status.started(self)
                # accepting stopped: drain in-flight requests, then close the rest
                await self._drain(connections)
        finally:
            for items in self.listeners.values():
                for li in items:
                    await li.aclose()
            with trio.CancelScope(shield=True):
                await self.pool.aclose()
            if self.role.primary:
                (self.prefix / READY_FILE).unlink(missing_ok=True)
            self.server_name_guard.uninstall()
            self.access_log.close()
            if self.store is not None:
                self.store.close()

    async def _signals(self, accepting: trio.Nursery, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                       ) -> None:
        with trio.open_signal_receiver(signal.SIGHUP, signal.SIGTERM, signal.SIGINT) as signals:
            task_status.started()
            async for signum in signals:
                if self.role.supervisor is not None:
                    self.role.supervisor.forward_signal(signum)
                if signum == signal.SIGHUP:
                    await self.reload()
                elif accepting.cancel_scope.cancel_called:
                    # A worker gets SIGTERM twice (from its process group, and from its supervisor):
                    # the second must not kill it mid-drain.
                    log.info("received %s again: already stopping", signal.Signals(signum).name)
                else:
                    log.log(NOTICE, "received %s: stopping", signal.Signals(signum).name)
                    accepting.cancel_scope.cancel()
                    if self.role.name != "worker":
                        return

    def _ring_published(self, ring: TicketKeyRing) -> None:
        """The ring changed on schedule: a supervisor sends it to its workers (``database: off``)."""
        if self.role.supervisor is not None:
            self.role.supervisor.publish_ring(ring)

    async def _drain(self, connections: trio.Nursery) -> None:
        """Lose nothing: refuse new clients at once, close idle connections, finish in-flight requests.

        The listening sockets close first, so a client connecting now is refused
        rather than accepted by the kernel and reset later; idle keep-alive
        connections close now (a client never sends its next request into one
        about to close); answers in flight say ``Connection: close`` (HTTP/2:
        GOAWAY); the node stops as soon as the last request is answered, or at
        ``graceful_shutdown_timeout``.
        """
        for items in self.listeners.values():
            for li in items:
                await li.aclose()
        self.proxy.start_draining()
        with trio.move_on_after(self.settings.graceful_shutdown_timeout):
            await trio.sleep(DRAIN_IDLE_GRACE)  # idle connections' grace for a request on its way
            while self.proxy.in_flight or self.proxy.idle:
                await trio.sleep(0.01)
        connections.cancel_scope.cancel()


def _overlap(base: Entities, wanted: Entities, latest: Entities) -> bool:
    """Whether the entities this write changes (base → wanted) were changed by someone else (base → latest)."""
    mine = {(kind, key) for kind, change in diff(base, wanted).items() for key in change.ids()}
    theirs = {(kind, key) for kind, change in diff(base, latest).items() for key in change.ids()}
    return bool(mine & theirs)


def node_id(settings: Settings) -> str:
    """Kong's ``node_id`` label: stable for a node (its host and ``prefix``), shared by its worker processes."""
    where = f"{socket.gethostname()}:{os.path.abspath(settings.prefix)}"
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"trio-gw-node:{where}"))


async def run_gateway(settings: Settings) -> None:
    configure_logging(settings.log_level)
    await Gateway(settings, role=replace(SINGLE_PROCESS, owns_process=True)).run()
