"""Every certificate the gateway depends on, parsed once, with its role and who uses it.

Theory of operation
-------------------
A certificate reaches the gateway in many ways; :func:`build_inventory` turns
all of them into :class:`CertificateFacts`, one per certificate *and role* (an
entity serving clients and presented to an upstream is two facts), each parsed
exactly once: subject, issuer, names, fingerprint, validity and key type
(:class:`~trio_gw.pki.info.CertificateInfo`), plus who uses it.

==========================================  ===============  ===========================================
where it is configured                      role             key (stable across reloads and nodes)
==========================================  ===============  ===========================================
Certificate entity (SNIs, SAN/CN match)     server / acme    ``certificate:<id>``
its ``cert_alt`` (second key type)          server / acme    ``certificate:<id>:alt``
named by services (``client_certificate``,  upstream_client  ``certificate:<id>:upstream``
``certificates``) or ``upstream_certificates``
named by mtls-auth credentials              consumer         ``certificate:<id>:consumer``
(``certificate: <id>``), mtls-allowlist
a CA one named by mtls-allowlist            ca               ``certificate:<id>:ca``
CA certificate entity                       ca               ``ca_certificate:<id>``
mtls-auth credential with its certificate   consumer         ``credential:<id>``
Kong's legacy ``ssl`` plugin                server           ``ssl-plugin:<plugin id>``
settings files (``ssl_cert``, CA bundles    per setting      ``setting:<name>[<i>]`` (bundles:
...; see ``tls.certificate_settings``)                       ``setting:<name>[<i>][<n>]``)
==========================================  ===============  ===========================================

A Certificate entity tagged :data:`ACME_TAG` is managed by an ACME client: its
server fact has role ``acme`` instead of ``server`` (same key, so a renewal
keeps its history).  Users (:class:`Usage`) are the entities and settings that
reference a certificate, plus the routes reached through them: routes whose
``snis`` name one of its SNIs, routes of the services using it, and the scope
(route, service, consumer) of the plugins naming it.  A route matched only by
``hosts`` is not listed: which certificate it gets depends on the client's SNI.

The inventory is computed when a generation is built, off the event loop; the
expiry gauges, warnings, events, ``/status`` and the Admin API's inventory read
these facts and never parse PEM again.  Certificates configured by files are
handed in already read, as :class:`ConfiguredCertificate`, so this module stays
pure.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Protocol

from trio_gw.model.entities import Entities, Plugin
from trio_gw.pki.info import CertificateInfo, describe_certificate, format_timestamp
from trio_gw.pki.parse import parse_certificates

__all__ = [
    "ACME_TAG",
    "CertificateFacts",
    "ConfiguredCertificate",
    "Inventory",
    "Role",
    "Usage",
    "build_inventory",
    "expiry_notes",
]

#: The tag an ACME client puts on the Certificate entities it manages (issue 15 writes them; the
#: inventory reports them with role ``acme``).
ACME_TAG: Final = "acme"


class Role(enum.Enum):
    """What the gateway does with a certificate (the ``role`` label of the expiry gauge)."""

    SERVER = "server"
    UPSTREAM_CLIENT = "upstream_client"
    CA = "ca"
    CONSUMER = "consumer"
    ACME = "acme"


@dataclass(frozen=True)
class Usage:
    """One user of a certificate: ``("sni", id, "api.example")``, ``("service", id, "orders")``,
    ``("plugin", id, "mtls-auth")``, ``("setting", "ssl_cert", None)``..."""

    kind: str
    id: str
    name: str | None = None


@dataclass(frozen=True)
class ConfiguredCertificate:
    """A certificate the settings name (already read from its file): ``ssl_cert[0]``, ``ssl_certificates[1]``...

    ``pem`` is the certificate chain; only its first certificate is described.
    ``entity_id`` set means the setting names a store Certificate entity
    (``ssl_certificates: [<id>]``, ``upstream_certificates: {host: <id>}``): the
    item then adds its ``usage`` to that entity's fact for ``role`` instead of
    being a fact of its own (``key`` and ``pem`` are not used).
    """

    key: str
    role: Role
    source: str
    pem: str
    usage: tuple[Usage, ...] = ()
    entity_id: str | None = None


@dataclass(frozen=True)
class CertificateFacts:
    """One certificate in one role, parsed once."""

    key: str
    role: Role
    #: Where it is configured, for people: ``certificate entity``, ``ssl_cert[0] (/etc/gw/server.pem)``...
    source: str
    info: CertificateInfo
    entity_id: str | None = None
    used_by: tuple[Usage, ...] = field(default=())

    @property
    def label_id(self) -> str:
        """The ``certificate`` label of metrics: the entity id, or the key for settings."""
        return self.entity_id or self.key


@dataclass(frozen=True)
class Inventory:
    """Every :class:`CertificateFacts` of one configuration, by key."""

    facts: Mapping[str, CertificateFacts] = field(default_factory=dict)

    def __iter__(self) -> Iterator[CertificateFacts]:
        return iter(self.facts.values())

    def __len__(self) -> int:
        return len(self.facts)

    def of_role(self, role: Role) -> tuple[CertificateFacts, ...]:
        """Every certificate in ``role``, in configuration order."""
        return tuple(f for f in self.facts.values() if f.role is role)

    def for_entity(self, entity_id: str) -> tuple[CertificateFacts, ...]:
        """The facts of one Certificate or CA certificate entity (one per role it plays)."""
        return tuple(f for f in self.facts.values() if f.entity_id == entity_id)

    def expiring(self, now: int, within_seconds: int) -> tuple[CertificateFacts, ...]:
        """Certificates whose ``not_after`` falls before ``now + within_seconds`` (expired ones included)."""
        return tuple(f for f in self.facts.values() if f.info.not_after < now + within_seconds)


def expiry_notes(info: CertificateInfo, *, now: int, warn_days: int) -> tuple[str, ...]:
    """The non-fatal validity facts worth telling: not valid yet, expired, expiring soon.

    Args:
        info: the parsed certificate.
        now: current Unix time.
        warn_days: warn when fewer whole days than this remain.

    Returns:
        Messages such as ``"expires in 12 days (2025-01-13T00:00:00Z)"``; empty when all is well.
    """
    notes = []
    if info.is_not_yet_valid(now):
        notes.append(f"not valid before {format_timestamp(info.not_before)}")
    if info.is_expired(now):
        notes.append(f"expired on {format_timestamp(info.not_after)}")
    elif info.days_to_expiry(now) < warn_days:
        notes.append(f"expires in {info.days_to_expiry(now)} days ({format_timestamp(info.not_after)})")
    return tuple(notes)


_Uses = dict[tuple[str, Role], list[Usage]]


class _Add(Protocol):
    """The ``add`` closure of :func:`_users`: record users of an entity in a role."""

    def __call__(self, entity_id: str, role: Role, /, *found: Usage) -> None: ...


def build_inventory(entities: Entities, configured: Sequence[ConfiguredCertificate] = ()) -> Inventory:
    """Describe every certificate of ``entities`` and ``configured`` in each role it plays.

    Args:
        entities: the configuration (validated: every PEM in it parses).
        configured: certificates named by settings, already read
            (``tls.certificate_settings.parse_configured_certificates``).

    Returns:
        The inventory, in configuration order: settings first, then entities.

    Raises:
        CertificateError: a configured certificate holds no parsable certificate.
    """
    described: dict[str, CertificateInfo] = {}  # one parse per distinct PEM, whatever its roles

    def describe(pem: str) -> CertificateInfo:
        info = described.get(pem)
        if info is None:
            info = described[pem] = describe_certificate(parse_certificates(pem)[0])
        return info

    facts: dict[str, CertificateFacts] = {}
    uses = _users(entities)
    for item in configured:
        if item.entity_id is not None:
            uses.setdefault((item.entity_id, item.role), []).extend(item.usage)
        else:
            facts[item.key] = CertificateFacts(item.key, item.role, item.source, describe(item.pem), None, item.usage)
    for cert in entities.certificates.values():
        server = Role.ACME if ACME_TAG in cert.tags else Role.SERVER
        server_uses = _unique(uses.get((cert.id, Role.SERVER), ()))
        facts[f"certificate:{cert.id}"] = CertificateFacts(
            f"certificate:{cert.id}", server, "certificate entity", describe(cert.cert), cert.id, server_uses)
        if cert.cert_alt:
            facts[f"certificate:{cert.id}:alt"] = CertificateFacts(
                f"certificate:{cert.id}:alt", server, "certificate entity (cert_alt)", describe(cert.cert_alt),
                cert.id, server_uses)
        for role, suffix in ((Role.UPSTREAM_CLIENT, "upstream"), (Role.CONSUMER, "consumer"), (Role.CA, "ca")):
            if (cert.id, role) in uses:
                key = f"certificate:{cert.id}:{suffix}"
                facts[key] = CertificateFacts(key, role, "certificate entity", describe(cert.cert), cert.id,
                                              _unique(uses[(cert.id, role)]))
    for ca in entities.ca_certificates.values():
        key = f"ca_certificate:{ca.id}"
        facts[key] = CertificateFacts(key, Role.CA, "CA certificate entity", describe(ca.cert), ca.id,
                                      _unique(uses.get((ca.id, Role.CA), ())))
    for cred in entities.credentials.values():
        if cred.kind == "mtls_auth" and cred.certificate is not None and cred.status != "revoked":
            key = f"credential:{cred.id}"
            facts[key] = CertificateFacts(key, Role.CONSUMER, "mtls-auth credential", describe(cred.certificate),
                                          None, (_consumer(entities, cred.consumer), Usage("credential", cred.id)))
    for plugin in entities.plugins.values():
        if plugin.name == "ssl" and isinstance(plugin.config.get("cert"), str):
            key = f"ssl-plugin:{plugin.id}"
            facts[key] = CertificateFacts(key, Role.SERVER, "ssl plugin", describe(plugin.config["cert"]), None,
                                          _unique([Usage("plugin", plugin.id, plugin.name), *_scope(entities, plugin)]))
    return Inventory(facts)


def _users(entities: Entities) -> _Uses:
    """Who uses each Certificate / CA certificate entity, by ``(entity id, role)``."""
    uses: _Uses = {}

    def add(entity_id: str, role: Role, *found: Usage) -> None:
        uses.setdefault((entity_id, role), []).extend(found)

    for sni in entities.snis.values():
        routes = [Usage("route", r.id, r.name) for r in entities.routes.values() if sni.name in r.snis]
        add(sni.certificate, Role.SERVER, Usage("sni", sni.id, sni.name), *routes)
    for service in entities.services.values():
        served = (Usage("service", service.id, service.name), *_routes_of(entities, service.id))
        for cid in _client_certificates(service.client_certificate, service.client_certificate_alternates):
            add(cid, Role.UPSTREAM_CLIENT, *served)
        for cid in service.ca_certificates:
            add(cid, Role.CA, *served)
    for plugin in entities.plugins.values():
        _plugin_users(entities, plugin, add)
    for cred in entities.credentials.values():
        if cred.kind != "mtls_auth" or cred.status == "revoked":
            continue
        owner = (_consumer(entities, cred.consumer), Usage("credential", cred.id))
        if cred.certificate_id is not None:
            add(cred.certificate_id, Role.CONSUMER, *owner)
        if cred.ca_certificate is not None:
            add(cred.ca_certificate, Role.CA, *owner)
    return uses


def _plugin_users(entities: Entities, plugin: Plugin, add: _Add) -> None:
    """CA certificates a plugin trusts (``ca_certificates``) and mtls-allowlist entries."""
    this = (Usage("plugin", plugin.id, plugin.name), *_scope(entities, plugin))
    named = plugin.config.get("ca_certificates") or ()
    if isinstance(named, (list, tuple)):
        for cid in named:
            add(str(cid), Role.CA, *this)
    if plugin.name != "mtls-allowlist":
        return
    for entry in plugin.config.get("certificates") or ():
        entry = str(entry)
        if entry in entities.ca_certificates:
            add(entry, Role.CA, *this)
        elif entry in entities.certificates:  # a leaf admits exactly itself; a CA certificate what it issued
            leaf = entities.certificates[entry]
            is_ca = describe_certificate(parse_certificates(leaf.cert)[0]).is_ca
            add(entry, Role.CA if is_ca else Role.CONSUMER, *this)


def _scope(entities: Entities, plugin: Plugin) -> list[Usage]:
    """The route, service (with its routes) and consumer a plugin is scoped to."""
    found: list[Usage] = []
    if plugin.route is not None and plugin.route in entities.routes:
        found.append(Usage("route", plugin.route, entities.routes[plugin.route].name))
    if plugin.service is not None and plugin.service in entities.services:
        found.append(Usage("service", plugin.service, entities.services[plugin.service].name))
        found.extend(_routes_of(entities, plugin.service))
    if plugin.consumer is not None:
        found.append(_consumer(entities, plugin.consumer))
    return found


def _routes_of(entities: Entities, service_id: str) -> list[Usage]:
    return [Usage("route", r.id, r.name) for r in entities.routes.values() if r.service == service_id]


def _consumer(entities: Entities, consumer_id: str) -> Usage:
    consumer = entities.consumers.get(consumer_id)
    name = (consumer.username or consumer.custom_id) if consumer is not None else None
    return Usage("consumer", consumer_id, name)


def _client_certificates(first: str | None, alternates: Iterable[str]) -> Iterator[str]:
    if first is not None:
        yield first
    yield from alternates


def _unique(found: Iterable[Usage]) -> tuple[Usage, ...]:
    """Users in first-seen order, each once."""
    return tuple(dict.fromkeys(found))
