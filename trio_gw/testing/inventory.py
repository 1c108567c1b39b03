"""A certificate inventory with every role and a spread of expiries, for tests of the inventory's views.

``sample_view(now)`` builds (with fresh keys, nothing on disk) a configuration
whose certificates expire at known offsets from ``now``, in every role: a
server certificate with an SNI and a route, an ACME one, an upstream client
certificate of a service, a CA trusted by mtls-auth, two consumer credentials
(one critical, one expired), ``ssl_cert`` and a two-CA ``ssl_client_certificate``
bundle from settings, and a certificate whose common name is HTML, to prove
that views show it as text.  Revocation is known for two of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from trio_gw.admin.inventory import CertificateView, RevocationStatus
from trio_gw.model.credentials import Credential
from trio_gw.model.entities import SNI, CACertificate, Certificate, Consumer, Entities, Plugin, Route, Service
from trio_gw.model.inventory import ACME_TAG, ConfiguredCertificate, Role, Usage, build_inventory
from trio_gw.pki.info import fingerprint_sha256
from trio_gw.testing.pki import Issued, issue, make_ca

DAY: Final = 86_400
#: A common name that is markup: a view that renders it as HTML runs its handler.
HOSTILE_CN: Final = '<img src=x onerror="document.body.dataset.pwned=1">'
#: Days to expiry of each certificate of :func:`sample_view`, by inventory key.
EXPIRES_IN_DAYS: Final = {
    "certificate:srv": 5,
    "certificate:acme": 40,
    "certificate:cli": 20,
    "certificate:cli:upstream": 20,
    "certificate:odd": 88,
    "ca_certificate:partner": 400,
    "credential:alice": 2,
    "credential:bob": -3,
    "setting:ssl_cert[0]": 75,
    "setting:ssl_client_certificate[0][0]": 60,
    "setting:ssl_client_certificate[0][1]": 150,
}


@dataclass(frozen=True)
class Sample:
    """The configuration, the settings items and the view built from them."""

    entities: Entities
    configured: tuple[ConfiguredCertificate, ...]
    view: CertificateView


def sample_view(now: int) -> Sample:
    """Build the sample (module docstring) around ``now``.

    Args:
        now: Unix seconds the expiries are counted from.

    Returns:
        The sample.
    """
    root = make_ca(common_name="Sample Root CA", not_before=now - 900 * DAY)

    def leaf(days: int, *names: str, issuer: Issued = root, **options: object) -> Issued:
        return issue(issuer, *names, not_before=now - 60 * DAY, not_after=now + days * DAY, **options)

    days = EXPIRES_IN_DAYS
    srv, acme = leaf(days["certificate:srv"], "api.example"), leaf(days["certificate:acme"], "www.example")
    cli = leaf(days["certificate:cli"], common_name="gateway client")
    odd = leaf(days["certificate:odd"], "odd.example", common_name=HOSTILE_CN)
    partner = make_ca(common_name="Partner CA", not_before=now - 900 * DAY, not_after=now + 400 * DAY)
    alice = leaf(days["credential:alice"], common_name="alice", issuer=partner)
    bob = issue(partner, common_name="bob", not_before=now - 90 * DAY, not_after=now - 3 * DAY)
    entities = Entities(
        certificates={c.id: c for c in (
            Certificate(id="srv", cert=srv.chain_pem(), key=srv.key_pem()),
            Certificate(id="acme", cert=acme.chain_pem(), key=acme.key_pem(), tags=(ACME_TAG,)),
            Certificate(id="cli", cert=cli.chain_pem(), key=cli.key_pem()),
            Certificate(id="odd", cert=odd.chain_pem(), key=odd.key_pem()),
        )},
        snis={"s1": SNI(id="s1", name="api.example", certificate="srv"),
              "s2": SNI(id="s2", name="www.example", certificate="acme")},
        ca_certificates={"partner": CACertificate(id="partner", cert=partner.cert_pem())},
        services={"orders": Service(id="orders", name="orders", host="orders.internal", protocol="https",
                                    client_certificate="cli")},
        routes={"r1": Route(id="r1", name="orders-api", service="orders", snis=("api.example",))},
        consumers={"alice": Consumer(id="alice", username="alice"), "bob": Consumer(id="bob", username="bob")},
        credentials={
            "alice": Credential(id="alice", kind="mtls_auth", consumer="alice", certificate=alice.cert_pem(),
                                fingerprint=fingerprint_sha256(alice.cert)),
            "bob": Credential(id="bob", kind="mtls_auth", consumer="bob", certificate=bob.cert_pem(),
                              fingerprint=fingerprint_sha256(bob.cert)),
        },
        plugins={"p1": Plugin(id="p1", name="mtls-auth", route="r1", config={"ca_certificates": ["partner"]})},
    )
    default = leaf(days["setting:ssl_cert[0]"], "gw.example")
    bundle = (make_ca(common_name="Client CA one", not_before=now - 900 * DAY,
                      not_after=now + days["setting:ssl_client_certificate[0][0]"] * DAY),
              make_ca(common_name="Client CA two", not_before=now - 900 * DAY,
                      not_after=now + days["setting:ssl_client_certificate[0][1]"] * DAY))
    configured = (
        ConfiguredCertificate("setting:ssl_cert[0]", Role.SERVER, "ssl_cert[0] (/etc/trio-gw/server.pem)",
                              default.chain_pem(), (Usage("setting", "ssl_cert"),)),
        *(ConfiguredCertificate(f"setting:ssl_client_certificate[0][{n}]", Role.CA,
                                f"ssl_client_certificate[0] (/etc/trio-gw/clients.pem), certificate {n + 1}",
                                ca.cert_pem(), (Usage("setting", "ssl_client_certificate"),))
          for n, ca in enumerate(bundle)),
    )
    revocation = {
        fingerprint_sha256(srv.cert): RevocationStatus("good", "ocsp", now - 3600, now + 3 * DAY),
        fingerprint_sha256(alice.cert): RevocationStatus("revoked", "crl", now - 600, None, "keyCompromise"),
    }
    view = CertificateView(build_inventory(entities, configured), revocation)
    return Sample(entities, configured, view)
