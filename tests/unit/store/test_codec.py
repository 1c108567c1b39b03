"""Rows: entity → JSON → entity is exact, and malformed rows are reported."""

from __future__ import annotations

from typing import Any

import pytest

from trio_gw.model.credentials import Credential
from trio_gw.model.entities import (
    SNI,
    CACertificate,
    Certificate,
    Consumer,
    Entities,
    Plugin,
    Route,
    Service,
)
from trio_gw.store.base import StoreError
from trio_gw.store.codec import (
    ENTITY_TYPES,
    KINDS,
    Changes,
    decode_entity,
    diff,
    dump_row,
    entity_data,
    load_row,
    unique_values,
)

SAMPLES: dict[str, Any] = {
    "certificates": Certificate(
        id="c1", cert="CERT", key="KEY", cert_alt="ALT", key_alt="KALT", tags=("a", "b"), created_at=1, updated_at=2
    ),
    "ca_certificates": CACertificate(id="ca1", cert="CA", cert_digest="ab" * 32, tags=("x",)),
    "snis": SNI(id="s1", name="*.example.com", certificate="c1"),
    "services": Service(
        id="sv1", host="up.example", name="svc", protocol="https", port=8443, path="/v1",
        client_certificate="c1", tls_verify=False, tls_verify_depth=3, ca_certificates=("ca1",), enabled=False,
    ),
    "routes": Route(
        id="r1", name="rt", service="sv1", protocols=("https",), methods=("GET", "POST"), hosts=("a.example",),
        paths=("/x", "~/y$"), headers={"x-env": ("prod", "stage")}, snis=("a.example",), strip_path=False,
    ),
    "consumers": Consumer(id="u1", username="alice", custom_id="A-1"),
    "plugins": Plugin(
        id="p1", name="mtls-auth", config={"ca_certificates": ["ca1"], "n": 1.5, "nested": {"k": [1, None]}},
        route="r1", enabled=False, protocols=("https",),
    ),
    "credentials": Credential(
        id="cr1", kind="mtls_auth", consumer="u1", certificate="PEM", fingerprint="ab" * 32, status="scheduled",
        valid_from=10, valid_until=20, bound_certificates=("cd" * 32,), tags=("t",),
    ),
}  # fmt: skip


def roundtrip(kind: str, entity: Any) -> Any:
    text = dump_row(f"{kind} {entity.id}", entity_data(entity))
    return decode_entity(kind, entity.id, load_row(kind, text))


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_round_trips_exactly(kind: str) -> None:
    entity = SAMPLES[kind]
    back = roundtrip(kind, entity)
    assert back == entity
    assert type(back) is ENTITY_TYPES[kind]


@pytest.mark.parametrize("kind", KINDS)
def test_defaults_round_trip(kind: str) -> None:
    required = {"certificates": {"cert": "C", "key": "K"}, "ca_certificates": {"cert": "C"},
                "snis": {"name": "a", "certificate": "c"}, "services": {"host": "h"}, "plugins": {"name": "p"},
                "credentials": {"kind": "key_auth", "consumer": "u1"}}  # fmt: skip
    entity = ENTITY_TYPES[kind](id="i", **required.get(kind, {}))
    assert roundtrip(kind, entity) == entity


def test_tuples_come_back_as_tuples_and_mappings_as_dicts() -> None:
    route = roundtrip("routes", SAMPLES["routes"])
    assert isinstance(route.methods, tuple)
    assert isinstance(route.headers, dict)
    assert route.headers["x-env"] == ("prod", "stage")


def test_id_is_not_in_the_json() -> None:
    assert "id" not in entity_data(SAMPLES["services"])


def test_unique_values() -> None:
    assert unique_values("consumers", SAMPLES["consumers"]) == ("alice", "A-1")
    assert unique_values("plugins", SAMPLES["plugins"]) == ("mtls-auth", "r1", None, None)
    assert unique_values("certificates", SAMPLES["certificates"]) == ()


def test_a_value_json_cannot_hold_is_a_store_error() -> None:
    plugin = Plugin(id="p", name="x", config={"b": b"bytes"})
    with pytest.raises(StoreError, match="plugins p: cannot be stored"):
        dump_row("plugins p", entity_data(plugin))
    with pytest.raises(StoreError, match="cannot be stored"):
        dump_row("plugins p", entity_data(Plugin(id="p", name="x", config={"f": float("nan")})))


@pytest.mark.parametrize(
    ("text", "message"),
    [("{not json", "not valid JSON"), ("[1, 2]", "not a JSON object")],
)
def test_unreadable_rows(text: str, message: str) -> None:
    with pytest.raises(StoreError, match=message):
        load_row("services x", text)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"host": 5}, "services x: host: expected str, found int"),
        ({"host": "h", "port": True}, "port: expected int, found bool"),
        ({"host": "h", "enabled": 1}, "enabled: expected bool"),
        ({"host": "h", "tags": "a"}, "tags: expected a list"),
        ({"host": "h", "tags": [1]}, "tags: expected str"),
        ({"host": "h", "colour": "red"}, r"unknown fields \['colour'\]"),
        ({"host": "h", "id": "y"}, r"unknown fields \['id'\]"),
        ({}, "missing 1 required"),
    ],
)
def test_rows_that_do_not_fit_the_entity(data: dict[str, Any], message: str) -> None:
    with pytest.raises(StoreError, match=message):
        decode_entity("services", "x", data)


def test_route_headers_must_be_an_object() -> None:
    with pytest.raises(StoreError, match="headers: expected an object"):
        decode_entity("routes", "r", {"headers": ["x"]})


def test_optional_fields_accept_null_and_check_otherwise() -> None:
    assert decode_entity("services", "x", {"host": "h", "tls_verify": None}).tls_verify is None
    with pytest.raises(StoreError, match="tls_verify: expected bool"):
        decode_entity("services", "x", {"host": "h", "tls_verify": "yes"})


def test_diff_finds_inserts_updates_and_deletes() -> None:
    a, b, c = (Service(id=i, host="h") for i in "abc")
    old = Entities(services={"a": a, "b": b})
    new = Entities(services={"a": a, "b": Service(id="b", host="other"), "c": c})
    changes = diff(old, new)
    assert set(changes) == {"services"}
    assert {e.id for e in changes["services"].upserts} == {"b", "c"}
    assert changes["services"].deletes == ()
    assert diff(new, old)["services"].deletes == ("c",)
    assert diff(old, old) == {}
    assert not Changes()
