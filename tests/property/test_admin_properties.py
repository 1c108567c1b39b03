"""Admin API properties: any request gets a JSON answer below 500; a refused write changes nothing."""

from __future__ import annotations

import json
from typing import Any

import trustme
from hypothesis import example, given
from hypothesis import strategies as st

from trio_gw.admin import AdminRequest, handle_admin_request
from trio_gw.model.entities import Entities

NOW = 1_750_000_000
_LEAF = trustme.CA().issue_cert("api.example.test")
_PAIR = {"cert": _LEAF.cert_chain_pems[0].bytes().decode(), "key": _LEAF.private_key_pem.bytes().decode()}
UUID = "4ae235fd-bcc0-4d08-9689-5ade8f14b3f7"


def _seed() -> Entities:
    entities = Entities()
    requests = [
        ("POST", "/certificates", {**_PAIR, "id": UUID, "snis": ["api.example.test"]}),
        ("POST", "/services", {"name": "s", "url": "https://up.example", "client_certificate": UUID}),
        ("POST", "/services/s/routes", {"name": "r", "paths": ["/"]}),
        ("POST", "/consumers", {"username": "alice"}),
        ("POST", "/plugins", {"name": "acl", "consumer": "alice"}),
    ]
    for method, path, body in requests:
        result = handle_admin_request(
            AdminRequest(method, path, {}, {"content-type": "application/json"}, json.dumps(body).encode()),
            entities,
            now=NOW,
        )
        assert result.entities is not None, result.response.body
        entities = result.entities
    return entities


SEED = _SEED = _seed()
segments = st.sampled_from(
    ["services", "routes", "consumers", "plugins", "certificates", "ca_certificates", "snis", "s", "r", "alice",
     UUID, "api.example.test", "openapi.json", "x", "%2A", "sha256:00", ""]
)  # fmt: skip
paths = st.lists(segments, min_size=0, max_size=4).map(lambda parts: "/" + "/".join(parts))
json_values: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3),
    max_leaves=10,
)
field_names = st.sampled_from(
    ["name", "host", "url", "port", "paths", "service", "certificate", "cert", "key", "snis", "tags", "id",
     "username", "config", "client_certificate", "ca_certificates", "protocol", "enabled"]
)  # fmt: skip
bodies = st.one_of(
    st.dictionaries(field_names, json_values, max_size=5).map(lambda d: json.dumps(d).encode()),
    st.binary(max_size=60),
)
content_types = st.sampled_from(
    ["application/json", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "text/plain", ""]
)
queries = st.dictionaries(
    st.sampled_from(["size", "offset", "tags", "expiring_within"]), st.tuples(st.text(max_size=8)), max_size=2
)


@given(
    method=st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]),
    path=paths,
    body=bodies,
    content_type=content_types,
    query=queries,
)
@example(method="DELETE", path="/services/s", body=b"", content_type="", query={})
@example(method="PATCH", path="/certificates/" + UUID, body=b'{"key": null}', content_type="application/json", query={})
def test_any_request_gets_json_below_500_and_failures_change_nothing(
    method: str, path: str, body: bytes, content_type: str, query: dict[str, tuple[str, ...]]
) -> None:
    headers = {"content-type": content_type} if content_type else {}
    result = handle_admin_request(AdminRequest(method, path, query, headers, body), SEED, now=NOW)
    response = result.response
    assert response.status < 500
    if response.status == 204:
        assert response.body == b""
    else:
        json.loads(response.body)
    assert b"PRIVATE KEY" not in response.body
    if response.status >= 400 or method in ("GET", "OPTIONS"):
        assert result.entities is None
    elif result.entities is not None:
        # a successful write leaves a configuration the next request can serve
        again = handle_admin_request(AdminRequest("GET", "/", {}, {}, b""), result.entities, now=NOW)
        assert again.response.status == 200
