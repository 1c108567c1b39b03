"""Request bodies: JSON, Kong's url-encoded form keys, multipart, bad bodies."""

from __future__ import annotations

import pytest

from tests.unit.admin.conftest import Admin, multipart
from trio_gw.admin.bodies import parse_body
from trio_gw.admin.errors import AdminError

FORM = {"content-type": "application/x-www-form-urlencoded"}


def test_form_keys_nest_and_coerce() -> None:
    body = b"name=r&paths[]=/a&paths[]=/b&service.id=abc&strip_path=false&regex_priority=3&headers.x-v=1"
    assert parse_body(FORM, body, "routes") == {
        "name": "r", "paths": ["/a", "/b"], "service": {"id": "abc"}, "strip_path": False,
        "regex_priority": 3, "headers": {"x-v": ["1"]},
    }  # fmt: skip


def test_form_repeated_keys_and_indexes() -> None:
    assert parse_body(FORM, b"hosts=a&hosts=b&methods=GET", "routes") == {"hosts": ["a", "b"], "methods": ["GET"]}
    assert parse_body(FORM, b"paths[2]=/c&paths[1]=/b", "routes") == {"paths": ["/b", "/c"]}
    assert parse_body(FORM, b"config.allow=a&config.allow=b&config.x=1", "plugins") == {
        "config": {"allow": ["a", "b"], "x": "1"}
    }
    assert parse_body(FORM, b"port=&tags=", "services") == {"port": None, "tags": []}
    assert parse_body(FORM, b"port=8o", "services") == {"port": "8o"}


@pytest.mark.parametrize("body", [b"a=1&a.b=2", b"a.b=2&a=1", b".x=1", b"[]=1", b"a.b.c.d.e.f.g.h.i=1", b"\xff=1", b"a[99999]=1"])
def test_bad_form_keys(body: bytes) -> None:
    with pytest.raises(AdminError) as info:
        parse_body(FORM, body, "services")
    assert info.value.status == 400


def test_json_bodies() -> None:
    json_ct = {"content-type": "application/json; charset=utf-8"}
    assert parse_body(json_ct, b'{"a": 1}', "services") == {"a": 1}
    assert parse_body({}, b"", "services") == {}
    for bad in (b"{", b"[1]", b"NaN", b"[" * 100_000):
        with pytest.raises(AdminError) as info:
            parse_body(json_ct, bad, "services")
        assert info.value.status == 400


def test_unsupported_media_type(admin: Admin) -> None:
    reply = admin.post("/services", raw=b"host: x", content_type="text/yaml")
    assert reply.status == 415
    assert admin.post("/services", raw=b"host=x").status == 415


def test_multipart_errors() -> None:
    with pytest.raises(AdminError):
        parse_body({"content-type": "multipart/form-data"}, b"junk", "certificates")
    data, ct = multipart({"a": "1"})
    assert parse_body({"content-type": ct}, data, "consumers") == {"a": "1"}
    nameless = data.replace(b'; name="a"', b"")
    with pytest.raises(AdminError):
        parse_body({"content-type": ct}, nameless, "consumers")


def test_form_create_service(admin: Admin) -> None:
    reply = admin.post("/services", raw=b"name=s&host=up.example&port=8080&tags[]=a&tags[]=b", content_type=FORM["content-type"])
    assert reply.status == 201 and reply.body["port"] == 8080 and reply.body["tags"] == ["a", "b"]
    bad = admin.post("/services", raw=b"host=up.example&port=eighty", content_type=FORM["content-type"])
    assert bad.status == 400 and "port" in bad.body["fields"]
