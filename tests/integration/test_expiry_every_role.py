"""A certificate 5 days from expiry, in every role, through a real gateway: the warning at load, the gauge on
``/metrics``, Tyk's ``CertificateExpiringSoon`` event in the log and at a webhook, and the Admin API's inventory.

One gateway per role (in process, every listener on 127.0.0.1:0), configured the way an operator would: a decK
file for entities and settings files for the rest — server (an SNI's certificate, ``cert_alt``, ``ssl_cert``,
Tyk ``ssl_certificates``, ``admin_ssl_cert``, ``status_ssl_cert``), upstream client (``client_ssl_cert``, a
service's ``client_certificate``, an ``upstream_certificates`` file), CA (an entity mtls-auth trusts,
``ssl_client_certificate``, ``lua_ssl_trusted_certificate``, ``admin_mtls_ca_certificates``,
``proxy_ssl_trusted_certificate``), consumer (an mtls-auth credential, an mtls-allowlist entry) and ACME (a
Certificate entity tagged ``acme``).  Beside each, a certificate valid for a year that must stay quiet.
"""

from __future__ import annotations

import json
import logging
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from trio_gw.runtime.gateway import Gateway
from trio_gw.testing.http_client import Client
from trio_gw.testing.http_server import ScriptedServer
from trio_gw.testing.pki import Issued, issue, make_ca

from .conftest import StartGateway, Upstream, port_of

DAY = 86_400
NOW = int(time.time())
ROOT = make_ca(common_name="expiry root", not_before=NOW - 400 * DAY)
#: 5 days and an hour: ``days_to_expiry`` is 5 for the whole test, however slow the machine.
SOON = NOW + 5 * DAY + 3600
YEAR = NOW + 365 * DAY


def _leaf(*names: str, not_after: int = SOON, **options: Any) -> Issued:
    return issue(ROOT, *names, not_before=NOW - 30 * DAY, not_after=not_after, **options)


def _ca(name: str, not_after: int = SOON) -> Issued:
    return make_ca(common_name=name, not_before=NOW - 30 * DAY, not_after=not_after)


def _uuid(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


@dataclass
class Case:
    """One role's configuration and the inventory keys (with their metric ``certificate`` label) it must show."""

    declarative: dict[str, Any] = field(default_factory=lambda: {"_format_version": "3.0"})
    settings: dict[str, Any] = field(default_factory=dict)
    #: ``(inventory key, certificate label)`` of every certificate 5 days from expiry.
    soon: list[tuple[str, str]] = field(default_factory=list)
    #: Keys of certificates valid for a year, in the same role: no warning, no event.
    quiet: list[str] = field(default_factory=list)


class Files:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def write(self, name: str, text: str) -> str:
        path = self.directory / name
        path.write_text(text)
        return str(path)

    def pair(self, name: str, cert: Issued) -> tuple[str, str]:
        return self.write(f"{name}.pem", cert.chain_pem()), self.write(f"{name}.key", cert.key_pem())


def _server(files: Files, upstream: Upstream) -> Case:
    sni, alt_ec, alt_rsa = _leaf("api.example"), _leaf("dual.example", not_after=YEAR), _leaf("dual.example",
                                                                                               key_kind="rsa")
    cert, key = files.pair("ssl_cert", _leaf("gw.example"))
    tyk = _leaf("tyk.example")
    admin_cert, admin_key = files.pair("admin", _leaf("admin.example"))
    status_cert, status_key = files.pair("status", _leaf("status.example"))
    quiet = _leaf("quiet.example", not_after=YEAR)
    case = Case(settings={
        "ssl_cert": cert, "ssl_cert_key": key,
        "ssl_certificates": [files.write("tyk.pem", tyk.chain_pem() + tyk.key_pem())],
        "admin_listen": "127.0.0.1:0 ssl", "admin_ssl_cert": admin_cert, "admin_ssl_cert_key": admin_key,
        "status_listen": "127.0.0.1:0, 127.0.0.1:0 ssl", "status_ssl_cert": status_cert,
        "status_ssl_cert_key": status_key,
    })
    case.declarative["certificates"] = [
        {"id": _uuid(1), "cert": sni.chain_pem(), "key": sni.key_pem(), "snis": [{"name": "api.example"}]},
        {"id": _uuid(2), "cert": alt_ec.chain_pem(), "key": alt_ec.key_pem(), "cert_alt": alt_rsa.chain_pem(),
         "key_alt": alt_rsa.key_pem()},
        {"id": _uuid(3), "cert": quiet.chain_pem(), "key": quiet.key_pem(), "snis": [{"name": "quiet.example"}]},
    ]
    case.declarative["services"] = [{"name": "echo", "url": upstream.url,
                                     "routes": [{"name": "api", "paths": ["/"], "snis": ["api.example"]}]}]
    case.soon = [(f"certificate:{_uuid(1)}", _uuid(1)), (f"certificate:{_uuid(2)}:alt", _uuid(2)),
                 ("setting:ssl_cert[0]", "setting:ssl_cert[0]"),
                 ("setting:ssl_certificates[0]", "setting:ssl_certificates[0]"),
                 ("setting:admin_ssl_cert[0]", "setting:admin_ssl_cert[0]"),
                 ("setting:status_ssl_cert[0]", "setting:status_ssl_cert[0]")]
    case.quiet = [f"certificate:{_uuid(2)}", f"certificate:{_uuid(3)}"]
    return case


def _upstream_client(files: Files, upstream: Upstream) -> Case:
    cert, key = files.pair("client", _leaf(common_name="gateway client"))
    entity, quiet = _leaf(common_name="orders client"), _leaf(common_name="quiet client", not_after=YEAR)
    combined = _leaf(common_name="host map client")
    case = Case(settings={
        "client_ssl_cert": cert, "client_ssl_cert_key": key,
        "upstream_certificates": {"orders.internal": files.write("hostmap.pem",
                                                                 combined.chain_pem() + combined.key_pem())},
    })
    case.declarative["certificates"] = [
        {"id": _uuid(11), "cert": entity.chain_pem(), "key": entity.key_pem()},
        {"id": _uuid(12), "cert": quiet.chain_pem(), "key": quiet.key_pem()},
    ]
    case.declarative["services"] = [
        {"name": "orders", "url": "https://orders.internal:8443", "client_certificate": {"id": _uuid(11)},
         "routes": [{"name": "orders", "paths": ["/orders"]}]},
        {"name": "billing", "url": "https://billing.internal:8443", "client_certificate": {"id": _uuid(12)},
         "routes": [{"name": "billing", "paths": ["/billing"]}]},
    ]
    case.soon = [("setting:client_ssl_cert", "setting:client_ssl_cert"),
                 (f"certificate:{_uuid(11)}:upstream", _uuid(11)),
                 ("setting:upstream_certificates[orders.internal]", "setting:upstream_certificates[orders.internal]")]
    case.quiet = [f"certificate:{_uuid(12)}:upstream"]
    return case


def _ca_role(files: Files, upstream: Upstream) -> Case:
    partner, quiet = _ca("partner CA"), _ca("quiet CA", not_after=YEAR)
    case = Case(settings={
        "ssl_client_certificate": [files.write("clients.pem", _ca("client truststore CA").cert_pem())],
        "lua_ssl_trusted_certificate": [files.write("fetch.pem", _ca("fetch CA").cert_pem())],
        "admin_listen": "127.0.0.1:0 ssl", "admin_mtls": True,
        "admin_mtls_ca_certificates": [files.write("admin-ca.pem", _ca("admin client CA").cert_pem())],
        "proxy_ssl_trusted_certificate": [files.write("upstream-ca.pem", _ca("upstream CA").cert_pem())],
    })
    case.declarative["ca_certificates"] = [{"id": _uuid(21), "cert": partner.cert_pem()},
                                           {"id": _uuid(22), "cert": quiet.cert_pem()}]
    case.declarative["services"] = [{"name": "echo", "url": upstream.url, "routes": [
        {"name": "partners", "paths": ["/partners"],
         "plugins": [{"name": "mtls-auth", "config": {"ca_certificates": [_uuid(21)]}}]},
        {"name": "others", "paths": ["/others"],
         "plugins": [{"name": "mtls-auth", "config": {"ca_certificates": [_uuid(22)]}}]}]}]
    case.soon = [(f"ca_certificate:{_uuid(21)}", _uuid(21))] + [
        (f"setting:{name}[0][0]", f"setting:{name}[0][0]")
        for name in ("ssl_client_certificate", "lua_ssl_trusted_certificate", "admin_mtls_ca_certificates",
                     "proxy_ssl_trusted_certificate")]
    case.quiet = [f"ca_certificate:{_uuid(22)}"]
    return case


def _consumer(files: Files, upstream: Upstream) -> Case:
    alice, device = _leaf(common_name="alice"), _leaf(common_name="device-7")
    quiet = _leaf(common_name="bob", not_after=YEAR)
    case = Case()
    case.declarative["ca_certificates"] = [{"id": _uuid(31), "cert": ROOT.cert_pem()}]
    case.declarative["certificates"] = [{"id": _uuid(32), "cert": device.chain_pem(), "key": device.key_pem()}]
    case.declarative["consumers"] = [
        {"username": "alice", "mtls_auth_credentials": [{"id": _uuid(33), "certificate": alice.cert_pem()}]},
        {"username": "bob", "mtls_auth_credentials": [{"id": _uuid(34), "certificate": quiet.cert_pem()}]}]
    case.declarative["services"] = [{"name": "echo", "url": upstream.url, "routes": [
        {"name": "apps", "paths": ["/apps"],
         "plugins": [{"name": "mtls-auth", "config": {"ca_certificates": [_uuid(31)]}}]},
        {"name": "devices", "paths": ["/devices"],
         "plugins": [{"name": "mtls-allowlist", "config": {"certificates": [_uuid(32)]}}]}]}]
    case.soon = [(f"credential:{_uuid(33)}", f"credential:{_uuid(33)}"),
                 (f"certificate:{_uuid(32)}:consumer", _uuid(32))]
    case.quiet = [f"credential:{_uuid(34)}"]
    return case


def _acme(files: Files, upstream: Upstream) -> Case:
    issued, quiet = _leaf("shop.example"), _leaf("blog.example", not_after=YEAR)
    case = Case()
    case.declarative["certificates"] = [
        {"id": _uuid(41), "cert": issued.chain_pem(), "key": issued.key_pem(), "tags": ["acme"],
         "snis": [{"name": "shop.example"}]},
        {"id": _uuid(42), "cert": quiet.chain_pem(), "key": quiet.key_pem(), "tags": ["acme"],
         "snis": [{"name": "blog.example"}]}]
    case.soon = [(f"certificate:{_uuid(41)}", _uuid(41))]
    case.quiet = [f"certificate:{_uuid(42)}"]
    return case


CASES: dict[str, Callable[[Files, Upstream], Case]] = {
    "server": _server, "upstream_client": _upstream_client, "ca": _ca_role, "consumer": _consumer, "acme": _acme,
}
#: Tyk's ``cert_role`` words (model.expiry_monitor.TYK_CERT_ROLES).
TYK_ROLES = {"server": "server", "acme": "server", "upstream_client": "upstream", "ca": "ca", "consumer": "client"}


async def _metrics(gw: Gateway) -> dict[tuple[str, str], float]:
    client = await Client.connect(port_of(gw, kind="status"))
    text = (await client.request("GET", "/metrics")).body.decode()
    found = {}
    for family in text_string_to_metric_families(text):
        if family.name == "trio_gw_certificate_expiry_seconds":
            for sample in family.samples:
                found[(sample.labels["key"], sample.labels["role"])] = sample.value
                assert set(sample.labels) == {"certificate", "role", "subject", "key"}
    return found


async def _inventory(gw: Gateway, role: str) -> dict[str, Any]:
    listener = gw.listeners["admin"][0] if gw.listeners["admin"] else None
    if listener is None:
        return {}
    if listener.tls is None:
        client = await Client.connect(listener.port)
    else:
        if gw.settings.admin_mtls:
            return {}  # this client has no admin certificate: the listing is checked in the other roles
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE  # the admin certificate is not the point
        client = await Client.connect(listener.port, tls=context)
    reply = await client.request("GET", f"/certificates/inventory?role={role}&expiring_within=10d")
    assert reply.status == 200, reply.body
    body: dict[str, Any] = reply.json()
    return body


@pytest.mark.parametrize("role", list(CASES))
async def test_a_certificate_5_days_from_expiry_is_warned_measured_and_fires_its_event(
    role: str, start_gateway: StartGateway, upstream: Upstream, nursery: trio.Nursery, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    hook = ScriptedServer([200])
    await nursery.start(hook.serve)
    files = Files(tmp_path)
    case = CASES[role](files, upstream)
    settings = {"admin_listen": "127.0.0.1:0", **case.settings, "event_handlers": {"events": {
        "CertificateExpiringSoon": [
            {"handler_name": "eh_web_hook_handler", "handler_meta": {"target_path": hook.url("/certificates")}},
            {"handler_name": "eh_log_handler", "handler_meta": {"prefix": "EVENT"}}]}}}
    wanted = {key for key, _ in case.soon}
    with caplog.at_level(logging.WARNING, logger="trio_gw.certificates"):
        gw = await start_gateway(case.declarative, **settings)
        with trio.move_on_after(20):  # webhooks are delivered in the background: a bounded wait, no timing claim
            while not wanted <= {json.loads(r.body)["key"] for r in hook.requests}:
                await hook.received.wait()
        gauges = await _metrics(gw)
        listing = await _inventory(gw, role)
    lines = [r.getMessage() for r in caplog.records if r.name == "trio_gw.certificates"]
    bodies = {json.loads(r.body)["key"]: json.loads(r.body) for r in hook.requests}
    for key, label in case.soon:
        # the warning at load
        assert any(line.startswith(f"{role} certificate {label} (") and line.endswith(")")
                   and ": expires in 5 days (" in line for line in lines), (key, lines)
        # the gauge, with its role
        assert 5 * DAY < gauges[(key, role)] <= 5 * DAY + 3600, (key, gauges)
        # Tyk's event: logged with the eh_log_handler prefix, and POSTed to the webhook once
        assert any(line.startswith("EVENT CertificateExpiringSoon: Certificate ")
                   and f"(certificate {label}, role {role}," in line for line in lines), (key, lines)
        body = bodies[key]
        assert (body["event"], body["cert_id"], body["role"], body["days_remaining"], body["cert_role"]) == (
            "CertificateExpiringSoon", label, role, 5, TYK_ROLES[role])
        assert "PRIVATE KEY" not in json.dumps(body)
    assert sorted(json.loads(r.body)["key"] for r in hook.requests) == sorted(set(bodies))  # one event each
    for key in case.quiet:  # a year left: measured, never warned about
        assert gauges[(key, role)] > 300 * DAY
        assert key not in bodies
    if listing:
        assert {item["key"] for item in listing["data"]} == wanted
        assert all(item["status"] == "critical" and item["days_to_expiry"] == 5 for item in listing["data"])
