"""GET /certificates/inventory and the /ui/certificates page, through the pure Admin API handler."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from trio_gw.admin import AdminRequest, handle_admin_request
from trio_gw.admin.inventory import BUCKET_DAYS, UI_ASSETS, CertificateView
from trio_gw.model.inventory import Inventory
from trio_gw.testing.inventory import EXPIRES_IN_DAYS, HOSTILE_CN, sample_view

NOW = 1_900_000_000
SAMPLE = sample_view(NOW)


def _get(path: str, query: dict[str, tuple[str, ...]] | None = None, *, method: str = "GET",
         view: CertificateView | None = SAMPLE.view) -> tuple[int, dict[str, str], bytes]:
    result = handle_admin_request(AdminRequest(method, path, query or {}, {}, b""), SAMPLE.entities, now=NOW,
                                  certificates=view)
    assert result.entities is None  # a read never changes the configuration
    return result.response.status, dict(result.response.headers), result.response.body


def _json(path: str, **query: str) -> Any:
    status, headers, body = _get(path, {k: (v,) for k, v in query.items()})
    assert status == 200, body
    assert headers["content-type"] == "application/json; charset=utf-8" and headers["cache-control"] == "no-store"
    return json.loads(body)


def test_every_role_sorted_by_expiry_with_its_users_and_no_key_material() -> None:
    body = _json("/certificates/inventory")
    assert [(i["key"], i["days_to_expiry"]) for i in body["data"]] == sorted(
        EXPIRES_IN_DAYS.items(), key=lambda kv: (kv[1], kv[0]))
    assert {i["role"] for i in body["data"]} == {"server", "acme", "upstream_client", "ca", "consumer"}
    srv = next(i for i in body["data"] if i["key"] == "certificate:srv")
    assert srv["status"] == "critical" and srv["sans"]["dns"] == ["api.example"] and len(srv["fingerprint"]) == 64
    assert srv["used_by"] == [{"kind": "sni", "id": "s1", "name": "api.example"},
                              {"kind": "route", "id": "r1", "name": "orders-api"}]
    assert srv["revocation"] == {"status": "good", "source": "ocsp", "checked_at": NOW - 3600,
                                 "next_update": NOW + 3 * 86_400, "reason": None}
    assert "revocation" not in next(i for i in body["data"] if i["key"] == "certificate:acme")  # not known
    statuses = {i["key"]: i["status"] for i in body["data"]}
    assert statuses["credential:bob"] == "expired" and statuses["certificate:cli:upstream"] == "warning"
    assert statuses["ca_certificate:partner"] == statuses["certificate:acme"] == "ok"
    assert body["counts"]["by_status"] == {"expired": 1, "critical": 2, "warning": 2, "ok": 6}
    assert body["thresholds"] == {"warning_days": 30, "critical_days": 7} and body["next"] is None
    assert b"PRIVATE KEY" not in _get("/certificates/inventory")[2]


def test_the_timeline_buckets_the_next_90_days() -> None:
    timeline = _json("/certificates/inventory")["timeline"]
    assert (timeline["start"], timeline["days"], timeline["bucket_days"]) == (NOW, 90, BUCKET_DAYS)
    assert len(timeline["buckets"]) == 13 and timeline["buckets"][-1]["end"] == NOW + 90 * 86_400
    keys = {k: i for i, b in enumerate(timeline["buckets"]) for k in b["keys"]}
    assert keys == {k: d // BUCKET_DAYS for k, d in EXPIRES_IN_DAYS.items() if 0 <= d < 90}
    assert all(b["count"] == len(b["keys"]) for b in timeline["buckets"])
    assert timeline["expired"] == 1  # bob: before the timeline, counted apart


def test_filters_by_role_and_expiring_within() -> None:
    cas = _json("/certificates/inventory", role="ca")["data"]
    assert [i["key"] for i in cas] == ["setting:ssl_client_certificate[0][0]",
                                       "setting:ssl_client_certificate[0][1]", "ca_certificate:partner"]
    both = _json("/certificates/inventory", role="consumer,acme")
    assert {i["role"] for i in both["data"]} == {"consumer", "acme"} and both["counts"]["total"] == 3
    soon = _json("/certificates/inventory", expiring_within="30d")["data"]
    assert {i["key"] for i in soon} == {k for k, d in EXPIRES_IN_DAYS.items() if d <= 30}
    combined = _json("/certificates/inventory", role="server", expiring_within="7d")
    assert [i["key"] for i in combined["data"]] == ["certificate:srv"]
    assert combined["timeline"]["buckets"][0]["keys"] == ["certificate:srv"]  # the timeline follows the filters


@pytest.mark.parametrize(("query", "field", "message"), [
    ({"role": ("servers",)}, "role", "unknown role 'servers'"),
    ({"role": ("server,",)}, "role", "unknown role ''"),
    ({"expiring_within": ("a month",)}, "expiring_within", "expected a duration"),
])
def test_bad_filters_are_400_in_kongs_shape(query: dict[str, tuple[str, ...]], field: str, message: str) -> None:
    status, _, body = _get("/certificates/inventory", query)
    error = json.loads(body)
    assert status == 400 and error["name"] == "invalid options" and message in error["fields"][field]


def test_writes_are_refused_and_a_missing_inventory_is_503() -> None:
    status, headers, _ = _get("/certificates/inventory", method="POST")
    assert status == 405 and headers["allow"] == "GET"
    status, _, body = _get("/certificates/inventory", view=None)
    assert status == 503 and b"not available" in body
    assert _get("/certificates/inventory", view=CertificateView(Inventory()))[0] == 200


def test_the_page_and_its_assets_are_served_from_the_package_with_a_strict_policy() -> None:
    status, headers, page = _get("/ui/certificates")
    assert status == 200 and headers["content-type"] == "text/html; charset=utf-8"
    policy = headers["content-security-policy"]
    assert "default-src 'none'" in policy and "script-src 'self'" in policy and "connect-src 'self'" in policy
    assert headers["x-content-type-options"] == "nosniff"
    assert b'src="certificates.js"' in page and b'href="certificates.css"' in page
    for path, (_, content_type) in UI_ASSETS.items():
        status, headers, asset = _get(path)
        assert status == 200 and headers["content-type"] == content_type
        # no external asset: no absolute URL, no protocol-relative URL, no inline script or style
        assert not re.search(rb"(https?:)?//[a-z0-9]", asset.replace(b"http://www.w3.org", b"")), path
        assert b"<script>" not in asset and b"<style" not in asset and b" style=" not in asset
    assert _get("/ui/certificates", method="DELETE")[0] == 405
    assert _get("/ui/other")[0] == 404


def test_the_hostile_name_is_data_for_the_page() -> None:
    odd = next(i for i in _json("/certificates/inventory")["data"] if i["key"] == "certificate:odd")
    assert odd["common_names"] == [HOSTILE_CN]  # the page must render it as text (checked in the browser)
    script = _get("/ui/certificates.js")[2]
    assert b"innerHTML" not in script and b"insertAdjacentHTML" not in script and b"document.write" not in script
