"""Every role of the inventory: consumer credentials, allowlists, cert_alt, ACME, the ssl plugin, settings
references, and the routes reached through SNIs, services and plugin scopes.  Each case sits beside one that
must not produce a fact (or a usage)."""

from __future__ import annotations

from trio_gw.model.credentials import Credential
from trio_gw.model.entities import (
    SNI,
    CACertificate,
    Certificate,
    Consumer,
    Entities,
    Plugin,
    Route,
    Service,
)
from trio_gw.model.inventory import ACME_TAG, ConfiguredCertificate, Role, Usage, build_inventory
from trio_gw.pki.info import describe_certificate
from trio_gw.testing.pki import issue, make_ca

ROOT = make_ca(common_name="roles root")
SERVER = issue(ROOT, "api.example")
SERVER_RSA = issue(ROOT, "api.example", key_kind="rsa")
CLIENT = issue(ROOT, common_name="alice", not_after=2_000_000_000)
OTHER_CLIENT = issue(ROOT, common_name="bob")
SUB_CA = make_ca(issuer=ROOT, common_name="roles sub CA")
ALICE = Consumer(id="u-alice", username="alice")
BOB = Consumer(id="u-bob", custom_id="bob-42")


def _fingerprint(pem: str) -> str:
    from trio_gw.pki.parse import parse_certificates

    return describe_certificate(parse_certificates(pem)[0]).fingerprint_sha256


def test_an_mtls_credential_carrying_its_certificate_is_a_consumer_fact() -> None:
    cred = Credential(id="cr1", kind="mtls_auth", consumer=ALICE.id, certificate=CLIENT.cert_pem(),
                      fingerprint=_fingerprint(CLIENT.cert_pem()))
    revoked = Credential(id="cr2", kind="mtls_auth", consumer=BOB.id, certificate=OTHER_CLIENT.cert_pem(),
                         status="revoked")
    by_name = Credential(id="cr3", kind="mtls_auth", consumer=BOB.id, subject_name="bob")
    inventory = build_inventory(Entities(consumers={ALICE.id: ALICE, BOB.id: BOB},
                                         credentials={c.id: c for c in (cred, revoked, by_name)}))
    fact = inventory.facts["credential:cr1"]
    assert fact.role is Role.CONSUMER and fact.source == "mtls-auth credential"
    assert fact.used_by == (Usage("consumer", ALICE.id, "alice"), Usage("credential", "cr1"))
    assert fact.info.not_after == 2_000_000_000 and fact.label_id == "credential:cr1"
    # a revoked credential never counts; a subject-name credential carries no certificate
    assert set(inventory.facts) == {"credential:cr1"}


def test_a_credential_naming_a_certificate_entity_gives_that_entity_a_consumer_role() -> None:
    cert = Certificate(id="c1", cert=CLIENT.chain_pem(), key=CLIENT.key_pem())
    cred = Credential(id="cr1", kind="mtls_auth", consumer=BOB.id, certificate_id="c1")
    by_fingerprint = Credential(id="cr2", kind="mtls_auth", consumer=BOB.id, fingerprint="ab" * 32)
    inventory = build_inventory(Entities(certificates={"c1": cert}, consumers={BOB.id: BOB},
                                         credentials={"cr1": cred, "cr2": by_fingerprint}))
    fact = inventory.facts["certificate:c1:consumer"]
    assert fact.role is Role.CONSUMER and fact.entity_id == "c1"
    assert fact.used_by == (Usage("consumer", BOB.id, "bob-42"), Usage("credential", "cr1"))
    assert [f.key for f in inventory.for_entity("c1")] == ["certificate:c1", "certificate:c1:consumer"]
    assert not any(k.startswith("credential:") for k in inventory.facts)  # a fingerprint alone has no expiry


def test_a_credential_constrained_to_a_ca_is_a_user_of_that_ca() -> None:
    ca = CACertificate(id="ca1", cert=ROOT.cert_pem())
    cred = Credential(id="cr1", kind="mtls_auth", consumer=ALICE.id, subject_name="alice", ca_certificate="ca1")
    inventory = build_inventory(Entities(ca_certificates={"ca1": ca}, consumers={ALICE.id: ALICE},
                                         credentials={"cr1": cred}))
    assert inventory.facts["ca_certificate:ca1"].used_by == (Usage("consumer", ALICE.id, "alice"),
                                                             Usage("credential", "cr1"))
    unused = build_inventory(Entities(ca_certificates={"ca1": ca}))
    assert unused.facts["ca_certificate:ca1"].used_by == ()


def test_allowlist_entries_are_consumer_leaves_or_cas_with_the_plugin_scope() -> None:
    leaf = Certificate(id="c1", cert=CLIENT.chain_pem(), key=CLIENT.key_pem())
    ca_leaf = Certificate(id="c2", cert=SUB_CA.cert_pem(), key=SUB_CA.key_pem())
    ca = CACertificate(id="ca1", cert=ROOT.cert_pem())
    route = Route(id="r1", name="billing-api", service="s1")
    service = Service(id="s1", host="billing.internal", name="billing")
    plugin = Plugin(id="p1", name="mtls-allowlist", route="r1",
                    config={"certificates": ["c1", "c2", "ca1", "sha256:" + "ab" * 32]})
    inventory = build_inventory(Entities(certificates={"c1": leaf, "c2": ca_leaf}, ca_certificates={"ca1": ca},
                                         routes={"r1": route}, services={"s1": service}, plugins={"p1": plugin}))
    scope = (Usage("plugin", "p1", "mtls-allowlist"), Usage("route", "r1", "billing-api"))
    assert inventory.facts["certificate:c1:consumer"].used_by == scope
    assert inventory.facts["certificate:c1:consumer"].role is Role.CONSUMER
    assert inventory.facts["certificate:c2:ca"].role is Role.CA  # a CA certificate admits what it issued
    assert "certificate:c2:consumer" not in inventory.facts
    assert inventory.facts["ca_certificate:ca1"].used_by == scope
    assert len(inventory) == 5  # c1, c1:consumer, c2, c2:ca, ca1: the fingerprint entry has no certificate


def test_cert_alt_is_a_second_server_fact_with_the_same_users() -> None:
    dual = Certificate(id="c1", cert=SERVER.chain_pem(), key=SERVER.key_pem(),
                       cert_alt=SERVER_RSA.chain_pem(), key_alt=SERVER_RSA.key_pem())
    single = Certificate(id="c2", cert=SERVER.chain_pem(), key=SERVER.key_pem())
    inventory = build_inventory(Entities(certificates={"c1": dual, "c2": single},
                                         snis={"s1": SNI(id="s1", name="api.example", certificate="c1")}))
    alt = inventory.facts["certificate:c1:alt"]
    assert alt.role is Role.SERVER and alt.source == "certificate entity (cert_alt)"
    assert alt.info.key_type == "rsa" and inventory.facts["certificate:c1"].info.key_type == "ec"
    assert alt.used_by == inventory.facts["certificate:c1"].used_by == (Usage("sni", "s1", "api.example"),)
    assert "certificate:c2:alt" not in inventory.facts


def test_an_acme_managed_certificate_has_the_acme_role() -> None:
    managed = Certificate(id="c1", cert=SERVER.chain_pem(), key=SERVER.key_pem(), tags=(ACME_TAG, "prod"))
    uploaded = Certificate(id="c2", cert=SERVER.chain_pem(), key=SERVER.key_pem(), tags=("acme-like",))
    inventory = build_inventory(Entities(certificates={"c1": managed, "c2": uploaded}))
    assert inventory.facts["certificate:c1"].role is Role.ACME
    assert inventory.facts["certificate:c2"].role is Role.SERVER
    assert inventory.of_role(Role.ACME) == (inventory.facts["certificate:c1"],)


def test_the_legacy_ssl_plugin_certificate_is_a_server_fact_with_its_scope() -> None:
    service = Service(id="s1", host="legacy.internal", name="legacy")
    routes = {"r1": Route(id="r1", name="legacy-a", service="s1"), "r2": Route(id="r2", name="other")}
    with_cert = Plugin(id="p1", name="ssl", service="s1", config={"cert": SERVER.chain_pem(), "key": "secret"})
    https_only = Plugin(id="p2", name="ssl", route="r2", config={"only_https": True})
    inventory = build_inventory(Entities(services={"s1": service}, routes=routes,
                                         plugins={"p1": with_cert, "p2": https_only}))
    fact = inventory.facts["ssl-plugin:p1"]
    assert fact.role is Role.SERVER and fact.entity_id is None
    assert fact.used_by == (Usage("plugin", "p1", "ssl"), Usage("service", "s1", "legacy"),
                            Usage("route", "r1", "legacy-a"))
    assert "ssl-plugin:p2" not in inventory.facts


def test_routes_are_users_through_their_snis_and_services() -> None:
    cert = Certificate(id="c1", cert=SERVER.chain_pem(), key=SERVER.key_pem())
    client = Certificate(id="c2", cert=CLIENT.chain_pem(), key=CLIENT.key_pem())
    service = Service(id="s1", host="up.internal", name="orders", protocol="https", client_certificate="c2")
    routes = {
        "r1": Route(id="r1", name="by-sni", snis=("api.example",)),
        "r2": Route(id="r2", name="by-host", hosts=("api.example",)),  # not listed: depends on the client's SNI
        "r3": Route(id="r3", name="orders-api", service="s1"),
    }
    inventory = build_inventory(Entities(
        certificates={"c1": cert, "c2": client}, services={"s1": service}, routes=routes,
        snis={"n1": SNI(id="n1", name="api.example", certificate="c1")}))
    assert inventory.facts["certificate:c1"].used_by == (Usage("sni", "n1", "api.example"),
                                                         Usage("route", "r1", "by-sni"))
    assert inventory.facts["certificate:c2:upstream"].used_by == (Usage("service", "s1", "orders"),
                                                                  Usage("route", "r3", "orders-api"))


def test_a_setting_naming_a_store_certificate_adds_its_usage_to_the_entity() -> None:
    cert = Certificate(id="c1", cert=CLIENT.chain_pem(), key=CLIENT.key_pem())
    by_host = ConfiguredCertificate("setting:upstream_certificates[*.example]", Role.UPSTREAM_CLIENT,
                                    "upstream_certificates.*.example", cert.cert,
                                    (Usage("setting", "upstream_certificates", "*.example"),), entity_id="c1")
    by_tyk = ConfiguredCertificate("setting:ssl_certificates[0]", Role.SERVER, "ssl_certificates[0]", cert.cert,
                                   (Usage("setting", "ssl_certificates"),), entity_id="c1")
    inventory = build_inventory(Entities(certificates={"c1": cert}), [by_host, by_tyk])
    assert inventory.facts["certificate:c1:upstream"].used_by == (
        Usage("setting", "upstream_certificates", "*.example"),)
    assert inventory.facts["certificate:c1"].used_by == (Usage("setting", "ssl_certificates"),)
    assert not any(k.startswith("setting:") for k in inventory.facts)  # merged, never a fact of its own
    unreferenced = build_inventory(Entities(certificates={"c1": cert}))
    assert "certificate:c1:upstream" not in unreferenced.facts


def test_each_user_is_listed_once() -> None:
    ca = CACertificate(id="ca1", cert=ROOT.cert_pem())
    service = Service(id="s1", host="up", name="s", ca_certificates=("ca1", "ca1"))
    inventory = build_inventory(Entities(ca_certificates={"ca1": ca}, services={"s1": service}))
    assert inventory.facts["ca_certificate:ca1"].used_by == (Usage("service", "s1", "s"),)
