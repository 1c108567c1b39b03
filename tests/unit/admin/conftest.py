"""Helpers for Admin API tests: an in-memory client over the pure handler, and certificates."""

from __future__ import annotations

import itertools
import json
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest
import trustme

from trio_gw.admin import AdminRequest, AdminResult, handle_admin_request
from trio_gw.model.entities import Entities

NOW = 1_750_000_000  # trustme certificates are valid from 2000 to 3000


@dataclass
class Reply:
    status: int
    body: Any
    headers: dict[str, str]
    raw: bytes
    result: AdminResult


@dataclass
class Admin:
    """Keeps the configuration between requests, as the IO glue will."""

    entities: Entities = field(default_factory=Entities)
    read_only_reason: str | None = None
    now: int = NOW
    ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def new_id(self) -> str:
        return f"00000000-0000-4000-8000-{next(self.ids):012d}"

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        query: Mapping[str, str | list[str]] | None = None,
        raw: bytes | None = None,
        content_type: str | None = None,
    ) -> Reply:
        if "?" in path:
            path, _, text = path.partition("?")
            query = {k: v for k, v in urllib.parse.parse_qs(text).items()}
        headers: dict[str, str] = {}
        data = b""
        if raw is not None:
            data = raw
        elif body is not None:
            data = json.dumps(body).encode()
            headers["content-type"] = "application/json"
        if content_type is not None:
            headers["content-type"] = content_type
        q = {k: (v,) if isinstance(v, str) else tuple(v) for k, v in (query or {}).items()}
        result = handle_admin_request(
            AdminRequest(method, path, q, headers, data),
            self.entities,
            now=self.now,
            read_only_reason=self.read_only_reason,
            new_id=self.new_id,
        )
        if result.entities is not None:
            self.entities = result.entities
        response = result.response
        parsed = json.loads(response.body) if response.body else None
        return Reply(response.status, parsed, dict(response.headers), response.body, result)

    def get(self, path: str, **kw: Any) -> Reply:
        return self.request("GET", path, **kw)

    def post(self, path: str, body: Any = None, **kw: Any) -> Reply:
        return self.request("POST", path, body, **kw)

    def put(self, path: str, body: Any = None, **kw: Any) -> Reply:
        return self.request("PUT", path, body, **kw)

    def patch(self, path: str, body: Any = None, **kw: Any) -> Reply:
        return self.request("PATCH", path, body, **kw)

    def delete(self, path: str, **kw: Any) -> Reply:
        return self.request("DELETE", path, **kw)


def multipart(fields: Mapping[str, str], files: Mapping[str, str] = {}) -> tuple[bytes, str]:
    """Encode a body as ``curl -F name=value -F file=@path`` does."""
    boundary = "------------------------d74496d66958873e"
    out = b""
    for name, value in fields.items():
        out += f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
    for name, content in files.items():
        out += (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{name}.pem"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n{content}\r\n"
        ).encode()
    out += f"--{boundary}--\r\n".encode()
    return out, f"multipart/form-data; boundary={boundary}"


def pem_pair(leaf: trustme.LeafCert) -> dict[str, str]:
    return {"cert": leaf.cert_chain_pems[0].bytes().decode(), "key": leaf.private_key_pem.bytes().decode()}


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="session")
def leaf(ca: trustme.CA) -> trustme.LeafCert:
    return ca.issue_cert("api.example.test", "10.0.0.1")


@pytest.fixture(scope="session")
def other_leaf(ca: trustme.CA) -> trustme.LeafCert:
    return ca.issue_cert("other.example.test")


@pytest.fixture
def admin() -> Admin:
    return Admin()
