"""Every certificate the gateway depends on, parsed once, with its role and who uses it.

Theory of operation
-------------------
A certificate reaches the gateway in many ways: a Certificate entity with SNIs
(server), the same entity named by a service (upstream client), a CA
certificate entity named by a plugin or a service (CA), ``ssl_cert`` and Tyk's
``ssl_certificates`` files (server), Kong's legacy ``ssl`` plugin (server)...
:func:`build_inventory` turns all of them into :class:`CertificateFacts`, one
per certificate *and role* (an entity serving clients and presented to an
upstream is two facts), each parsed exactly once: subject, issuer, names,
fingerprint, validity and key type (:class:`~trio_gw.pki.info.CertificateInfo`),
plus the entities and settings that use it.

The inventory is computed when a generation is built, off the event loop; the
expiry gauges, warnings, ``/status`` and Admin API listings read these facts
and never parse PEM again.  Certificates configured by files (settings) are
handed in already read, as :class:`ConfiguredCertificate`, so this module stays
pure.  Keys (``CertificateFacts.key``) are stable across reloads and nodes:
``certificate:<id>``, ``ca_certificate:<id>``, ``setting:<name>[<i>]``,
``ssl-plugin:<plugin id>``.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from trio_gw.model.entities import Entities
from trio_gw.pki.info import CertificateInfo, describe_certificate, format_timestamp
from trio_gw.pki.parse import parse_certificates

__all__ = [
    "CertificateFacts",
    "ConfiguredCertificate",
    "Inventory",
    "Role",
    "Usage",
    "build_inventory",
    "expiry_notes",
]


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
    """

    key: str
    role: Role
    source: str
    pem: str
    usage: tuple[Usage, ...] = ()


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


def build_inventory(entities: Entities, configured: Sequence[ConfiguredCertificate] = ()) -> Inventory:
    """Describe every certificate of ``entities`` and ``configured`` in each role it plays.

    Args:
        entities: the configuration (validated: every PEM in it parses).
        configured: certificates named by settings, already read.

    Returns:
        The inventory.

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
    for item in configured:
        facts[item.key] = CertificateFacts(item.key, item.role, item.source, describe(item.pem), None, item.usage)
    server_uses, client_uses = _certificate_users(entities)
    for cert in entities.certificates.values():
        for role, uses in ((Role.SERVER, server_uses.get(cert.id, ())), (Role.UPSTREAM_CLIENT, client_uses.get(cert.id))):
            if uses is None:
                continue  # never presented to an upstream
            key = f"certificate:{cert.id}" if role is Role.SERVER else f"certificate:{cert.id}:upstream"
            facts[key] = CertificateFacts(key, role, "certificate entity", describe(cert.cert), cert.id, tuple(uses))
    ca_uses = _ca_users(entities)
    for ca in entities.ca_certificates.values():
        key = f"ca_certificate:{ca.id}"
        facts[key] = CertificateFacts(key, Role.CA, "CA certificate entity", describe(ca.cert), ca.id,
                                      tuple(ca_uses.get(ca.id, ())))
    return Inventory(facts)


def _certificate_users(entities: Entities) -> tuple[dict[str, list[Usage]], dict[str, list[Usage]]]:
    """Who uses each Certificate entity as a server certificate (SNIs) and as an upstream client one."""
    server: dict[str, list[Usage]] = {}
    client: dict[str, list[Usage]] = {}
    for sni in entities.snis.values():
        server.setdefault(sni.certificate, []).append(Usage("sni", sni.id, sni.name))
    for service in entities.services.values():
        for cid in _client_certificates(service.client_certificate, service.client_certificate_alternates):
            client.setdefault(cid, []).append(Usage("service", service.id, service.name))
    return server, client


def _client_certificates(first: str | None, alternates: Iterable[str]) -> Iterator[str]:
    if first is not None:
        yield first
    yield from alternates


def _ca_users(entities: Entities) -> dict[str, list[Usage]]:
    """Who trusts each CA certificate entity: plugins naming it, services verifying upstreams with it."""
    users: dict[str, list[Usage]] = {}
    for plugin in entities.plugins.values():
        named = plugin.config.get("ca_certificates") or ()
        if isinstance(named, (list, tuple)):
            for cid in named:
                users.setdefault(str(cid), []).append(Usage("plugin", plugin.id, plugin.name))
    for service in entities.services.values():
        for cid in service.ca_certificates:
            users.setdefault(cid, []).append(Usage("service", service.id, service.name))
    return users
