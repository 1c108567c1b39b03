"""The pure parts of the Admin API's /acme endpoints (trio_gw.admin.acme)."""

from __future__ import annotations

import pytest

from trio_gw.admin.acme import (
    ACME_TAG,
    acme_certificate_document,
    acme_create_refusal,
    acme_created_body,
    acme_failed_body,
    list_acme_certificates,
    parse_acme_create,
)
from trio_gw.admin.errors import AdminError
from trio_gw.model.declarative import parse_declarative
from trio_gw.testing.pki import DEFAULT_NOT_AFTER, EXPIRED_AT, issue, make_ca
from trio_gw.tls.acme import AcmeAction, AcmePlan

NOW = 1_800_000_000
CA = make_ca(common_name="Pebble Intermediate CA 01ede8")


@pytest.mark.parametrize("body, host, flag", [
    (b'{"host": "Api.Example.com."}', "api.example.com", False),
    (b'{"host": "a.example", "test_http_challenge_flow": true}', "a.example", True),
])
def test_create_body(body: bytes, host: str, flag: bool) -> None:
    request = parse_acme_create(body)
    assert (request.host, request.test_http_challenge_flow) == (host, flag)


@pytest.mark.parametrize("body, message", [
    (b"{", "Cannot parse JSON body"),
    (b"{}", "host must be provided and containing a single domain"),
    (b'{"host": "a.example,b.example"}', "host must be provided and containing a single domain"),
    (b'{"host": ["a.example"]}', "host must be provided and containing a single domain"),
    (b'{"host": "a.example:8443"}', "port is not allowed in host"),
    (b'{"host": "a.example", "test_http_challenge_flow": "yes"}', "test_http_challenge_flow must be a boolean"),
])
def test_create_body_errors(body: bytes, message: str) -> None:
    with pytest.raises(AdminError) as info:
        parse_acme_create(body)
    assert (info.value.status, info.value.body["message"]) == (400, message)


def test_refusals_follow_the_plan() -> None:
    refused = acme_create_refusal(AcmePlan(AcmeAction.REFUSE, "domain_not_allowed"), "x.example")
    assert refused is not None and refused[0] == 400 and refused[1]["reason"] == "domain_not_allowed"
    waiting = acme_create_refusal(AcmePlan(AcmeAction.WAIT, "backing_off", NOW), "x.example")
    assert waiting is not None and waiting[0] == 429 and waiting[1]["retry_at"] == NOW
    assert "2027-01-15 08:00:00" in waiting[1]["message"]
    for action in (AcmeAction.ISSUE, AcmeAction.RENEW, AcmeAction.NOTHING):  # an explicit request goes ahead
        assert acme_create_refusal(AcmePlan(action, "x"), "x.example") is None
    assert acme_created_body("x.example") == {"message": "certificate for host x.example is created"}
    assert acme_failed_body("x.example", "challenge_failed", "http-01 ...")["reason"] == "challenge_failed"


def test_the_document_is_an_ordinary_certificate_with_snis() -> None:
    leaf = issue(CA, "a.example", "www.a.example")
    document = acme_certificate_document(leaf.chain_pem(), leaf.key_pem(), ["a.example", "www.a.example"],
                                         certificate_id="3f3b4b7e-9a51-4a34-9d7a-4c1f5c1d8b20")
    entities = parse_declarative({"_format_version": "3.0", "certificates": [document]}, now=NOW)
    (cert,) = entities.certificates.values()
    assert cert.id == "3f3b4b7e-9a51-4a34-9d7a-4c1f5c1d8b20" and cert.tags == (ACME_TAG,)
    assert sorted(s.name for s in entities.snis.values()) == ["a.example", "www.a.example"]


def test_listing_shows_only_acme_certificates() -> None:
    acme = issue(CA, "a.example", not_after=DEFAULT_NOT_AFTER)
    old = issue(CA, "old.example", not_before=EXPIRED_AT - 86400, not_after=EXPIRED_AT)
    manual = issue(make_ca(common_name="Manual CA"), "m.example")
    doc = {"_format_version": "3.0", "certificates": [
        acme_certificate_document(acme.chain_pem(), acme.key_pem(), ["a.example"]),
        acme_certificate_document(old.chain_pem(), old.key_pem(), ["old.example"]),
        {"cert": manual.chain_pem(), "key": manual.key_pem(), "snis": [{"name": "m.example"}]},
    ]}
    rows = list_acme_certificates(parse_declarative(doc, now=EXPIRED_AT - 10), now=NOW)["data"]
    assert [(r["host"], r["valid"], r["issuer_cn"]) for r in rows] == [
        ("a.example", True, "Pebble Intermediate CA 01ede8"), ("old.example", False, "Pebble Intermediate CA 01ede8")]
    assert rows[0]["serial_number"] == format(acme.cert.serial_number, "x") and rows[1]["not_after"] == (
        "2024-01-01 00:00:00")


def test_managed_hosts_take_the_certificate_expiring_last() -> None:
    from trio_gw.admin.acme import acme_managed_hosts

    early = issue(CA, "a.example", not_after=NOW + 10 * 86400)
    late = issue(CA, "a.example", not_after=NOW + 90 * 86400)
    manual = issue(CA, "m.example")
    doc = {"_format_version": "3.0", "certificates": [
        {**acme_certificate_document(early.chain_pem(), early.key_pem(), ["a.example"]),
         "id": "11111111-1111-4111-8111-111111111111"},
        {**acme_certificate_document(late.chain_pem(), late.key_pem(), []),
         "id": "22222222-2222-4222-8222-222222222222"},
        {"cert": manual.chain_pem(), "key": manual.key_pem(), "snis": [{"name": "m.example"}]},
    ]}
    managed = acme_managed_hosts(parse_declarative(doc, now=NOW))
    assert managed == {"a.example": ("22222222-2222-4222-8222-222222222222", NOW + 90 * 86400)}


def test_the_write_is_the_admin_apis_own_put() -> None:
    """Issuance creates the certificate with its SNIs; renewal replaces both under the same id."""
    from trio_gw.admin.acme import acme_certificate_request
    from trio_gw.admin.api import handle_admin_request
    from trio_gw.model.entities import Entities

    certificate_id = "5b0c4c56-0d6e-4f1b-9a3e-3a8f1f0b6c21"
    first, second = issue(CA, "a.example"), issue(CA, "a.example")
    created = handle_admin_request(acme_certificate_request(
        acme_certificate_document(first.chain_pem(), first.key_pem(), ["a.example"]), certificate_id),
        Entities(), now=NOW)
    assert created.response.status == 201 and created.entities is not None
    assert b"PRIVATE KEY" not in created.response.body  # the key is never returned
    renewed = handle_admin_request(acme_certificate_request(
        acme_certificate_document(second.chain_pem(), second.key_pem(), ["a.example"], certificate_id=certificate_id),
        certificate_id), created.entities, now=NOW)
    assert renewed.response.status == 200 and renewed.entities is not None
    (row,) = list_acme_certificates(renewed.entities, now=NOW)["data"]
    assert (row["certificate_id"], row["serial_number"]) == (certificate_id, format(second.cert.serial_number, "x"))
    assert len(renewed.entities.snis) == 1
