"""Kong's /acme endpoints, pure parts: paths and methods, form bodies, one host's certificate."""

from __future__ import annotations

import pytest

from trio_gw.admin.acme import (
    AcmeEndpoint,
    acme_certificate_document,
    list_acme_certificates,
    match_acme_path,
    parse_acme_create,
    show_acme_certificate,
)
from trio_gw.admin.errors import AdminError
from trio_gw.model.declarative import parse_declarative
from trio_gw.testing.pki import EXPIRED_AT, issue, make_ca

NOW = 1_800_000_000
CA = make_ca(common_name="Pebble Intermediate CA 1")


@pytest.mark.parametrize("method, path, endpoint", [
    ("POST", "/acme", AcmeEndpoint("create")),
    ("PATCH", "/acme/", AcmeEndpoint("renew")),
    ("GET", "/acme/certificates", AcmeEndpoint("list")),
    ("HEAD", "/acme/certificates", AcmeEndpoint("list")),
    ("GET", "/acme/certificates/API.example", AcmeEndpoint("show", "api.example")),
    ("GET", "/certificates", None),
    ("GET", "/acmex", None),
    ("GET", "/acme/certificates/a/b", None),
])
def test_paths(method: str, path: str, endpoint: AcmeEndpoint | None) -> None:
    assert match_acme_path(method, path) == endpoint


@pytest.mark.parametrize("method, path, allowed", [
    ("GET", "/acme", "POST, PATCH"), ("DELETE", "/acme/certificates", "GET"),
    ("POST", "/acme/certificates/a.example", "GET"),
])
def test_other_methods_are_405(method: str, path: str, allowed: str) -> None:
    with pytest.raises(AdminError) as info:
        match_acme_path(method, path)
    assert info.value.status == 405 and ("allow", allowed) in info.value.headers


def test_form_bodies_as_curl_sends_them() -> None:
    form = "application/x-www-form-urlencoded"
    assert parse_acme_create(b"host=a.example&test_http_challenge_flow=true", form).test_http_challenge_flow
    plain = parse_acme_create(b"host=a.example", form + "; charset=utf-8")
    assert (plain.host, plain.test_http_challenge_flow) == ("a.example", False)
    with pytest.raises(AdminError) as info:
        parse_acme_create(b"host=a.example:80", form)
    assert info.value.body["message"] == "port is not allowed in host"
    with pytest.raises(AdminError):
        parse_acme_create(b"test_http_challenge_flow=maybe&host=a.example", form)


def test_show_and_invalid_only() -> None:
    good = issue(CA, "a.example")
    old = issue(CA, "old.example", not_before=EXPIRED_AT - 86400, not_after=EXPIRED_AT)
    entities = parse_declarative({"_format_version": "3.0", "certificates": [
        acme_certificate_document(good.chain_pem(), good.key_pem(), ["a.example"]),
        acme_certificate_document(old.chain_pem(), old.key_pem(), ["old.example"])]}, now=EXPIRED_AT - 10)
    status, body = show_acme_certificate(entities, "a.example", now=NOW)
    assert status == 200 and body["data"]["host"] == "a.example" and body["data"]["valid"]
    assert len(body["data"]["digest"].split(":")) == 20  # Kong's SHA-1 digest, AB:CD:...
    assert show_acme_certificate(entities, "m.example", now=NOW) == (
        404, {"message": "Certificate for host m.example not found in storage"})
    invalid = list_acme_certificates(entities, now=NOW, invalid_only=True)["data"]
    assert [row["host"] for row in invalid] == ["old.example"]
