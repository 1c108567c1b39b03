"""The declarative loader: documents, nesting, ids, references, certificates, dump."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import trustme
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from trio_gw.errors import ConfigError, Problem
from trio_gw.model import declarative
from trio_gw.model.declarative import dump_declarative, load_declarative_text, parse_declarative
from trio_gw.model.entities import Entities
from trio_gw.model.fields import Context

NOW = 1_750_000_000  # trustme certificates are valid from 2000 to 3000
EXAMPLES = Path(__file__).resolve().parents[3] / "docs" / "examples"
UUID_A = "4ae235fd-bcc0-4d08-9689-5ade8f14b3f7"
UUID_B = "0b8e1f2c-3d4a-4b5c-8d6e-7f8091a2b3c4"


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def leaf(ca: trustme.CA) -> trustme.LeafCert:
    return ca.issue_cert("api.example.test")


def cert_of(leaf: trustme.LeafCert) -> dict[str, str]:
    return {"cert": leaf.cert_chain_pems[0].bytes().decode(), "key": leaf.private_key_pem.bytes().decode()}


def fingerprint(pem: bytes) -> str:
    der = x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)
    return hashlib.sha256(der).hexdigest()


def load(**entities: Any) -> Entities:
    return parse_declarative({"_format_version": "3.0", **entities}, now=NOW)


def problems(doc: Mapping[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_declarative(doc, now=NOW)
    return str(info.value).splitlines()


def problems_of(**entities: Any) -> list[str]:
    return problems({"_format_version": "3.0", **entities})


# --- the document -------------------------------------------------------------------------


def test_full_document_is_flattened_with_references(ca: trustme.CA, leaf: trustme.LeafCert) -> None:
    entities = load(
        certificates=[{**cert_of(leaf), "snis": ["api.example.test", {"name": "*.example.test", "tags": ["t"]}]}],
        ca_certificates=[{"cert": ca.cert_pem.bytes().decode()}],
        services=[
            {
                "name": "billing",
                "url": "https://billing.internal:8443/v1",
                "routes": [{"name": "invoices", "paths": ["/invoices"], "plugins": [{"name": "acl"}]}],
                "plugins": [{"name": "cors"}],
            }
        ],
        routes=[{"name": "loose", "hosts": ["a.example"], "service": "billing"}],
        consumers=[{"username": "alice", "plugins": [{"name": "rate-limiting"}]}],
        plugins=[{"name": "prometheus"}],
    )
    (svc,) = entities.services.values()
    (cert,) = entities.certificates.values()
    routes = {r.name: r for r in entities.routes.values()}
    assert routes["invoices"].service == routes["loose"].service == svc.id
    assert {s.name: (s.certificate, s.tags) for s in entities.snis.values()} == {
        "api.example.test": (cert.id, ()),
        "*.example.test": (cert.id, ("t",)),
    }
    (alice,) = entities.consumers.values()
    scopes = {p.name: (p.service, p.route, p.consumer) for p in entities.plugins.values()}
    assert scopes == {
        "acl": (None, routes["invoices"].id, None),
        "cors": (svc.id, None, None),
        "rate-limiting": (None, None, alice.id),
        "prometheus": (None, None, None),
    }
    assert all(key == e.id for kind in ("services", "routes", "snis", "plugins") for key, e in getattr(entities, kind).items())
    assert cert.created_at == cert.updated_at == svc.created_at == NOW
    (ca_entity,) = entities.ca_certificates.values()
    assert ca_entity.cert_digest == fingerprint(ca.cert_pem.bytes())


def test_empty_document_gives_no_entities() -> None:
    assert load() == Entities()


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        ({}, ['_format_version: required field missing (use "3.0")']),
        ({"_format_version": 3.0}, ['_format_version: expected a string: quote it ("3.0")']),
        ({"_format_version": "4.0"}, ["_format_version: expected one of 1.1, 2.1, 3.0, got '4.0'"]),
        ({"_format_version": "3.0", "service": []}, ["service: unknown field (did you mean 'services'?)"]),
        ({"_format_version": "3.0", "_transform": "no"}, ["_transform: expected true or false, got 'no'"]),
        ({"_format_version": "3.0", "_ignore": "x"}, ["_ignore: expected a list, got 'x'"]),
        ({"_format_version": "3.0", "_info": {"defaults": {"service": {}}}}, ["_info.defaults: not supported yet (only Kong's default None is accepted)"]),
        ({"_format_version": "3.0", "_info": {"select_tag": []}}, ["_info.select_tag: unknown field (did you mean 'select_tags'?)"]),
        ({"_format_version": "3.0", "services": {"name": "x"}}, ["services: expected a list, got a mapping"]),
        ({"_format_version": "3.0", "services": ["billing"]}, ["services[0]: expected a mapping, got 'billing'"]),
    ],
)
def test_document_level_errors(doc: dict[str, Any], expected: list[str]) -> None:
    assert problems(doc) == expected


def test_document_must_be_a_mapping() -> None:
    with pytest.raises(ConfigError, match="expected a mapping at the top of the document, got a list"):
        parse_declarative([], now=NOW)  # type: ignore[arg-type]


def test_comment_ignore_transform_and_select_tags() -> None:
    entities = parse_declarative(
        {
            "_format_version": "3.0",
            "_transform": False,
            "_comment": "made by hand",
            "_ignore": [{"anything": 1}],
            "_info": {"select_tags": ["team-a"]},
            "services": [{"name": "s", "host": "u.example", "tags": ["x", "team-a"]}],
            "consumers": [{"username": "c"}],
        },
        now=NOW,
    )
    assert [s.tags for s in entities.services.values()] == [("x", "team-a")]
    assert [c.tags for c in entities.consumers.values()] == [("team-a",)]


def test_all_problems_are_reported_at_once() -> None:
    got = problems_of(
        services=[{"name": "s", "host": "u.example", "port": "abc", "routes": [{"paths": ["/"]}, {"pahts": ["/x"]}]}],
        routes=[{"paths": ["/"], "service": "missing"}],
        consumers=[{}],
    )
    assert got == [
        "services[0].port: expected an integer between 0 and 65535, got 'abc'",
        "services[0].routes[1].pahts: unknown field (did you mean 'paths'?)",
        "services[0].routes[1]: must set one of 'methods', 'hosts', 'headers', 'paths', 'snis' (a route must match something)",
        "consumers[0]: at least one of 'username' or 'custom_id' is required",
        "routes[0].service: no service with id or name 'missing'",
    ]


def test_nested_route_may_not_name_a_service() -> None:
    got = problems_of(services=[{"name": "s", "host": "u.example", "routes": [{"paths": ["/"], "service": "s"}]}])
    assert got == ["services[0].routes[0].service: not allowed in a route nested in a service (it belongs to that service)"]


@pytest.mark.parametrize("reference", ["s", {"name": "s"}, {"id": UUID_A}, UUID_A.upper()])
def test_route_references_its_service(reference: Any) -> None:
    entities = load(services=[{"id": UUID_A, "name": "s", "host": "u.example"}], routes=[{"paths": ["/"], "service": reference}])
    assert [r.service for r in entities.routes.values()] == [UUID_A]


def test_bad_reference_shapes() -> None:
    assert problems_of(routes=[{"paths": ["/"], "service": {"id": "a", "name": "b"}}]) == [
        "routes[0].service: expected a string or {id: ...} or {name: ...}"
    ]


# --- certificates -------------------------------------------------------------------------


def test_certificate_problems_are_prefixed(ca: trustme.CA, leaf: trustme.LeafCert) -> None:
    other = ca.issue_cert("other.example.test")
    doc = {"cert": leaf.cert_chain_pems[0].bytes().decode(), "key": other.private_key_pem.bytes().decode()}
    (message,) = problems_of(certificates=[doc])
    assert message.startswith("certificates[0].key: does not match the certificate in cert")
    assert "PRIVATE KEY" not in message


def test_certificate_fields(leaf: trustme.LeafCert) -> None:
    assert problems_of(certificates=[{**cert_of(leaf), "crt": "x", "id": "nope", "tags": [1]}]) == [
        "certificates[0].crt: unknown field (did you mean 'cert'?)",
        "certificates[0].id: expected a UUID such as '4ae235fd-bcc0-4d08-9689-5ade8f14b3f7', got 'nope'",
        "certificates[0].tags[0]: expected a non-empty string, got 1",
    ]
    assert problems_of(certificates=[{"key": "x"}])[0] == "certificates[0].cert: required"


def test_ca_certificate_must_be_a_ca(leaf: trustme.LeafCert) -> None:
    got = problems_of(ca_certificates=[{"cert": leaf.cert_chain_pems[0].bytes().decode()}])
    assert got == ["ca_certificates[0].cert: not a CA certificate: basicConstraints CA is false/absent"]


def test_nested_sni_forms_and_errors(leaf: trustme.LeafCert) -> None:
    got = problems_of(
        certificates=[{**cert_of(leaf), "snis": ["10.0.0.1", {"nme": "a.example"}, 5, {"name": "b.example", "certificate": "x"}]}]
    )
    assert got == [
        "certificates[0].snis[2]: expected a server name or a mapping, got 5",
        "certificates[0].snis[0]: invalid server name '10.0.0.1': must not be an IP address",
        "certificates[0].snis[1].nme: unknown field (did you mean 'name'?)",
        "certificates[0].snis[1].name: required field missing",
        "certificates[0].snis[3].certificate: not allowed in an SNI nested in a certificate (it belongs to that certificate)",
    ]


def test_duplicate_sni_names_across_nesting(leaf: trustme.LeafCert) -> None:
    got = problems_of(
        certificates=[{**cert_of(leaf), "id": UUID_A, "snis": ["a.example", "A.example"]}],
        snis=[{"name": "a.example", "certificate": UUID_A}],
    )
    assert got == [
        "certificates[0].snis[1]: duplicate server name 'a.example' (also at certificates[0].snis[0])",
        "snis[0].name: duplicate server name 'a.example' (also at certificates[0].snis[0])",
    ]


@pytest.mark.parametrize("form", ["id", "id-mapping", "fingerprint", "fingerprint-colons", "seed-list"])
def test_service_client_certificate_references(leaf: trustme.LeafCert, form: str) -> None:
    digest = fingerprint(leaf.cert_chain_pems[0].bytes())
    forms: dict[str, dict[str, Any]] = {
        "id": {"client_certificate": UUID_A},
        "id-mapping": {"client_certificate": {"id": UUID_A}},
        "fingerprint": {"client_certificate": f"sha256:{digest}"},
        "fingerprint-colons": {"client_certificate": "SHA256:" + ":".join(digest[i : i + 2].upper() for i in range(0, 64, 2))},
        "seed-list": {"certificates": [UUID_A]},
    }
    fields = forms[form]
    entities = load(
        certificates=[{**cert_of(leaf), "id": UUID_A}],
        services=[{"name": "s", "url": "https://u.example", **fields}],
    )
    assert [s.client_certificate for s in entities.services.values()] == [UUID_A]


def test_top_level_sni_and_service_cas_by_fingerprint(ca: trustme.CA, leaf: trustme.LeafCert) -> None:
    ca_pem = ca.cert_pem.bytes().decode()
    entities = load(
        certificates=[cert_of(leaf)],
        ca_certificates=[{"cert": ca_pem}],
        snis=[{"name": "api.example.test", "certificate": "sha256:" + fingerprint(leaf.cert_chain_pems[0].bytes())}],
        services=[{"name": "s", "url": "https://u.example", "ca_certificates": ["sha256:" + fingerprint(ca.cert_pem.bytes())]}],
    )
    (cert,) = entities.certificates.values()
    (ca_entity,) = entities.ca_certificates.values()
    assert [s.certificate for s in entities.snis.values()] == [cert.id]
    assert [s.ca_certificates for s in entities.services.values()] == [(ca_entity.id,)]


def test_service_cas_refer_to_distinct_entities(ca: trustme.CA) -> None:
    digest = "sha256:" + fingerprint(ca.cert_pem.bytes())
    got = problems_of(
        ca_certificates=[{"cert": ca.cert_pem.bytes().decode(), "id": UUID_B}],
        services=[{"name": "s", "url": "https://u.example", "ca_certificates": [UUID_B, UUID_B, digest]}],
    )
    assert got == [
        f"services[0].ca_certificates[1]: duplicate value '{UUID_B}'",
        "services[0].ca_certificates[2]: same CA certificate as services[0].ca_certificates[0]",
    ]


def test_dangling_certificate_references() -> None:
    assert problems_of(services=[{"url": "https://u.example", "client_certificate": "x", "ca_certificates": [UUID_A]}]) == [
        "services[0].client_certificate: no certificate with id or fingerprint 'x'",
        f"services[0].ca_certificates[0]: no CA certificate with id or fingerprint '{UUID_A}'",
    ]


def test_seed_001_service_is_explained() -> None:
    # The service from seed 001, as written there.
    seed = yaml.safe_load(
        """
        name: example_service
        host: https://self-signed-cert.httpbun.com
        protocol: https
        port: 443
        certificates:
        - 4ae235fd-bcc0-4d08-9689-5ade8f143hjf7
        tls_verify: true
        routes:
          - name: example_route
            paths:
              - /example
        """
    )
    assert problems_of(services=[seed]) == [
        "services[0].host: expected a host name, got the URL 'https://self-signed-cert.httpbun.com' (set 'url' instead of 'host')",
        "services[0].certificates[0]: no certificate with id or fingerprint '4ae235fd-bcc0-4d08-9689-5ade8f143hjf7'",
    ]


# --- ids ----------------------------------------------------------------------------------


def test_given_ids_are_kept_lowercased() -> None:
    entities = load(services=[{"id": UUID_A.upper(), "host": "u.example"}])
    assert list(entities.services) == [UUID_A]


def test_generated_ids_are_deterministic_and_keyed_by_name() -> None:
    doc = {"_format_version": "3.0", "services": [{"name": "s", "host": "u.example", "routes": [{"paths": ["/"]}]}]}
    first, second = parse_declarative(doc, now=NOW), parse_declarative(doc, now=NOW + 100)
    assert list(first.services) == list(second.services) and list(first.routes) == list(second.routes)
    moved = {"_format_version": "3.0", "services": [{"name": "s", "host": "v.example", "port": 81}]}
    assert list(parse_declarative(moved, now=NOW).services) == list(first.services)


def test_identical_nameless_entities_get_distinct_ids() -> None:
    entities = load(routes=[{"paths": ["/"]}, {"paths": ["/"]}])
    assert len(entities.routes) == 2


@pytest.mark.parametrize(
    ("entities", "expected"),
    [
        (
            {"services": [{"id": UUID_A, "host": "a.example"}, {"id": UUID_A, "host": "b.example"}]},
            [f"services[1].id: duplicate service id '{UUID_A}' (also services[0])"],
        ),
        (
            {"services": [{"name": "s", "host": "a.example"}, {"name": "s", "host": "b.example"}]},
            ["services[1].name: duplicate name 's' (also at services[0])"],
        ),
        (
            {"routes": [{"name": "r", "paths": ["/"]}], "services": [{"host": "a.example", "routes": [{"name": "r", "paths": ["/"]}]}]},
            ["routes[0].name: duplicate name 'r' (also at services[0].routes[0])"],
        ),
    ],
)
def test_duplicates_name_both_paths(entities: dict[str, Any], expected: list[str]) -> None:
    assert problems_of(**entities) == expected


def test_given_id_clashing_with_a_generated_one() -> None:
    generated = next(iter(load(services=[{"name": "s", "host": "a.example"}]).services))
    got = problems_of(services=[{"name": "s", "host": "a.example"}, {"id": generated, "host": "b.example"}])
    assert got == [f"services[1].id: duplicate service id '{generated}' (also the generated id of services[0])"]


# --- consumer credentials hook ------------------------------------------------------------


@pytest.fixture
def credential_kind(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, str]]]:
    seen: list[tuple[str, str]] = []

    def parse(raw: Mapping[Any, Any], path: str, consumer_id: str, ctx: Context) -> None:
        seen.append((path, consumer_id))
        if "subject_name" not in raw:
            ctx.problems.append(Problem(f"{path}.subject_name", "required field missing"))

    # setitem restores the real parser (trio_gw.model.credentials) afterwards.
    monkeypatch.setitem(declarative.CREDENTIAL_KINDS, "mtls_auth_credentials", parse)
    yield seen


def test_registered_credential_kind_is_read(credential_kind: list[tuple[str, str]]) -> None:
    entities = load(consumers=[{"username": "a", "mtls_auth_credentials": [{"subject_name": "a"}]}])
    assert credential_kind == [("consumers[0].mtls_auth_credentials[0]", next(iter(entities.consumers)))]
    assert problems_of(consumers=[{"username": "a", "mtls_auth_credentials": [{}]}]) == [
        "consumers[0].mtls_auth_credentials[0].subject_name: required field missing"
    ]


# --- text and dump ------------------------------------------------------------------------


def test_load_yaml_and_json_text() -> None:
    yaml_text = "_format_version: '3.0'\nservices:\n  - name: s\n    url: http://u.example\n"
    json_text = json.dumps({"_format_version": "3.0", "services": [{"name": "s", "url": "http://u.example"}]})
    assert load_declarative_text(yaml_text, now=NOW) == load_declarative_text(json_text, now=NOW)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("services: [", "not valid YAML or JSON"),
        ("", "the document is empty"),
        ("- 1", "expected a mapping at the top of the document, got a list"),
        ("[" * 5000, "not valid YAML or JSON"),
    ],
)
def test_load_text_errors(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_declarative_text(text, now=NOW)


def test_example_file_loads() -> None:
    entities = load_declarative_text((EXAMPLES / "kong-deck-service-route.yaml").read_text(), now=NOW)
    (svc,) = entities.services.values()
    (r,) = entities.routes.values()
    assert (svc.protocol, svc.host, svc.port, svc.path, svc.tls_verify_depth) == ("https", "billing.internal.example", 8443, "/api", 3)
    assert r.service == svc.id and r.paths == ("/invoices", "~/invoices/(?<id>[0-9]+)$")
    assert [p.config for p in entities.plugins.values()] == [{"minute": 600}]


def test_dump_round_trips_with_keys(ca: trustme.CA, leaf: trustme.LeafCert) -> None:
    entities = load(
        certificates=[{**cert_of(leaf), "snis": ["api.example.test"]}],
        ca_certificates=[{"cert": ca.cert_pem.bytes().decode()}],
        services=[{"name": "s", "url": "https://u.example/p", "tls_verify": True, "routes": [{"paths": ["/"], "headers": {"x": ["1"]}}]}],
        routes=[{"hosts": ["h.example"]}],
        consumers=[{"custom_id": "c"}],
        plugins=[{"name": "cors", "config": {"a": [1]}, "route": next(iter(load(routes=[{"hosts": ["h.example"]}]).routes))}],
    )
    dumped = dump_declarative(entities, include_keys=True)
    assert parse_declarative(yaml.safe_load(yaml.safe_dump(dumped)), now=NOW) == entities
    assert [len(s["routes"]) for s in dumped["services"]] == [1] and len(dumped["routes"]) == 1
    assert [c["snis"][0]["name"] for c in dumped["certificates"]] == ["api.example.test"]


def test_dump_leaves_private_keys_out_by_default(leaf: trustme.LeafCert) -> None:
    dumped = dump_declarative(load(certificates=[cert_of(leaf)]))
    (cert,) = dumped["certificates"]
    assert "key" not in cert and "PRIVATE KEY" not in json.dumps(dumped)


def test_dump_of_nothing() -> None:
    assert dump_declarative(Entities()) == {"_format_version": "3.0"}
