"""The snapshot: settings + entities compiled into one immutable, indexed runtime view.

Everything the data plane consults per request or per handshake is here, as
dict lookups: the route index, the SNI index, certificates by id, trusted
networks, the downstream TLS policy.  A change (declarative reload, Admin API
write, another node's notification) builds a new ``Snapshot`` off the event
loop and swaps one reference; in-flight requests finish on the one they
started with.  Building is pure: time and file contents are parameters.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from cryptography import x509

from trio_gw.errors import ConfigError
from trio_gw.http.headers import TrustedNetworks
from trio_gw.http.routing import Router
from trio_gw.model.entities import Certificate, Entities
from trio_gw.model.inventory import ConfiguredCertificate, Inventory, build_inventory
from trio_gw.pki.info import describe_certificate
from trio_gw.pki.parse import parse_certificates
from trio_gw.settings import Settings
from trio_gw.tls.downstream import DownstreamTlsPolicy, parse_downstream_policy
from trio_gw.plugins import client_cert_requirements  # (importing the package registers every plugin)
from trio_gw.plugins.acme import acme_config
from trio_gw.plugins.crl_cache import DEFAULT_CRL_HTTP_TIMEOUT, DEFAULT_CRL_TTL, crl_fetch_settings
from trio_gw.plugins.base import (
    BoundPlugin,
    check_plugins_available,
    plugin_warnings,
    plugins_by_route,
    routes_with_plugin,
)
from trio_gw.tls.listener_client_auth import ListenerClientAuth, with_server_verification
from trio_gw.tls.acme import AcmeConfig
from trio_gw.tls.stapling import StaplingSettings, parse_stapling_policy
from trio_gw.tls.stapling_plan import StaplingPlan, build_stapling_plan
from trio_gw.tls.truststore_revocation import TruststoreRevocation, build_truststore_revocation
from trio_gw.tls.sni import SniCandidate, SniIndex, SniScope


@dataclass(frozen=True)
class Snapshot:
    """The runtime view of one configuration generation."""

    settings: Settings
    entities: Entities
    router: Router
    trusted: TrustedNetworks
    downstream_tls: DownstreamTlsPolicy
    sni_index: SniIndex
    certificates: Mapping[str, Certificate]
    default_certificate_ids: tuple[str, ...]
    https_port: int
    client_auth: ListenerClientAuth
    route_plugins: Mapping[str, tuple[BoundPlugin, ...]]
    config_hash: str
    created_at: float
    #: Every certificate of the configuration, parsed once, by role (expiry, metrics, listings).
    inventory: Inventory = field(default_factory=Inventory)
    #: ``(ttl, timeout)`` of CRL fetches: the strictest revocation-checking plugin's (Kong's defaults otherwise).
    crl_fetch: tuple[float, float] = (DEFAULT_CRL_TTL, DEFAULT_CRL_HTTP_TIMEOUT)
    warnings: tuple[str, ...] = field(default=())
    #: OCSP stapling of every served certificate (``ssl_stapling``): what to ask, how to judge it.
    stapling: StaplingPlan = field(default_factory=StaplingPlan)
    #: nginx's ``ssl_ocsp`` over the server truststore (``ssl_client_certificate``).
    truststore_revocation: TruststoreRevocation = field(default_factory=TruststoreRevocation)
    #: The global ``acme`` plugin's configuration (``None``: no ACME).
    acme: AcmeConfig | None = None


def config_hash(entities: Entities, served: Sequence[Certificate] = ()) -> str:
    """A stable digest of what a configuration serves: equal configurations, equal hash.

    Shown by ``/status`` so drift between nodes and workers is visible.  The
    bookkeeping timestamps (``created_at``/``updated_at``) are left out — a
    declarative file loaded twice stamps them twice — and so is every entity's
    position in its mapping; certificates the settings name (``served``) are
    included by content, since they change what is served.
    """
    h = hashlib.sha256()
    for kind in ("services", "routes", "certificates", "ca_certificates", "snis", "consumers", "plugins",
                 "credentials"):
        items: Mapping[str, Any] = getattr(entities, kind)
        for key in sorted(items):
            h.update(json.dumps([kind, key, repr(_without_timestamps(items[key]))]).encode())
    for cert in sorted(served, key=lambda c: c.id):
        h.update(json.dumps(["file", cert.id, cert.cert, cert.cert_alt]).encode())
    return h.hexdigest()[:32]


def _without_timestamps(entity: Any) -> Any:
    if dataclasses.is_dataclass(entity) and hasattr(entity, "created_at"):
        return dataclasses.replace(entity, created_at=0, updated_at=0)  # type: ignore[type-var]
    return entity


def _san_names(cert: Certificate) -> tuple[str, ...]:
    info = describe_certificate(parse_certificates(cert.cert)[0])
    names = list(info.dns_names) or list(info.common_names)
    return tuple(names)


def build_snapshot(
    settings: Settings,
    entities: Entities,
    *,
    default_certificates: Sequence[Certificate] = (),
    extra_certificates: Sequence[Certificate] = (),
    client_truststore: Sequence[str] = (),
    https_port: int = 443,
    configured: Sequence[ConfiguredCertificate] = (),
    stapling_response: bytes | None = None,
    client_crls: Sequence[bytes] = (),
    dhparam_file: str | None = None,
    now: float,
) -> Snapshot:
    """Compile settings and entities into a :class:`Snapshot`.

    Args:
        settings: the node settings.
        entities: the configuration.
        default_certificates: the ``ssl_cert``/``ssl_cert_key`` pairs, already read.
        extra_certificates: certificates from Tyk's ``ssl_certificates`` files,
            selected by their SAN/CN names like store certificates without SNIs.
        client_truststore: the ``ssl_client_certificate`` CA certificates (PEM,
            one per item), already read: the server truststore of ``ssl_verify_client``.
        https_port: the port https redirects point at.
        configured: every certificate the settings name, already read, as inventory
            items (``runtime.certificate_files``): with the entities' own, the inventory.
        stapling_response: the contents of ``ssl_stapling_file``, if set.
        client_crls: the contents of the ``ssl_crl`` files (the server truststore's CRLs).
        dhparam_file: the contents of the file ``ssl_dhparam`` names, when it names one.
        now: the build time (Unix seconds).

    Raises:
        ConfigError: the combination cannot be served (e.g. a duplicate SNI).
    """
    options = settings.as_mapping()
    if dhparam_file is not None:
        options = {**options, "ssl_dhparam": dhparam_file}
    check_plugins_available(entities, settings.plugins)
    downstream = parse_downstream_policy(options)
    trusted = TrustedNetworks.parse(list(settings.trusted_ips))
    router = Router.build(entities.routes.values(), entities.services)
    certificates: dict[str, Certificate] = dict(entities.certificates)
    for cert in (*default_certificates, *extra_certificates):
        certificates[cert.id] = cert
    _check_store_references(settings, entities)
    names_by_cert: dict[str, list[str]] = {}
    for sni in entities.snis.values():
        names_by_cert.setdefault(sni.certificate, []).append(sni.name)
    candidates = []
    orders = _certificate_order(settings, entities, extra_certificates)
    for cert in (*entities.certificates.values(), *extra_certificates):
        order = orders[cert.id]
        candidates.append(
            SniCandidate(
                certificate_id=cert.id,
                names=tuple(names_by_cert.get(cert.id, ())),
                san_names=_san_names(cert),
                order=order,
            )
        )
    verify_client = settings.ssl_verify_client
    client_auth = with_server_verification(listener_client_auth(entities), verify_client, client_truststore)
    client_auth, announce_warnings = _skip_ca_announcement(client_auth, settings.skip_client_ca_announcement)
    plugin_certs = _ssl_plugin_certificates(entities)
    for order, (cert, hosts) in enumerate(plugin_certs, start=len(candidates)):
        certificates[cert.id] = cert
        candidates.append(SniCandidate(certificate_id=cert.id, san_names=hosts, scope=SniScope.CUSTOM_DOMAIN,
                                       order=order))
    sni_index = SniIndex.build(
        candidates,
        [c.id for c in default_certificates],
        strict=settings.ssl_sni_strict,
    )
    stapling = build_stapling_plan(stapling_settings(settings), certificates.values(),
                                   trusted=_ca_certificates(entities, settings.ssl_stapling),
                                   static_response=stapling_response, now=now)
    truststore_revocation = build_truststore_revocation("ssl_ocsp", settings.ssl_ocsp, client_truststore,
                                                        client_crls, crl_setting="ssl_crl")
    return Snapshot(
        settings=settings,
        entities=entities,
        router=router,
        trusted=trusted,
        downstream_tls=downstream,
        sni_index=sni_index,
        certificates=certificates,
        default_certificate_ids=tuple(c.id for c in default_certificates),
        https_port=https_port,
        client_auth=client_auth,
        route_plugins=plugins_by_route(entities, options),
        config_hash=config_hash(entities, (*default_certificates, *extra_certificates)),
        created_at=now,
        inventory=build_inventory(entities, configured),
        crl_fetch=crl_fetch_settings(entities),
        warnings=(*downstream.warnings(), *sni_index.warnings, *plugin_warnings(entities, options),
                  *_verify_client_warnings(verify_client, client_truststore, client_auth), *announce_warnings,
                  *stapling.warnings),
        stapling=stapling,
        truststore_revocation=truststore_revocation,
        acme=acme_config(entities),
    )


def stapling_settings(settings: Settings) -> StaplingSettings:
    """nginx's and Envoy's stapling settings of the node (validated together when the settings were read)."""
    return StaplingSettings(settings.ssl_stapling, settings.ssl_stapling_verify, settings.ssl_stapling_file,
                            settings.ssl_stapling_responder, parse_stapling_policy(settings.ocsp_staple_policy))


def _ca_certificates(entities: Entities, wanted: bool) -> list[x509.Certificate]:
    """The configured CA certificates, parsed (issuers of served certificates missing from their chains)."""
    if not wanted:
        return []
    return [c for ca in entities.ca_certificates.values() for c in parse_certificates(ca.cert)]


def listener_client_auth(entities: Entities) -> ListenerClientAuth:
    """What every TLS listener asks of clients, from the plugins that need a certificate."""
    return client_cert_requirements(entities)


def _verify_client_warnings(mode: str, truststore: Sequence[str], auth: ListenerClientAuth) -> tuple[str, ...]:
    if mode == "off" and truststore:
        return ("ssl_client_certificate is set but ssl_verify_client is off: the server truststore is not used",)
    if mode != "off" and not auth.anchors_pem:
        return (f"ssl_verify_client is {mode} but nothing is trusted (no ssl_client_certificate, no route "
                "naming a CA or a client certificate): every client certificate is refused",)
    return ()


def _ssl_plugin_certificates(entities: Entities) -> list[tuple[Certificate, tuple[str, ...]]]:
    """Certificates of Kong's legacy ``ssl`` plugin, each with the hosts of its routes."""
    hosts: dict[str, list[str]] = {}
    pairs: dict[str, Certificate] = {}
    for route, plugin in routes_with_plugin(entities, "ssl"):
        if "cert" not in plugin.config:
            continue
        cert_id = f"ssl-plugin:{plugin.id}"
        pairs[cert_id] = Certificate(id=cert_id, cert=plugin.config["cert"], key=plugin.config["key"])
        for host in route.hosts:
            name = host.split(":")[0]
            if name not in hosts.setdefault(cert_id, []):
                hosts[cert_id].append(name)
    return [(pairs[k], tuple(hosts.get(k, ()))) for k in sorted(pairs)]


def _certificate_order(settings: Settings, entities: Entities, extra: Sequence[Certificate]) -> dict[str, int]:
    """Configuration order of the SAN-selected certificates (Tyk: the first loaded is the default).

    The ``ssl_certificates`` entries come first, in their order — files and store
    references alike — then the other store certificates as the store lists them.
    """
    files = {c.id for c in extra}
    fingerprints: dict[str, str] | None = None
    listed: list[str] = []
    for i, entry in enumerate(settings.ssl_certificates):
        cid: str | None = f"ssl_certificates#{i}"
        if cid not in files:
            cid = entry.lower() if entry.lower() in entities.certificates else None
        if cid is None and entry.lower().startswith("sha256:"):
            if fingerprints is None:
                fingerprints = {describe_certificate(parse_certificates(c.cert)[0]).fingerprint_sha256: c.id
                                for c in entities.certificates.values()}
            cid = fingerprints.get(entry.lower().removeprefix("sha256:"))
        if cid is not None and cid not in listed:
            listed.append(cid)
    rest = [c.id for c in (*entities.certificates.values(), *extra) if c.id not in listed]
    return {cid: n for n, cid in enumerate([*listed, *rest])}


def _skip_ca_announcement(auth: ListenerClientAuth, skip: bool) -> tuple[ListenerClientAuth, tuple[str, ...]]:
    """Tyk ``skip_client_ca_announcement``: no CA names in the CertificateRequest, whatever ``send_ca_dn`` says."""
    if not skip or not auth.announce_pem:
        return auth, ()
    generation = hashlib.sha256(f"{auth.generation}\0no CA names".encode()).hexdigest()
    warning = (f"skip_client_ca_announcement is on: the {len(auth.announce_pem)} CA name(s) mtls-auth send_ca_dn "
               "asks for are not announced")
    return replace(auth, announce_pem=(), generation=generation), (warning,)


def _check_store_references(settings: Settings, entities: Entities) -> None:
    by_fingerprint = {}
    for cert in entities.certificates.values():
        by_fingerprint["sha256:" + describe_certificate(parse_certificates(cert.cert)[0]).fingerprint_sha256] = cert.id
    for i, entry in enumerate(settings.ssl_certificates):
        if entry.startswith("sha256:") and entry.lower() not in by_fingerprint:
            raise ConfigError(f"no certificate in the store has fingerprint {entry}", path=f"ssl_certificates[{i}]")
        if len(entry) == 36 and entry.count("-") == 4 and entry.lower() not in entities.certificates:
            raise ConfigError(f"no certificate in the store has id {entry}", path=f"ssl_certificates[{i}]")


__all__ = ["Snapshot", "build_snapshot", "config_hash", "ConfigError"]
