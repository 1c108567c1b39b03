"""Services, routes, consumers, plugins, listing, node info and the error responses."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.unit.admin.conftest import Admin
from trio_gw.admin import DATABASE_OFF
from trio_gw.admin.openapi import openapi_document


def test_root_node_info(admin: Admin) -> None:
    admin.post("/services", {"name": "s", "host": "up.example"})
    reply = admin.get("/")
    assert reply.status == 200
    assert reply.body["version"] and reply.body["configuration"]["entities"]["services"] == 1
    assert reply.headers["content-type"].startswith("application/json")


def test_openapi_served(admin: Admin) -> None:
    assert admin.get("/openapi.json").body == json.loads(json.dumps(openapi_document()))


def test_service_crud(admin: Admin) -> None:
    created = admin.post("/services", {"name": "billing", "url": "http://up.example:8080/base"})
    assert created.status == 201
    assert created.body.items() >= {
        "name": "billing", "protocol": "http", "host": "up.example", "port": 8080, "path": "/base",
        "retries": 5, "connect_timeout": 60000, "write_timeout": 60000, "read_timeout": 60000, "enabled": True,
        "client_certificate": None, "tls_verify": None, "tls_verify_depth": None, "ca_certificates": [],
        "tags": [], "created_at": admin.now, "updated_at": admin.now,
    }.items()  # fmt: skip
    sid = created.body["id"]
    assert admin.get("/services/billing").body["id"] == sid
    assert admin.get(f"/services/{sid}").body["name"] == "billing"
    assert admin.patch("/services/billing", {"url": "https://up.example"}).body["port"] == 443
    replaced = admin.put("/services/billing", {"host": "other.example"})
    assert replaced.status == 200 and replaced.body["id"] == sid and replaced.body["port"] == 80
    assert admin.delete("/services/billing").status == 204
    assert admin.get("/services/billing").status == 404
    assert admin.delete("/services/billing").status == 404


def test_put_by_name_creates(admin: Admin) -> None:
    reply = admin.put("/services/fresh", {"host": "up.example"})
    assert reply.status == 201 and reply.body["name"] == "fresh"
    assert admin.put("/services/fresh", {"host": "up.example", "name": "other"}).status == 400
    uuid = "4ae235fd-bcc0-4d08-9689-5ade8f14b3f7"
    assert admin.put(f"/services/{uuid}", {"host": "up.example", "id": uuid}).status == 201
    assert admin.put(f"/services/{uuid}", {"host": "up.example", "id": "0b8e1f2c-3d4a-4b5c-8d6e-7f8091a2b3c4"}).status == 400


def test_routes_nested_and_references(admin: Admin) -> None:
    sid = admin.post("/services", {"name": "s", "host": "up.example"}).body["id"]
    nested = admin.post("/services/s/routes", {"name": "r", "paths": ["/x"]})
    assert nested.status == 201 and nested.body["service"] == {"id": sid}
    top = admin.post("/routes", {"name": "r2", "hosts": ["a.example"], "service": {"name": "s"}})
    assert top.body["service"] == {"id": sid}
    assert [r["name"] for r in admin.get(f"/services/{sid}/routes").body["data"]] == ["r", "r2"]
    missing = admin.post("/routes", {"paths": ["/y"], "service": {"id": "4ae235fd-bcc0-4d08-9689-5ade8f14b3f7"}})
    assert missing.status == 400 and missing.body["name"] == "foreign key violation"
    assert "service" in missing.body["fields"]
    delete = admin.delete("/services/s")
    assert delete.status == 409 and delete.body["fields"] == {"@referenced_by": "routes"}
    assert admin.patch("/routes/r", {"paths": ["/z"]}).body["paths"] == ["/z"]
    assert admin.get("/routes/r").body["paths"] == ["/z"]


def test_route_needs_a_matcher(admin: Admin) -> None:
    reply = admin.post("/routes", {"name": "r"})
    assert reply.status == 400 and "@entity" in reply.body["fields"]


def test_consumers_and_plugins(admin: Admin) -> None:
    cid = admin.post("/consumers", {"username": "alice"}).body["id"]
    plugin = admin.post("/consumers/alice/plugins", {"name": "acl", "config": {"allow": ["a"]}})
    assert plugin.status == 201 and plugin.body["consumer"] == {"id": cid}
    assert admin.get(f"/consumers/{cid}/plugins").body["data"][0]["name"] == "acl"
    dup = admin.post("/plugins", {"name": "acl", "consumer": cid})
    assert dup.status == 409 and dup.body["name"] == "unique constraint violation"
    patched = admin.patch(f"/plugins/{plugin.body['id']}", {"config": {"deny": ["b"]}})
    assert patched.body["config"] == {"allow": ["a"], "deny": ["b"]}
    assert admin.delete("/consumers/alice").status == 204
    assert admin.entities.plugins == {}
    assert admin.post("/consumers", {}).status == 400


def test_route_and_service_plugins(admin: Admin) -> None:
    admin.post("/services", {"name": "s", "host": "up.example"})
    rid = admin.post("/services/s/routes", {"paths": ["/"]}).body["id"]
    assert admin.post("/services/s/plugins", {"name": "a"}).status == 201
    assert admin.post(f"/routes/{rid}/plugins", {"name": "a"}).status == 201
    assert len(admin.get(f"/routes/{rid}/plugins").body["data"]) == 1
    assert admin.delete(f"/routes/{rid}").status == 204
    assert len(admin.entities.plugins) == 1


def test_unique_names(admin: Admin) -> None:
    admin.post("/services", {"name": "s", "host": "up.example"})
    reply = admin.post("/services", {"name": "s", "host": "up.example"})
    assert reply.status == 409
    assert reply.body == {
        "code": 5, "name": "unique constraint violation",
        "message": "UNIQUE violation detected on '{name=\"s\"}'", "fields": {"name": "s"},
    }  # fmt: skip
    admin.post("/consumers", {"username": "u", "custom_id": "c"})
    assert admin.post("/consumers", {"username": "v", "custom_id": "c"}).status == 409


def test_primary_key_violation(admin: Admin) -> None:
    uuid = "4ae235fd-bcc0-4d08-9689-5ade8f14b3f7"
    assert admin.post("/consumers", {"id": uuid, "username": "a"}).status == 201
    reply = admin.post("/consumers", {"id": uuid, "username": "b"})
    assert reply.status == 409 and reply.body["name"] == "primary key violation"


def test_pagination_and_tags(admin: Admin) -> None:
    for i in range(5):
        admin.post("/consumers", {"username": f"u{i}", "tags": ["all", "even" if i % 2 == 0 else "odd"]})
    first = admin.get("/consumers?size=2")
    assert len(first.body["data"]) == 2 and first.body["next"].startswith("/consumers?offset=")
    seen = [c["username"] for c in first.body["data"]]
    reply = first
    while reply.body["next"]:
        reply = admin.get(reply.body["next"])
        seen += [c["username"] for c in reply.body["data"]]
    assert sorted(seen) == [f"u{i}" for i in range(5)] and len(seen) == 5
    assert len(admin.get("/consumers?tags=all,even").body["data"]) == 3
    assert len(admin.get("/consumers?tags=even/odd").body["data"]) == 5
    assert admin.get("/consumers?tags=a,b/c").status == 400
    for size in ("0", "1001", "x", "-1"):
        reply = admin.get(f"/consumers?size={size}")
        assert reply.status == 400 and reply.body["name"] == "invalid size"
    assert admin.get("/consumers?offset=%FF").status in (200, 400)


@pytest.mark.parametrize(
    ("method", "path"), [("POST", "/"), ("DELETE", "/services"), ("PUT", "/services"), ("POST", "/services/x"), ("TRACE", "/routes")]
)
def test_method_not_allowed(admin: Admin, method: str, path: str) -> None:
    reply = admin.request(method, path)
    assert reply.status == 405 and reply.body == {"message": "Method not allowed"}
    assert "allow" in reply.headers


@pytest.mark.parametrize("path", ["/nope", "/services/x/y", "/services/x/routes/y", "//", "/consumers/x/mtls-auth", "/%ff"])
def test_not_found(admin: Admin, path: str) -> None:
    reply = admin.get(path)
    assert reply.status == 404 and reply.body == {"message": "Not found"}


def test_read_only(admin: Admin) -> None:
    admin.read_only_reason = DATABASE_OFF
    assert admin.get("/services").status == 200
    reply = admin.post("/services", {"host": "up.example"})
    assert reply.status == 405
    assert reply.body["message"] == (
        "cannot create a service when database is 'off': the declarative configuration is read-only; "
        "edit the file and reload (SIGHUP)"
    )
    assert reply.result.entities is None
    assert admin.delete("/ca_certificates/x").body["message"].startswith("cannot delete a CA certificate when")


def test_registered_credential_kind_is_served(admin: Admin, monkeypatch: pytest.MonkeyPatch) -> None:
    from trio_gw.admin import credentials

    store: dict[str, dict[str, str]] = {}

    def create(entities: Any, consumer: str, body: Any, now: int, new_id: Any) -> tuple[Any, dict[str, str]]:
        item = {"id": new_id(), "consumer": consumer, **body}
        store[item["id"]] = item
        return entities, item

    def delete(entities: Any, consumer: str, item: str) -> Any:
        return entities if store.pop(item, None) else None

    kind = credentials.CredentialKind(
        "fake-auth", lambda e, c: [i for i in store.values() if i["consumer"] == c], create, delete, {"type": "object"}
    )
    monkeypatch.setitem(credentials.CREDENTIAL_ENDPOINTS, "fake-auth", kind)
    cid = admin.post("/consumers", {"username": "alice"}).body["id"]
    created = admin.post("/consumers/alice/fake-auth", {"x": "1"})
    assert created.status == 201 and created.body["consumer"] == cid
    assert admin.get("/consumers/alice/fake-auth").body["data"] == [created.body]
    assert admin.get(f"/consumers/alice/fake-auth/{created.body['id']}").body == created.body
    assert admin.get("/consumers/alice/fake-auth/nope").status == 404
    assert admin.get("/consumers/bob/fake-auth").status == 404
    assert admin.delete(f"/consumers/alice/fake-auth/{created.body['id']}").status == 204
    assert admin.delete(f"/consumers/alice/fake-auth/{created.body['id']}").status == 404
    assert "/consumers/{key}/fake-auth/{item}" in admin.get("/openapi.json").body["paths"]
    admin.read_only_reason = "database is 'off'"
    assert "credentials" in admin.post("/consumers/alice/fake-auth", {}).body["message"]


def test_service_fields_beyond_kong_survive_patch(admin: Admin) -> None:
    import trustme

    from tests.unit.admin.conftest import pem_pair

    leaf = trustme.CA().issue_cert("client.example")
    a = admin.post("/certificates", pem_pair(leaf)).body["id"]
    b = admin.post("/certificates", pem_pair(leaf)).body["id"]
    body = {"name": "s", "url": "https://up.example", "certificates": [a, b], "tls_min_version": "TLSv1.2",
            "proxy_url": "http://user:secret@proxy.example:3128"}  # fmt: skip
    created = admin.post("/services", body)
    assert created.status == 201, created.body
    assert created.body["client_certificate"] == {"id": a}
    assert created.body["client_certificate_alternates"] == [b]
    assert created.body["proxy_url"] == "http://user:***@proxy.example:3128"
    assert b"secret" not in created.raw
    patched = admin.patch("/services/s", {"retries": 1})
    assert patched.status == 200, patched.body
    service = admin.entities.services[created.body["id"]]
    assert service.client_certificate_alternates == (b,) and service.tls_min_version == "1.2"
    assert service.proxy_url == "http://user:secret@proxy.example:3128"
