"""Certificates, CA certificates and SNIs through the Admin API (seeds 000, 001, 002, 003)."""

from __future__ import annotations

import hashlib

import trustme
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.unit.admin.conftest import NOW, Admin, multipart, pem_pair
from trio_gw.testing.pki import (
    EXPIRED_AT,
    ca_without_ca_flag,
    expired_leaf,
    issue,
    make_ca,
)


def fingerprint(pem: str) -> str:
    der = x509.load_pem_x509_certificate(pem.encode()).public_bytes(serialization.Encoding.DER)
    return hashlib.sha256(der).hexdigest()


def test_upload_json_then_list_shows_id_and_facts(admin: Admin, leaf: trustme.LeafCert) -> None:
    pair = pem_pair(leaf)
    created = admin.post("/certificates", {**pair, "tags": ["edge"]})
    assert created.status == 201
    body = created.body
    assert body["id"] == "00000000-0000-4000-8000-000000000001"
    assert "key" not in body and "key_alt" not in body
    assert body["fingerprint"] == fingerprint(pair["cert"])
    assert body["sans"] == {"dns": ["api.example.test"], "ip": ["10.0.0.1"]}
    assert body["key_type"] and body["key_size"] > 0
    assert body["expired"] is False and body["days_to_expiry"] > 300_000
    assert body["not_before"] < NOW < body["not_after"]
    assert "CN=" in body["issuer"] or body["issuer"]
    listed = admin.get("/certificates")
    assert listed.status == 200
    assert [c["id"] for c in listed.body["data"]] == [body["id"]]
    assert listed.body["next"] is None


def test_upload_multipart_as_curl_form(admin: Admin, leaf: trustme.LeafCert) -> None:
    pair = pem_pair(leaf)
    data, content_type = multipart({"snis[]": "api.example.test", "tags": "a"}, {"cert": pair["cert"], "key": pair["key"]})
    created = admin.post("/certificates", raw=data, content_type=content_type)
    assert created.status == 201, created.body
    assert created.body["snis"] == ["api.example.test"]
    assert created.body["tags"] == ["a"]


def test_upload_urlencoded(admin: Admin, leaf: trustme.LeafCert) -> None:
    import urllib.parse

    pair = pem_pair(leaf)
    data = urllib.parse.urlencode({**pair, "snis": "api.example.test"}).encode()
    created = admin.post("/certificates", raw=data, content_type="application/x-www-form-urlencoded")
    assert created.status == 201, created.body
    assert created.body["snis"] == ["api.example.test"]


def test_seed_flow_certificate_sni_and_service(admin: Admin, leaf: trustme.LeafCert) -> None:
    cert_id = admin.post("/certificates", pem_pair(leaf)).body["id"]
    sni = admin.post("/snis", {"name": "api.example.test", "certificate": {"id": cert_id}})
    assert sni.status == 201 and sni.body["certificate"] == {"id": cert_id}
    service = admin.post(
        "/services",
        {"name": "example_service", "url": "https://self-signed-cert.httpbun.com", "certificates": [cert_id], "tls_verify": True},
    )
    assert service.status == 201, service.body
    assert service.body["client_certificate"] == {"id": cert_id}
    assert admin.get(f"/certificates/{cert_id}").body["snis"] == ["api.example.test"]
    assert admin.get(f"/certificates/{cert_id}/snis").body["data"][0]["name"] == "api.example.test"


def test_fingerprint_addresses_certificate_and_references(admin: Admin, leaf: trustme.LeafCert) -> None:
    pair = pem_pair(leaf)
    cert_id = admin.post("/certificates", pair).body["id"]
    fp = fingerprint(pair["cert"])
    assert admin.get(f"/certificates/sha256:{fp}").body["id"] == cert_id
    assert admin.get(f"/certificates/SHA256:{fp.upper()}").body["id"] == cert_id
    service = admin.post("/services", {"url": "https://up.example", "client_certificate": f"sha256:{fp}"})
    assert service.body["client_certificate"] == {"id": cert_id}


def test_snis_sugar_replaces_on_patch(admin: Admin, leaf: trustme.LeafCert) -> None:
    cert_id = admin.post("/certificates", {**pem_pair(leaf), "snis": ["a.example", "b.example"]}).body["id"]
    assert len(admin.entities.snis) == 2
    patched = admin.patch(f"/certificates/{cert_id}", {"snis": ["b.example", "c.example"]})
    assert patched.status == 200
    assert patched.body["snis"] == ["b.example", "c.example"]
    assert sorted(s.name for s in admin.entities.snis.values()) == ["b.example", "c.example"]
    assert admin.patch(f"/certificates/{cert_id}", {"tags": ["x"]}).body["snis"] == ["b.example", "c.example"]


def test_sni_bound_to_another_certificate_is_409(admin: Admin, leaf: trustme.LeafCert, other_leaf: trustme.LeafCert) -> None:
    admin.post("/certificates", {**pem_pair(leaf), "snis": ["api.example.test"]})
    before = admin.entities
    reply = admin.post("/certificates", {**pem_pair(other_leaf), "snis": ["api.example.test"]})
    assert reply.status == 409
    assert reply.body["name"] == "unique constraint violation"
    assert reply.body["message"] == "UNIQUE violation detected on '{name=\"api.example.test\"}'"
    assert reply.result.entities is None and admin.entities is before


def test_key_mismatch_is_schema_violation(admin: Admin, leaf: trustme.LeafCert, other_leaf: trustme.LeafCert) -> None:
    reply = admin.post("/certificates", {"cert": pem_pair(leaf)["cert"], "key": pem_pair(other_leaf)["key"]})
    assert reply.status == 400
    assert reply.body["name"] == "schema violation"
    assert reply.body["code"] == 2
    assert "key" in reply.body["fields"]
    assert reply.body["message"].startswith("schema violation (key: does not match the certificate")
    assert b"PRIVATE KEY" not in reply.raw


def test_expired_upload_names_the_expiry(admin: Admin) -> None:
    leaf = expired_leaf(make_ca())
    reply = admin.post("/certificates", {"cert": leaf.chain_pem(), "key": leaf.key_pem()})
    assert reply.status == 400
    assert "expired on 2024-01-01T00:00:00Z" in reply.body["fields"]["cert"]


def test_read_only_facts_are_refused_on_write(admin: Admin, leaf: trustme.LeafCert) -> None:
    reply = admin.post("/certificates", {**pem_pair(leaf), "fingerprint": "x"})
    assert reply.status == 400 and "read-only" in reply.body["fields"]["fingerprint"]


def test_unknown_field_named(admin: Admin, leaf: trustme.LeafCert) -> None:
    reply = admin.post("/certificates", {**pem_pair(leaf), "snii": ["x"]})
    assert reply.status == 400 and "snii" in reply.body["fields"]


def test_key_sent_with_the_wrong_encoding_is_not_echoed(admin: Admin, leaf: trustme.LeafCert) -> None:
    # `curl -d @key.pem` form-encodes the whole file into one field *name*; the
    # unknown-field message must describe it, not repeat it.
    key_pem = leaf.private_key_pem.bytes()
    reply = admin.request("POST", "/certificates", raw=key_pem,
                          content_type="application/x-www-form-urlencoded")
    assert reply.status == 400
    assert b"PRIVATE KEY" not in reply.raw and key_pem.split(b"\n")[1][:20] not in reply.raw
    assert "not shown" in reply.raw.decode()
    assert admin.get("/certificates").body["data"] == []


def test_key_never_returned(admin: Admin, leaf: trustme.LeafCert) -> None:
    cert_id = admin.post("/certificates", pem_pair(leaf)).body["id"]
    for path in ("/certificates", f"/certificates/{cert_id}"):
        assert b"PRIVATE KEY" not in admin.get(path).raw
    assert b"PRIVATE KEY" not in admin.patch(f"/certificates/{cert_id}", {"tags": ["t"]}).raw
    assert b"PRIVATE KEY" not in admin.put(f"/certificates/{cert_id}", pem_pair(leaf)).raw


def test_expiring_within(admin: Admin) -> None:
    root = make_ca()
    soon = issue(root, "soon.example", not_after=NOW + 10 * 86_400)
    later = issue(root, "later.example", not_after=NOW + 100 * 86_400)
    for item in (soon, later):
        assert admin.post("/certificates", {"cert": item.chain_pem(), "key": item.key_pem()}).status == 201
    names = lambda reply: [c["sans"]["dns"][0] for c in reply.body["data"]]
    assert names(admin.get("/certificates?expiring_within=30d")) == ["soon.example"]
    assert sorted(names(admin.get("/certificates?expiring_within=2400h"))) == ["later.example", "soon.example"]
    assert names(admin.get(f"/certificates?expiring_within={86_400}")) == []
    assert admin.get("/certificates?expiring_within=soon").status == 400
    assert admin.get("/certificates").body["data"][0]["days_to_expiry"] in (10, 100)


def test_ca_certificates(admin: Admin, ca: trustme.CA) -> None:
    pem = ca.cert_pem.bytes().decode()
    created = admin.post("/ca_certificates", {"cert": pem})
    assert created.status == 201
    assert created.body["cert_digest"] == fingerprint(pem) == created.body["fingerprint"]
    assert admin.get(f"/ca_certificates/sha256:{fingerprint(pem)}").status == 200
    not_ca = ca_without_ca_flag()
    reply = admin.post("/ca_certificates", {"cert": not_ca.cert_pem()})
    assert reply.status == 400 and "not a CA certificate" in reply.body["fields"]["cert"]
    assert admin.get("/ca_certificates?expiring_within=30d").body["data"] == []
    expired_root = make_ca(not_after=EXPIRED_AT)
    assert admin.post("/ca_certificates", {"cert": expired_root.cert_pem()}).status == 400


def test_ca_certificate_referenced_by_service_cannot_be_deleted(admin: Admin, ca: trustme.CA) -> None:
    ca_id = admin.post("/ca_certificates", {"cert": ca.cert_pem.bytes().decode()}).body["id"]
    admin.post("/services", {"name": "s", "url": "https://up.example", "ca_certificates": [ca_id]})
    reply = admin.delete(f"/ca_certificates/{ca_id}")
    assert reply.status == 409 and reply.body["fields"] == {"@referenced_by": "services"}
    admin.patch("/services/s", {"ca_certificates": []})
    assert admin.delete(f"/ca_certificates/{ca_id}").status == 204


def test_certificate_delete_cascades_snis_but_not_services(admin: Admin, leaf: trustme.LeafCert) -> None:
    cert_id = admin.post("/certificates", {**pem_pair(leaf), "snis": ["api.example.test"]}).body["id"]
    admin.post("/services", {"name": "s", "url": "https://up.example", "client_certificate": cert_id})
    reply = admin.delete(f"/certificates/{cert_id}")
    assert reply.status == 409 and "services" in reply.body["message"]
    admin.patch("/services/s", {"client_certificate": None})
    assert admin.delete(f"/certificates/{cert_id}").status == 204
    assert admin.entities.snis == {}


def test_put_certificate_by_id_creates_then_replaces(admin: Admin, leaf: trustme.LeafCert) -> None:
    cert_id = "4ae235fd-bcc0-4d08-9689-5ade8f14b3f7"
    assert admin.put(f"/certificates/{cert_id}", pem_pair(leaf)).status == 201
    assert admin.put(f"/certificates/{cert_id}", {**pem_pair(leaf), "tags": ["t"]}).status == 200
    assert admin.put("/certificates/not-a-uuid", pem_pair(leaf)).status == 400
    created = admin.entities.certificates[cert_id].created_at
    admin.now += 10
    admin.patch(f"/certificates/{cert_id}", {"tags": []})
    assert admin.entities.certificates[cert_id].created_at == created
    assert admin.entities.certificates[cert_id].updated_at == admin.now


def test_sni_endpoints(admin: Admin, leaf: trustme.LeafCert) -> None:
    cert_id = admin.post("/certificates", pem_pair(leaf)).body["id"]
    created = admin.post(f"/certificates/{cert_id}/snis", {"name": "*.Example.test"})
    assert created.status == 201 and created.body["name"] == "*.example.test"
    assert admin.get("/snis/%2A.example.test").body["id"] == created.body["id"]
    assert admin.post(f"/certificates/{cert_id}/snis", {"name": "x.example", "certificate": cert_id}).status == 400
    assert admin.post("/snis", {"name": "y.example", "certificate": "nope"}).body["name"] == "foreign key violation"
    assert admin.delete(f"/snis/{created.body['id']}").status == 204
    assert admin.get("/certificates/00000000-0000-4000-8000-000000000099/snis").status == 404
