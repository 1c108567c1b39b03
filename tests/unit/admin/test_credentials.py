"""Consumer credentials through the Admin API: mtls-auth, key-auth, subscriptions."""

from __future__ import annotations

import hashlib

from trio_gw.testing.pki import build_certificate, make_ca

from .conftest import NOW, Admin

CA = make_ca()
CERT = build_certificate(issuer=CA, common_name="client-1")
FINGERPRINT = hashlib.sha256(CERT.cert_der()).hexdigest()


def test_mtls_credential_lifecycle(admin: Admin) -> None:
    alice = admin.post("/consumers", {"username": "alice"}).body["id"]
    created = admin.post("/consumers/alice/mtls-auth", {"certificate": CERT.cert_pem(), "valid_until": NOW + 10})
    assert created.status == 201, created.body
    assert created.body["fingerprint"] == FINGERPRINT and created.body["consumer"] == {"id": alice}
    assert created.body["status"] == "active"
    (stored,) = admin.entities.credentials.values()
    assert stored.consumer == alice and stored.valid_until == NOW + 10
    listed = admin.get("/consumers/alice/mtls-auth").body["data"]
    assert listed == [created.body]
    assert admin.delete(f"/consumers/alice/mtls-auth/{created.body['id']}").status == 204
    assert admin.entities.credentials == {}


def test_certificate_of_another_consumer_is_409(admin: Admin) -> None:
    admin.post("/consumers", {"username": "alice"})
    admin.post("/consumers", {"username": "bob"})
    assert admin.post("/consumers/alice/mtls-auth", {"fingerprint": f"sha256:{FINGERPRINT}"}).status == 201
    taken = admin.post("/consumers/bob/mtls-auth", {"certificate": CERT.cert_pem()})
    assert taken.status == 409 and "already belongs" in taken.body["message"]
    # The same consumer may hold it twice (e.g. a new validity window).
    assert admin.post("/consumers/alice/mtls-auth", {"certificate": CERT.cert_pem(), "status": "scheduled",
                                                     "valid_from": NOW + 5}).status == 201


def test_bad_credentials_are_400(admin: Admin) -> None:
    admin.post("/consumers", {"username": "alice"})
    assert admin.post("/consumers/alice/mtls-auth", {}).status == 400
    assert admin.post("/consumers/alice/mtls-auth", {"subject_name": "x", "nope": 1}).status == 400
    missing = admin.post("/consumers/alice/mtls-auth", {"subject_name": "x",
                                                        "ca_certificate": "9d4b1f0e-1c4c-4ad4-8f3c-1b2f3e4d5a6b"})
    assert missing.status == 400 and "ca_certificate" in missing.body["fields"]
    assert admin.post("/consumers/alice/key-auth", {}).status == 400
    assert admin.post("/consumers/alice/subscriptions", {"service": "nope"}).status == 400


def test_key_auth_and_subscriptions(admin: Admin) -> None:
    admin.post("/consumers", {"username": "alice"})
    admin.post("/consumers", {"username": "bob"})
    svc = admin.post("/services", {"name": "billing", "host": "up.example"}).body["id"]
    key = admin.post("/consumers/alice/key-auth", {"key": "s3cret", "bound_certificates": [FINGERPRINT]})
    assert key.status == 201 and key.body["bound_certificates"] == [FINGERPRINT]
    assert admin.post("/consumers/bob/key-auth", {"key": "s3cret"}).status == 409
    sub = admin.post("/consumers/alice/subscriptions", {"service": "billing"})
    assert sub.status == 201 and sub.body["service"] == svc
    # Deleting the service ends its subscriptions; deleting the consumer removes its credentials.
    assert admin.delete("/services/billing").status == 204
    assert [c.kind for c in admin.entities.credentials.values()] == ["key_auth"]
    assert admin.delete("/consumers/alice").status == 204
    assert admin.entities.credentials == {}


def test_ca_bound_by_a_credential_cannot_be_deleted(admin: Admin) -> None:
    ca = admin.post("/ca_certificates", {"cert": CA.cert_pem()}).body["id"]
    admin.post("/consumers", {"username": "alice"})
    assert admin.post("/consumers/alice/mtls-auth", {"subject_name": "client-1", "ca_certificate": ca}).status == 201
    refused = admin.delete(f"/ca_certificates/{ca}")
    assert refused.status == 409 and "credentials" in refused.body["message"]


def test_certificate_given_base64_is_accepted(admin: Admin) -> None:
    """Gravitee pastes the client certificate base64-encoded: of its DER, or of its PEM."""
    import base64

    admin.post("/consumers", {"username": "shop"})
    der = admin.post("/consumers/shop/mtls-auth", {"certificate": base64.b64encode(CERT.cert_der()).decode()})
    assert der.status == 201 and der.body["fingerprint"] == FINGERPRINT, der.body
    assert der.body["certificate"].startswith("-----BEGIN CERTIFICATE-----")  # stored as PEM
    admin.delete(f"/consumers/shop/mtls-auth/{der.body['id']}")
    pem = admin.post("/consumers/shop/mtls-auth", {"certificate": base64.b64encode(CERT.cert_pem().encode()).decode()})
    assert pem.status == 201 and pem.body["fingerprint"] == FINGERPRINT, pem.body


def test_certificate_that_does_not_parse_is_one_clear_400(admin: Admin) -> None:
    admin.post("/consumers", {"username": "shop"})
    bad = admin.post("/consumers/shop/mtls-auth", {"certificate": "bm90IGEgY2VydGlmaWNhdGU="})
    assert bad.status == 400
    assert bad.body["fields"] == {"certificate": "unparsable certificate: base64 content is neither DER nor PEM"}
    assert admin.get("/consumers/shop/mtls-auth").body["data"] == []
