"""The generation: everything the data plane needs for one configuration, swapped as one reference.

Theory of operation
-------------------
A :class:`Generation` is immutable and complete: the compiled snapshot (route
index, SNI index, plugins per route, client-certificate policy), the typed
settings, every certificate parsed once (the inventory), the server TLS
contexts of every ALPN offer, and every service's upstream plan with its pool
key computed up front.  :class:`GenerationBuilder` builds one off the event
loop (``trio.to_thread.run_sync``), reusing what the previous generation
compiled (contexts are cached by content or profile, so unchanged certificates
and services keep their contexts, their session tickets and their pooled
connections).  The runtime then swaps one reference (:class:`GenerationHolder`).

Who reads which generation:

* a connection pins the generation current at accept for its handshake (the
  listener attaches its server contexts to the connection; the SNI callback
  reads them there);
* a request pins the generation current when its head arrives, and takes its
  route, plugins, upstream plan and pool key from it — never from whatever is
  live later, so a service deleted mid-request cannot change how that request
  is sent.

The builder's caches are touched by the builder's thread only; builds are
serialised by the runtime.  Nothing here runs per request.
"""

from __future__ import annotations

import itertools
import ssl
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from trio_gw.errors import CertificateError, ConfigError
from trio_gw.model.entities import Certificate, Entities
from trio_gw.model.inventory import ConfiguredCertificate, Inventory
from trio_gw.net.acme_challenges import ChallengeStore
from trio_gw.net.contexts import ALPN_HTTP11
from trio_gw.net.tls_client import UpstreamPlan, UpstreamPlanner
from trio_gw.net.tls_server import Alpn, CertKey, ServerContexts, ServerTlsBuilder
from trio_gw.plugins.ocsp_cache import OcspCache
from trio_gw.settings import Settings
from trio_gw.snapshot import Snapshot, build_snapshot

__all__ = ["Generation", "GenerationBuilder", "GenerationHolder", "ProxyTls"]


@dataclass(frozen=True, eq=False)
class Generation:
    """One configuration, compiled for the data plane (see the module docstring)."""

    number: int
    settings: Settings
    snapshot: Snapshot
    server_tls: ServerContexts
    upstreams: Mapping[str, UpstreamPlan]
    #: The datastore version it was built from (``None``: the declarative file).
    store_version: int | None
    #: Unix time it was built at.
    built_at: float

    @property
    def inventory(self) -> Inventory:
        """Every certificate of this configuration, parsed once, by role."""
        return self.snapshot.inventory

    @property
    def config_hash(self) -> str:
        return self.snapshot.config_hash

    @property
    def entities(self) -> Entities:
        return self.snapshot.entities


class GenerationBuilder:
    """Builds generations for one node (blocking: call from a worker thread, one build at a time).

    Args:
        settings: the node settings (fixed for the process).
        alpn_offers: the ALPN lists the node's ssl proxy listeners offer.
        staples: the node's OCSP stapling cache (only read by what is built; the loop fills it).
        challenges: where the node's ACME issuer publishes tls-alpn-01 answers.
    """

    def __init__(
        self, settings: Settings, alpn_offers: Iterable[Alpn] = (ALPN_HTTP11,), *,
        staples: OcspCache | None = None, challenges: ChallengeStore | None = None,
    ) -> None:
        self.settings = settings
        self.server_tls = ServerTlsBuilder(alpn_offers, staples=staples, challenges=challenges)
        self.upstreams = UpstreamPlanner()
        self._numbers = itertools.count(1)

    def build(
        self,
        entities: Entities,
        *,
        default_certificates: Sequence[Certificate] = (),
        extra_certificates: Sequence[Certificate] = (),
        client_truststore: Sequence[str] = (),
        configured_certificates: Sequence[ConfiguredCertificate] = (),
        https_port: int = 443,
        store_version: int | None = None,
        previous: Generation | None = None,
        lazy_contexts: Mapping[CertKey, ssl.SSLContext] = {},
        stapling_response: bytes | None = None,
        client_crls: Sequence[bytes] = (),
        dhparam_file: str | None = None,
    ) -> Generation:
        """Compile ``entities`` (and the certificates the settings name, already read) into a generation.

        Args:
            entities: the configuration.
            default_certificates: the ``ssl_cert`` pairs.
            extra_certificates: Tyk's ``ssl_certificates`` files.
            client_truststore: the ``ssl_client_certificate`` CA certificates (PEM each).
            configured_certificates: every certificate file the settings name, read, as
                inventory items (the inventory's settings part; ``runtime.certificate_files``).
            https_port: the port https redirects point at.
            store_version: the datastore version ``entities`` were read at.
            previous: the current generation, whose compiled parts are reused.
            lazy_contexts: ``previous.server_tls.lazy_contexts()``, copied on the loop.
            stapling_response: the contents of ``ssl_stapling_file``.
            client_crls: the contents of the ``ssl_crl`` files.
            dhparam_file: the contents of the file ``ssl_dhparam`` names, when it names one.

        Raises:
            ConfigError: the configuration cannot be served (nothing changes).
        """
        now = time.time()
        snapshot = build_snapshot(
            self.settings, entities, default_certificates=default_certificates,
            extra_certificates=extra_certificates, client_truststore=client_truststore,
            https_port=https_port, configured=configured_certificates, stapling_response=stapling_response,
            client_crls=client_crls, dhparam_file=dhparam_file, now=now,
        )
        try:
            server_tls = self.server_tls.build(snapshot, previous.server_tls if previous else None, lazy_contexts)
            upstreams = self.upstreams.plans(snapshot, now=int(now))
        except CertificateError as exc:
            raise ConfigError(str(exc), path="certificates") from exc
        return Generation(next(self._numbers), self.settings, snapshot, server_tls, upstreams, store_version, now)


class GenerationHolder:
    """The one swapped reference: the generation the node serves now."""

    def __init__(self, generation: Generation | None = None) -> None:
        self._current = generation

    @property
    def current(self) -> Generation:
        assert self._current is not None, "no generation was installed yet"
        return self._current

    def install(self, generation: Generation) -> None:
        """Make ``generation`` current (one reference swap; in-flight work keeps the one it pinned)."""
        self._current = generation

    @property
    def ready(self) -> bool:
        return self._current is not None


class ProxyTls:
    """A proxy listener's TLS source: the listener context of the generation current at accept."""

    def __init__(self, holder: GenerationHolder, alpn: Alpn) -> None:
        self.holder = holder
        self.alpn = alpn

    def context_for_accept(self) -> tuple[ssl.SSLContext, object | None]:
        tls = self.holder.current.server_tls
        return tls.listener_context(self.alpn), tls
