"""The certificate inventory page in a real browser, served by a real gateway's Admin API under admin mTLS.

A gateway process (``python -m trio_gw run``, every listener on 127.0.0.1:0) is configured with certificates in
every role and with a spread of expiries — an SNI's certificate 5 days from expiry, an ACME one, an upstream
client certificate, a CA mtls-auth trusts, two consumer credentials (one critical, one expired), ``ssl_cert``,
a two-CA ``ssl_client_certificate`` bundle, the Admin API's own certificate and client CA — and a certificate
whose common name is HTML.  Its Admin API listens with ``ssl`` and ``admin_mtls``: Debian's Chromium, driven
by Playwright, presents a client certificate the admin CA issued.  The test loads ``/ui/certificates``, checks
every row and the timeline against the JSON the same Admin API answers, exercises both filters, checks that
the hostile common name stays text, and saves screenshots under the test's tmp directory.

Chromium comes from ``tools/install-system-tools.sh`` (``make test``); without it the test fails under
``CI=true`` and is skipped otherwise.  Playwright is never asked to download a browser.
"""

from __future__ import annotations

import json
import os
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from trio_gw.testing.inventory import HOSTILE_CN
from trio_gw.testing.pki import Issued, issue, make_ca

from .processes import Node

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
DAY = 86_400
#: The page's colours by status (certificates.css), as the browser computes them.
COLOURS = {"ok": "rgb(24, 128, 56)", "warning": "rgb(176, 96, 0)", "critical": "rgb(217, 48, 37)",
           "expired": "rgb(140, 29, 24)"}
#: Days to expiry of the configured certificates, by inventory key (``{id}`` stands for the entity's id).
EXPIRES_IN_DAYS = {
    "certificate:srv": 5, "certificate:acme": 40, "certificate:cli": 20, "certificate:cli:upstream": 20,
    "certificate:odd": 88, "ca_certificate:partner": 400, "credential:alice": 2, "credential:bob": -3,
    "setting:ssl_cert[0]": 75, "setting:ssl_client_certificate[0][0]": 60,
    "setting:ssl_client_certificate[0][1]": 150, "setting:admin_ssl_cert[0]": 365,
    "setting:admin_mtls_ca_certificates[0][0]": 800,
}
IDS = {"srv": "00000000-0000-4000-8000-000000000001", "acme": "00000000-0000-4000-8000-000000000002",
       "cli": "00000000-0000-4000-8000-000000000003", "odd": "00000000-0000-4000-8000-000000000004",
       "partner": "00000000-0000-4000-8000-000000000005", "alice": "00000000-0000-4000-8000-000000000006",
       "bob": "00000000-0000-4000-8000-000000000007"}

try:
    from playwright import sync_api
except ImportError:  # the test extra installs it; only a bare environment lacks it
    if os.environ.get("CI") == "true":
        raise
    pytest.skip("playwright is not installed (make install-test)", allow_module_level=True)


def _key(template: str) -> str:
    """An inventory key of :data:`EXPIRES_IN_DAYS` with the entity's real id."""
    kind, _, rest = template.partition(":")
    if kind == "setting":
        return template
    name, _, suffix = rest.partition(":")
    return f"{kind}:{IDS[name]}" + (f":{suffix}" if suffix else "")


@dataclass(frozen=True)
class Admin:
    """The gateway's Admin API: its URL, and the admin client certificate's files."""

    url: str
    cert: Path
    key: Path
    node: Node

    def context(self, *, with_certificate: bool = True) -> ssl.SSLContext:
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE  # the admin certificate is not the point
        if with_certificate:
            context.load_cert_chain(self.cert, self.key)
        return context


def _configure(directory: Path, now: int) -> tuple[dict[str, Any], Path, Path]:
    """Write the PKI, the decK file and the files settings name; return the settings and the admin client pair."""
    directory.mkdir(parents=True, exist_ok=True)
    root = make_ca(common_name="Sample Root CA", not_before=now - 900 * DAY)

    def leaf(template: str, *names: str, issuer: Issued = root, **options: Any) -> Issued:
        days = EXPIRES_IN_DAYS[template]
        return issue(issuer, *names, not_before=now - 90 * DAY, not_after=now + days * DAY + 3600, **options)

    def ca(template: str, name: str) -> Issued:
        return make_ca(common_name=name, not_before=now - 900 * DAY, not_after=now + EXPIRES_IN_DAYS[template] * DAY
                       + 3600)

    def write(name: str, text: str) -> str:
        (directory / name).write_text(text)
        return str(directory / name)

    srv, acme = leaf("certificate:srv", "api.example"), leaf("certificate:acme", "www.example")
    cli = leaf("certificate:cli", common_name="gateway client")
    odd = leaf("certificate:odd", "odd.example", common_name=HOSTILE_CN)
    partner = ca("ca_certificate:partner", "Partner CA")
    alice = leaf("credential:alice", common_name="alice", issuer=partner)
    bob = leaf("credential:bob", common_name="bob", issuer=partner)
    admin_ca = ca("setting:admin_mtls_ca_certificates[0][0]", "Admin client CA")
    operator = issue(admin_ca, common_name="operator", not_before=now - DAY, not_after=now + 30 * DAY)
    admin = leaf("setting:admin_ssl_cert[0]", "localhost", ip_addresses=["127.0.0.1"])
    default = leaf("setting:ssl_cert[0]", "gw.example")
    declarative = {
        "_format_version": "3.0",
        "certificates": [
            {"id": IDS["srv"], "cert": srv.chain_pem(), "key": srv.key_pem(), "snis": [{"name": "api.example"}]},
            {"id": IDS["acme"], "cert": acme.chain_pem(), "key": acme.key_pem(), "tags": ["acme"],
             "snis": [{"name": "www.example"}]},
            {"id": IDS["cli"], "cert": cli.chain_pem(), "key": cli.key_pem()},
            {"id": IDS["odd"], "cert": odd.chain_pem(), "key": odd.key_pem()},
        ],
        "ca_certificates": [{"id": IDS["partner"], "cert": partner.cert_pem()}],
        "consumers": [
            {"username": "alice", "mtls_auth_credentials": [{"id": IDS["alice"], "certificate": alice.cert_pem()}]},
            {"username": "bob", "mtls_auth_credentials": [{"id": IDS["bob"], "certificate": bob.cert_pem()}]},
        ],
        "services": [{"name": "orders", "url": "https://orders.internal:8443", "client_certificate": {"id": IDS["cli"]},
                      "routes": [{"name": "orders-api", "paths": ["/orders"], "snis": ["api.example"],
                                  "plugins": [{"name": "mtls-auth",
                                               "config": {"ca_certificates": [IDS["partner"]]}}]}]}],
    }
    settings = {
        "database": "off", "declarative_config": write("kong.yaml", yaml.safe_dump(declarative)),
        "proxy_listen": "127.0.0.1:0 ssl",
        "ssl_cert": [write("server.pem", default.chain_pem())], "ssl_cert_key": [write("server.key", default.key_pem())],
        "ssl_client_certificate": [write("clients.pem", ca("setting:ssl_client_certificate[0][0]", "Client CA one")
                                         .cert_pem() + ca("setting:ssl_client_certificate[0][1]", "Client CA two")
                                         .cert_pem())],
        "admin_listen": "127.0.0.1:0 ssl", "admin_mtls": True,
        "admin_ssl_cert": [write("admin.pem", admin.chain_pem())], "admin_ssl_cert_key": [write("admin.key",
                                                                                                 admin.key_pem())],
        "admin_mtls_ca_certificates": [write("admin-ca.pem", admin_ca.cert_pem())],
    }
    return settings, Path(write("operator.pem", operator.chain_pem())), Path(write("operator.key", operator.key_pem()))


@pytest.fixture(scope="module")
def admin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Admin]:
    """A real gateway process whose Admin API (ssl, admin mTLS) serves the page."""
    directory = tmp_path_factory.mktemp("inventory-gateway")
    settings, cert, key = _configure(directory / "config", int(time.time()))
    node = Node(directory / "node", settings)
    try:
        yield Admin(f"https://127.0.0.1:{node.admin_port}", cert, key, node)
    finally:
        node.stop()


@pytest.fixture
def page(admin: Admin) -> Iterator[Any]:
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} is missing: run `make system-tools` (tools/install-system-tools.sh chromium)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(
                viewport={"width": 1440, "height": 900}, ignore_https_errors=True,
                client_certificates=[{"origin": admin.url, "certPath": str(admin.cert), "keyPath": str(admin.key)}])
            yield context.new_page()
        finally:
            browser.close()


def _inventory(admin: Admin, query: str = "") -> dict[str, Any]:
    url = f"{admin.url}/certificates/inventory{'?' + query if query else ''}"
    with urllib.request.urlopen(url, context=admin.context(), timeout=10) as answer:
        body: dict[str, Any] = json.load(answer)
    return body


def _wait_for(page: Any, query: str) -> None:
    page.wait_for_selector(f'body[data-loaded-query="{query}"]', state="attached", timeout=15_000)


def _check_against(page: Any, body: dict[str, Any]) -> None:
    """Every row and the whole timeline say what the JSON says."""
    rows = page.locator("#inventory tbody tr")
    assert rows.count() == len(body["data"])
    for i, item in enumerate(body["data"]):
        row = rows.nth(i)
        assert row.get_attribute("data-key") == item["key"]
        assert row.get_attribute("data-days") == str(item["days_to_expiry"])
        assert row.get_attribute("data-status") == item["status"]
        pill = row.locator(".days")
        assert pill.inner_text() == ("expired" if item["expired"] else f"{item['days_to_expiry']} d")
        names = [*item["sans"]["dns"], *item["sans"]["ip"], *item["sans"]["uri"], *item["sans"]["email"]]
        assert row.locator(".cn").inner_text() == (item["common_names"] or names or [item["subject"]])[0]
        assert row.locator(".fingerprint").inner_text() == item["fingerprint"]
        assert row.locator(".issuer").inner_text() == item["issuer"]
        chips = [c.strip() for c in row.locator(".used-by .chip").all_inner_texts()]
        assert chips == [f"{u['kind']} {u['name'] or u['id']}" for u in item["used_by"]]
        assert row.locator(".san").all_inner_texts() == names
        if item.get("revocation"):
            assert row.locator(".revocation").inner_text() == (
                f"{item['revocation']['status']} ({item['revocation']['source'].upper()})")
        if item["status"] in COLOURS:
            assert pill.evaluate("e => getComputedStyle(e).backgroundColor") == COLOURS[item["status"]]
    timeline = body["timeline"]
    bars = page.locator("#timeline-bars .bar")
    assert bars.count() == len(timeline["buckets"])
    assert [int(bars.nth(i).get_attribute("data-count")) for i in range(bars.count())] == [
        b["count"] for b in timeline["buckets"]]
    assert page.locator("#timeline-expired").get_attribute("data-count") == str(timeline["expired"])
    dots = page.locator("#timeline-strip .dot")
    expected = [i["key"] for i in body["data"] if timeline["start"] <= i["not_after"] < timeline["end"]]
    assert [dots.nth(i).get_attribute("data-key") for i in range(dots.count())] == expected


def test_the_inventory_page_shows_the_api_answer_and_filters_it(page: Any, admin: Admin, tmp_path: Path) -> None:
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.goto(f"{admin.url}/ui/certificates")
    _wait_for(page, "")
    everything = _inventory(admin)
    assert {i["role"] for i in everything["data"]} == {"server", "acme", "upstream_client", "ca", "consumer"}
    assert {i["key"]: i["days_to_expiry"] for i in everything["data"]} == {
        _key(k): days for k, days in EXPIRES_IN_DAYS.items()}
    assert {i["status"] for i in everything["data"]} == {"ok", "warning", "critical", "expired"}
    _check_against(page, everything)
    assert page.locator("#summary").inner_text().startswith(f"{everything['counts']['total']} certificates")

    # a common name made of markup is shown as text and runs nothing
    odd = page.locator(f'#inventory tbody tr[data-key="{_key("certificate:odd")}"] .cn')
    assert odd.inner_text() == HOSTILE_CN
    assert page.locator("#inventory img").count() == 0
    assert page.evaluate("document.body.dataset.pwned") is None

    screenshot = tmp_path / "certificates.png"
    page.screenshot(path=str(screenshot), full_page=True)
    print(f"\nscreenshot of /ui/certificates: {screenshot}")
    assert screenshot.stat().st_size > 10_000

    page.select_option("#role-filter", "ca")
    _wait_for(page, "role=ca")
    _check_against(page, _inventory(admin, "role=ca"))
    assert {r.get_attribute("data-role") for r in page.locator("#inventory tbody tr").all()} == {"ca"}

    page.select_option("#expiring-filter", "90d")
    _wait_for(page, "role=ca&expiring_within=90d")
    only = _inventory(admin, "role=ca&expiring_within=90d")
    assert [i["key"] for i in only["data"]] == ["setting:ssl_client_certificate[0][0]"]
    _check_against(page, only)

    page.select_option("#role-filter", "")
    _wait_for(page, "expiring_within=90d")
    _check_against(page, _inventory(admin, "expiring_within=90d"))
    assert page.url.endswith("/ui/certificates?expiring_within=90d")  # the filters are in the address
    page.screenshot(path=str(tmp_path / "certificates-expiring-90d.png"), full_page=True)
    assert problems == []  # no script error, no CSP violation


def test_the_filters_come_from_the_address_and_an_error_is_shown(page: Any, admin: Admin) -> None:
    page.goto(f"{admin.url}/ui/certificates?role=consumer")
    _wait_for(page, "role=consumer")
    assert page.locator("#role-filter").input_value() == "consumer"
    _check_against(page, _inventory(admin, "role=consumer"))
    # an answer the page cannot use is said, not swallowed
    page.route("**/certificates/inventory*", lambda route: route.fulfill(
        status=503, content_type="application/json", body='{"message": "not available on this node yet"}'))
    page.select_option("#role-filter", "acme")
    _wait_for(page, "role=acme")
    assert page.locator("#error").is_visible()
    assert "not available on this node yet" in page.locator("#error").inner_text()


def test_the_page_and_its_json_need_an_admin_client_certificate(admin: Admin) -> None:
    with pytest.raises((ssl.SSLError, ConnectionError, urllib.error.URLError)):
        urllib.request.urlopen(f"{admin.url}/ui/certificates", context=admin.context(with_certificate=False),
                               timeout=10).read()
    with urllib.request.urlopen(f"{admin.url}/ui/certificates", context=admin.context(), timeout=10) as answer:
        assert answer.status == 200
        assert "default-src 'none'" in answer.headers["content-security-policy"]
    # the refused handshake is in the node's log, with its reason
    deadline = time.monotonic() + 10
    while "reason=no_cert" not in admin.node.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "TLS handshake rejected: reason=no_cert client=127.0.0.1 network=127.0.0.0/24 listener=admin" in (
        admin.node.log())
