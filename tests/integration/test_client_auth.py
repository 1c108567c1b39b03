"""mtls-auth end to end: the listener asks for a certificate, the route's plugin decides."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import trustme

from trio_gw.testing.http_client import Client

from .conftest import StartGateway, Upstream, port_of

CA_ID = "1b7f1c2e-3d4a-4b5c-8d6e-7f8091a2b3c4"


def config(upstream: Upstream, client_ca: trustme.CA) -> dict[str, Any]:
    return {
        "_format_version": "3.0",
        "ca_certificates": [{"id": CA_ID, "cert": client_ca.cert_pem.bytes().decode()}],
        "consumers": [{"username": "alice@example.test"}],
        "services": [{"name": "echo", "url": upstream.url, "routes": [{
            "name": "r", "hosts": ["localhost"], "paths": ["/"],
            "plugins": [{"name": "mtls-auth", "config": {"ca_certificates": [CA_ID]}}]}]}],
    }


def client_context(ca: trustme.CA, cert: trustme.LeafCert | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    if cert is not None:
        cert.configure_cert(ctx)
    return ctx


async def test_mtls_auth_identifies_the_consumer(
    start_gateway: StartGateway, upstream: Upstream, ca: trustme.CA, server_pair: tuple[Path, Path]
) -> None:
    client_ca = trustme.CA()
    cert, key = server_pair
    gw = await start_gateway(config(upstream, client_ca), ssl_cert=str(cert), ssl_cert_key=str(key))
    port = port_of(gw, ssl=True)
    alice = client_ca.issue_cert("alice@example.test")
    client = await Client.connect(port, tls=client_context(ca, alice), server_hostname="localhost")
    reply = await client.request("GET", "/who", host="localhost")
    assert reply.status == 200
    seen = reply.json()["headers"]
    assert seen["x-consumer-username"] == "alice@example.test"
    anonymous = await Client.connect(port, tls=client_context(ca, None), server_hostname="localhost")
    refused = await anonymous.request("GET", "/who", host="localhost")
    assert refused.status == 401
    assert refused.json() == {"message": "No required TLS certificate was sent", "reason": "no_cert"}
