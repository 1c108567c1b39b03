"""The certificate inventory: every certificate parsed once, one fact per role, with its users."""

from __future__ import annotations

import pytest

from trio_gw.errors import CertificateError
from trio_gw.model.entities import SNI, CACertificate, Certificate, Entities, Plugin, Service
from trio_gw.model.inventory import ConfiguredCertificate, Role, Usage, build_inventory, expiry_notes
from trio_gw.testing.pki import EXPIRED_AT, issue, make_ca

ROOT = make_ca(common_name="inventory root")
SERVER = issue(ROOT, "api.example", not_after=2_000_000_000)
CLIENT = issue(ROOT, "client.example")
NOW = 1_900_000_000


def _entities() -> Entities:
    cert = Certificate(id="c1", cert=SERVER.chain_pem(), key=SERVER.key_pem())
    client = Certificate(id="c2", cert=CLIENT.chain_pem(), key=CLIENT.key_pem())
    return Entities(
        certificates={"c1": cert, "c2": client},
        snis={"s1": SNI(id="s1", name="api.example", certificate="c1")},
        ca_certificates={"ca1": CACertificate(id="ca1", cert=ROOT.cert_pem())},
        services={"svc": Service(id="svc", host="up.example", name="orders", protocol="https",
                                 client_certificate="c2", ca_certificates=("ca1",))},
        plugins={"p1": Plugin(id="p1", name="mtls-auth", config={"ca_certificates": ["ca1"]})},
    )


def test_each_role_is_one_fact_with_its_users() -> None:
    inventory = build_inventory(_entities())
    server = inventory.facts["certificate:c1"]
    assert server.role is Role.SERVER and server.used_by == (Usage("sni", "s1", "api.example"),)
    assert server.info.dns_names == ("api.example",) and server.info.not_after == 2_000_000_000
    client = inventory.facts["certificate:c2:upstream"]
    assert client.role is Role.UPSTREAM_CLIENT and client.used_by == (Usage("service", "svc", "orders"),)
    ca = inventory.facts["ca_certificate:ca1"]
    assert ca.role is Role.CA
    assert set(ca.used_by) == {Usage("plugin", "p1", "mtls-auth"), Usage("service", "svc", "orders")}
    assert "certificate:c1:upstream" not in inventory.facts  # never presented to an upstream
    assert [f.key for f in inventory.for_entity("c2")] == ["certificate:c2", "certificate:c2:upstream"]


def test_configured_certificates_keep_their_key_and_source() -> None:
    item = ConfiguredCertificate("setting:ssl_cert[0]", Role.SERVER, "ssl_cert[0] (server.pem)", SERVER.chain_pem(),
                                 (Usage("setting", "ssl_cert"),))
    facts = build_inventory(Entities(), [item]).facts["setting:ssl_cert[0]"]
    assert facts.label_id == "setting:ssl_cert[0]" and facts.source == "ssl_cert[0] (server.pem)"
    bad = ConfiguredCertificate("setting:ssl_cert[1]", Role.SERVER, "ssl_cert[1]", "not a certificate")
    with pytest.raises(CertificateError):
        build_inventory(Entities(), [bad])


def test_expiring_and_notes() -> None:
    inventory = build_inventory(_entities())
    soon = {f.key for f in inventory.expiring(NOW, 200_000_000)}
    assert soon == {"certificate:c1"}  # the others run to the year 3000
    info = inventory.facts["certificate:c1"].info
    assert expiry_notes(info, now=NOW, warn_days=30) == ()
    assert expiry_notes(info, now=2_000_000_000 - 5 * 86_400, warn_days=30) == (
        "expires in 5 days (2033-05-18T03:33:20Z)",)
    expired = issue(ROOT, "old.example", not_before=EXPIRED_AT - 86_400, not_after=EXPIRED_AT)
    old = build_inventory(Entities(certificates={"o": Certificate(id="o", cert=expired.chain_pem(), key="")}))
    assert expiry_notes(old.facts["certificate:o"].info, now=NOW, warn_days=30) == (
        "expired on 2024-01-01T00:00:00Z",)
