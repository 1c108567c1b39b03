"""Issue 16's "done when", per role: a certificate 5 days from expiry, whatever configured it, shows in the
warning lines, in the expiry gauge with its role, and fires Tyk's CertificateExpiringSoon event."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from trio_gw.errors import ConfigError
from trio_gw.model.credentials import Credential
from trio_gw.model.entities import SNI, CACertificate, Certificate, Consumer, Entities, Plugin, Service
from trio_gw.model.expiry_monitor import CERTIFICATE_EXPIRING_SOON, check_expiry, expiry_warnings
from trio_gw.model.inventory import ACME_TAG, Inventory, build_inventory
from trio_gw.pki.info import fingerprint_sha256
from trio_gw.runtime.kong_metrics import CertificateExpiryCollector
from trio_gw.testing.pki import Issued, issue, make_ca
from trio_gw.tls.certificate_settings import parse_configured_certificates

DAY = 86_400
NOW = 1_900_000_000
ROOT = make_ca(common_name="roles root", not_before=NOW - 900 * DAY)
OTHER = issue(ROOT, "other.example", not_before=NOW - DAY, not_after=NOW + 900 * DAY)


def _leaf(*names: str, **options: object) -> Issued:
    return issue(ROOT, *names, not_before=NOW - 80 * DAY, not_after=NOW + 5 * DAY, **options)


SOON = _leaf("soon.example", common_name="soon.example")
SOON_CA = make_ca(common_name="soon CA", not_before=NOW - 900 * DAY, not_after=NOW + 5 * DAY)
COMBINED = {"combined.pem": SOON.chain_pem() + SOON.key_pem(), "soon.pem": SOON.chain_pem(),
            "ca.pem": SOON_CA.cert_pem()}


def _read(path: str, where: str) -> str:
    if path not in COMBINED:
        raise ConfigError(f"cannot read {path}", where)
    return COMBINED[path]


@dataclass(frozen=True)
class Case:
    role: str
    key: str
    entities: Entities = Entities()
    settings: tuple[tuple[str, object], ...] = ()


def _entity(**fields: object) -> Certificate:
    return Certificate(id="c1", cert=SOON.chain_pem(), key=SOON.key_pem(), **fields)  # type: ignore[arg-type]


CASES: dict[str, Case] = {
    "server entity": Case("server", "certificate:c1", Entities(
        certificates={"c1": _entity()}, snis={"s": SNI(id="s", name="soon.example", certificate="c1")})),
    "cert_alt": Case("server", "certificate:c1:alt", Entities(certificates={"c1": Certificate(
        id="c1", cert=OTHER.chain_pem(), key=OTHER.key_pem(), cert_alt=SOON.chain_pem(), key_alt=SOON.key_pem())})),
    "ssl_cert": Case("server", "setting:ssl_cert[0]", settings=(("ssl_cert", ("soon.pem",)),)),
    "tyk ssl_certificates": Case("server", "setting:ssl_certificates[0]",
                                 settings=(("ssl_certificates", ("combined.pem",)),)),
    "admin_ssl_cert": Case("server", "setting:admin_ssl_cert[0]", settings=(("admin_ssl_cert", ("soon.pem",)),)),
    "status_ssl_cert": Case("server", "setting:status_ssl_cert[0]", settings=(("status_ssl_cert", ("soon.pem",)),)),
    "ssl plugin": Case("server", "ssl-plugin:p1", Entities(plugins={"p1": Plugin(
        id="p1", name="ssl", config={"cert": SOON.chain_pem(), "key": SOON.key_pem()})})),
    "acme": Case("acme", "certificate:c1", Entities(certificates={"c1": _entity(tags=(ACME_TAG,))})),
    "service client_certificate": Case("upstream_client", "certificate:c1:upstream", Entities(
        certificates={"c1": _entity()},
        services={"s": Service(id="s", host="up", protocol="https", client_certificate="c1")})),
    "client_ssl_cert": Case("upstream_client", "setting:client_ssl_cert", settings=(("client_ssl_cert", "soon.pem"),)),
    "upstream_certificates": Case("upstream_client", "setting:upstream_certificates[*.up.example]",
                                  settings=(("upstream_certificates", {"*.up.example": "combined.pem"}),)),
    "CA entity": Case("ca", "ca_certificate:ca1", Entities(
        ca_certificates={"ca1": CACertificate(id="ca1", cert=SOON_CA.cert_pem())})),
    "ssl_client_certificate": Case("ca", "setting:ssl_client_certificate[0][0]",
                                   settings=(("ssl_client_certificate", ("ca.pem",)),)),
    "lua_ssl_trusted_certificate": Case("ca", "setting:lua_ssl_trusted_certificate[1][0]",
                                        settings=(("lua_ssl_trusted_certificate", ("system", "ca.pem")),)),
    "admin_mtls_ca_certificates": Case("ca", "setting:admin_mtls_ca_certificates[0][0]",
                                       settings=(("admin_mtls_ca_certificates", ("ca.pem",)),)),
    "mtls-auth credential": Case("consumer", "credential:k1", Entities(
        consumers={"u": Consumer(id="u", username="alice")},
        credentials={"k1": Credential(id="k1", kind="mtls_auth", consumer="u", certificate=SOON.cert_pem(),
                                      fingerprint=fingerprint_sha256(SOON.cert))})),
    "allowlist entry": Case("consumer", "certificate:c1:consumer", Entities(
        certificates={"c1": _entity()},
        plugins={"p": Plugin(id="p", name="mtls-allowlist", config={"certificates": ["c1"]})})),
}


def _inventory(case: Case) -> Inventory:
    configured = parse_configured_certificates(dict(case.settings), case.entities, _read)
    return build_inventory(case.entities, configured)


def _gauge(inventory: Inventory) -> Callable[[str], dict[str, str] | None]:
    registry = CollectorRegistry()
    registry.register(CertificateExpiryCollector(lambda: inventory, clock=lambda: float(NOW)))
    text = generate_latest(registry).decode()

    def find(key: str) -> dict[str, str] | None:
        for labels, value in re.findall(r"trio_gw_certificate_expiry_seconds\{(.*)\} (\S+)", text):
            found = dict(re.findall(r'(\w+)="([^"]*)"', labels))
            if found["key"] == key:
                return {**found, "value": value}
        return None

    return find


@pytest.mark.parametrize("name", list(CASES))
def test_five_days_from_expiry_warns_gauges_and_fires(name: str) -> None:
    case = CASES[name]
    inventory = _inventory(case)
    facts = inventory.facts[case.key]
    assert facts.role.value == case.role and facts.info.not_after == NOW + 5 * DAY

    warnings = [w for w in expiry_warnings(inventory, now=NOW, warn_days=30) if f"({facts.info.subject};" in w]
    assert any(w.startswith(f"{case.role} certificate {facts.label_id} ") and "expires in 5 days" in w
               for w in warnings), warnings

    gauge = _gauge(inventory)(case.key)
    assert gauge is not None and gauge["role"] == case.role and float(gauge["value"]) == 5 * DAY

    events = [e for e in check_expiry(inventory, now=NOW, fired={}).events if e.facts.key == case.key]
    assert [e.kind for e in events] == [CERTIFICATE_EXPIRING_SOON]
    meta = events[0].metadata()
    assert meta["days_remaining"] == 5 and meta["role"] == case.role and meta["cert_id"] == facts.label_id


def test_far_from_expiry_nothing_warns_and_nothing_fires() -> None:
    inventory = build_inventory(Entities(certificates={"c1": Certificate(id="c1", cert=OTHER.chain_pem(),
                                                                         key=OTHER.key_pem())}))
    assert expiry_warnings(inventory, now=NOW, warn_days=30) == ()
    assert check_expiry(inventory, now=NOW, fired={}).events == ()
    gauge = _gauge(inventory)("certificate:c1")
    assert gauge is not None and float(gauge["value"]) > 800 * DAY  # still on the gauge, far from expiry
