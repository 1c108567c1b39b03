"""The certificate inventory page in a real browser: Debian's Chromium driven by Playwright.

A small stdlib HTTP server on 127.0.0.1:0 serves the pure Admin API handler (the page, its assets and
``GET /certificates/inventory`` over the sample inventory of every role); the test loads the page, checks
every row and the timeline against the JSON the same server answers, exercises both filters, checks that a
hostile common name stays text, and saves a screenshot under the test's tmp directory.

Chromium comes from ``tools/install-system-tools.sh`` (``make test``); without it the test fails under
``CI=true`` and is skipped otherwise.  Playwright is never asked to download a browser.
"""

from __future__ import annotations

import json
import os
import threading
import urllib.parse
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from trio_gw.admin import AdminRequest, handle_admin_request
from trio_gw.testing.inventory import HOSTILE_CN, sample_view

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
NOW = 1_900_000_000
SAMPLE = sample_view(NOW)
#: The page's colours by status (certificates.css), as the browser computes them.
COLOURS = {"ok": "rgb(24, 128, 56)", "warning": "rgb(176, 96, 0)", "critical": "rgb(217, 48, 37)",
           "expired": "rgb(140, 29, 24)"}

try:
    from playwright import sync_api
except ImportError:  # the test extra installs it; only a bare environment lacks it
    if os.environ.get("CI") == "true":
        raise
    pytest.skip("playwright is not installed (make install-test)", allow_module_level=True)


class AdminHandler(BaseHTTPRequestHandler):
    """The pure Admin API behind the standard library's HTTP server (test only; not the gateway core)."""

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._answer()

    def do_POST(self) -> None:  # noqa: N802
        self._answer()

    def _answer(self) -> None:
        path, _, text = self.path.partition("?")
        query = {k: tuple(v) for k, v in urllib.parse.parse_qs(text, keep_blank_values=True).items()}
        length = int(self.headers.get("content-length") or 0)
        request = AdminRequest(self.command, path, query, {k.lower(): v for k, v in self.headers.items()},
                               self.rfile.read(length) if length else b"")
        response = handle_admin_request(request, SAMPLE.entities, now=NOW, certificates=SAMPLE.view).response
        self.send_response(response.status)
        for name, value in response.headers:
            self.send_header(name, value)
        self.send_header("content-length", str(len(response.body)))
        self.end_headers()
        self.wfile.write(response.body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - keep the test output quiet
        pass


@pytest.fixture
def admin_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), AdminHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def page(admin_url: str) -> Iterator[Any]:
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} is missing: run `make system-tools` (tools/install-system-tools.sh chromium)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1440, "height": 900})
            yield context.new_page()
        finally:
            browser.close()


def _inventory(admin_url: str, query: str = "") -> dict[str, Any]:
    with urllib.request.urlopen(f"{admin_url}/certificates/inventory{'?' + query if query else ''}") as answer:
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


def test_the_inventory_page_shows_the_api_answer_and_filters_it(page: Any, admin_url: str, tmp_path: Path) -> None:
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.goto(f"{admin_url}/ui/certificates")
    _wait_for(page, "")
    everything = _inventory(admin_url)
    assert {i["role"] for i in everything["data"]} == {"server", "acme", "upstream_client", "ca", "consumer"}
    _check_against(page, everything)
    assert page.locator("#summary").inner_text().startswith(f"{everything['counts']['total']} certificates")

    # a common name made of markup is shown as text and runs nothing
    odd = page.locator('#inventory tbody tr[data-key="certificate:odd"] .cn')
    assert odd.inner_text() == HOSTILE_CN
    assert page.locator("#inventory img").count() == 0
    assert page.evaluate("document.body.dataset.pwned") is None

    screenshot = tmp_path / "certificates.png"
    page.screenshot(path=str(screenshot), full_page=True)
    print(f"\nscreenshot of /ui/certificates: {screenshot}")
    assert screenshot.stat().st_size > 10_000

    page.select_option("#role-filter", "ca")
    _wait_for(page, "role=ca")
    _check_against(page, _inventory(admin_url, "role=ca"))
    assert {r.get_attribute("data-role") for r in page.locator("#inventory tbody tr").all()} == {"ca"}

    page.select_option("#expiring-filter", "90d")
    _wait_for(page, "role=ca&expiring_within=90d")
    only = _inventory(admin_url, "role=ca&expiring_within=90d")
    assert [i["key"] for i in only["data"]] == ["setting:ssl_client_certificate[0][0]"]
    _check_against(page, only)

    page.select_option("#role-filter", "")
    _wait_for(page, "expiring_within=90d")
    _check_against(page, _inventory(admin_url, "expiring_within=90d"))
    assert page.url.endswith("/ui/certificates?expiring_within=90d")  # the filters are in the address
    page.screenshot(path=str(tmp_path / "certificates-expiring-90d.png"), full_page=True)
    assert problems == []  # no script error, no CSP violation


def test_the_filters_come_from_the_address_and_an_error_is_shown(page: Any, admin_url: str) -> None:
    page.goto(f"{admin_url}/ui/certificates?role=consumer")
    _wait_for(page, "role=consumer")
    assert page.locator("#role-filter").input_value() == "consumer"
    _check_against(page, _inventory(admin_url, "role=consumer"))
    # an answer the page cannot use is said, not swallowed
    page.route("**/certificates/inventory*", lambda route: route.fulfill(
        status=503, content_type="application/json", body='{"message": "not available on this node yet"}'))
    page.select_option("#role-filter", "acme")
    _wait_for(page, "role=acme")
    assert page.locator("#error").is_visible()
    assert "not available on this node yet" in page.locator("#error").inner_text()
