"""The OpenAPI document: in sync with spec/admin-openapi.json, and true of the handler (schemathesis).

Regenerate the file with ``UPDATE_OPENAPI=1 pytest tests/unit/admin/test_openapi.py``.
"""

from __future__ import annotations

import json
import os
import urllib.parse
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest
import trustme

from trio_gw.admin import AdminRequest, handle_admin_request, openapi_document
from trio_gw.admin.inventory import CertificateView
from trio_gw.admin.lookup import KINDS
from trio_gw.model.entities import Entities
from trio_gw.model.inventory import build_inventory

SPEC = Path(__file__).resolve().parents[3] / "spec" / "admin-openapi.json"
NOW = 1_750_000_000


def rendered() -> str:
    return json.dumps(openapi_document(), indent=2, sort_keys=True) + "\n"


def test_spec_file_in_sync() -> None:
    if os.environ.get("UPDATE_OPENAPI"):
        SPEC.write_text(rendered())
    assert SPEC.read_text() == rendered(), "run: UPDATE_OPENAPI=1 pytest tests/unit/admin/test_openapi.py"


def test_document_covers_every_kind() -> None:
    doc = openapi_document()
    assert doc["openapi"] == "3.1.0"
    for kind in KINDS:
        assert f"/{kind}" in doc["paths"] and f"/{kind}/{{key}}" in doc["paths"]
    names = {p["name"] for p in doc["paths"]["/certificates"]["get"]["parameters"]}
    assert names == {"size", "offset", "tags", "expiring_within"}
    assert "key" not in doc["components"]["schemas"]["Certificate"]["properties"]


class WsgiAdmin:
    """A WSGI app over the pure handler with an in-memory configuration (test only)."""

    def __init__(self, entities: Entities) -> None:
        self.entities = entities

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        headers = {k[5:].replace("_", "-").lower(): v for k, v in environ.items() if k.startswith("HTTP_")}
        if environ.get("CONTENT_TYPE"):
            headers["content-type"] = environ["CONTENT_TYPE"]
        query = {k: tuple(v) for k, v in urllib.parse.parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True).items()}
        path = environ.get("PATH_INFO", "/").encode("latin-1").decode("utf-8", "replace")
        request = AdminRequest(environ["REQUEST_METHOD"], urllib.parse.quote(path, safe="/:@!$&'()*+,;=-._~"), query, headers, body)
        view = CertificateView(build_inventory(self.entities))  # the caller's generation holds it
        result = handle_admin_request(request, self.entities, now=NOW, certificates=view)
        if result.entities is not None:
            self.entities = result.entities
        response = result.response
        assert response.status < 500
        reason = {200: "OK", 201: "Created", 204: "No Content"}.get(response.status, "Error")
        start_response(f"{response.status} {reason}", list(response.headers))
        return [response.body]


def seeded() -> Entities:
    from tests.unit.admin.conftest import Admin, pem_pair

    admin = Admin()
    leaf = trustme.CA().issue_cert("api.example.test")
    cert_id = admin.post("/certificates", {**pem_pair(leaf), "snis": ["api.example.test"]}).body["id"]
    admin.post("/services", {"name": "s", "url": "https://up.example", "client_certificate": cert_id})
    admin.post("/services/s/routes", {"name": "r", "paths": ["/"]})
    admin.post("/consumers", {"username": "alice"})
    admin.post("/plugins", {"name": "acl", "consumer": "alice"})
    return admin.entities


schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, settings

APP = WsgiAdmin(seeded())
SCHEMA = schemathesis.openapi.from_wsgi("/openapi.json", APP)
CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_schema_conformance,
    schemathesis.checks.response_headers_conformance,
    schemathesis.checks.negative_data_rejection,
    schemathesis.checks.unsupported_method,
    schemathesis.checks.allow_header_conformance,
]


@SCHEMA.parametrize()
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
def test_handler_conforms_to_its_document(case: Any) -> None:
    checks = CHECKS
    if case.media_type not in (None, "application/json"):
        # Form and multipart values are text: "1.5" is a valid tag there, although the same
        # number in JSON is not a string. Negative-data rejection only means something for JSON.
        checks = [c for c in CHECKS if c is not schemathesis.checks.negative_data_rejection]
    case.call_and_validate(checks=checks)
