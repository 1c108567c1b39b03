"""Kong's legacy ssl plugin end to end: only_https, trusted terminators, a certificate per API."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trustme

from trio_gw.testing.http_client import Client

from .conftest import StartGateway, Upstream, port_of
from .test_tls_server import served_cn


def config(upstream: Upstream, plugin: dict[str, Any]) -> dict[str, Any]:
    return {"_format_version": "3.0", "services": [{
        "name": "echo", "url": upstream.url,
        "routes": [{"name": "r", "hosts": ["shop.example.test"], "paths": ["/"],
                    "plugins": [{"name": "ssl", "config": plugin}]}]}]}


async def test_only_https_refuses_plain_http(start_gateway: StartGateway, upstream: Upstream) -> None:
    gw = await start_gateway(config(upstream, {"only_https": True}))
    reply = await (await Client.connect(port_of(gw))).request("GET", "/anything", host="shop.example.test")
    assert reply.status == 426
    assert reply.json() == {"message": "Please use HTTPS protocol", "reason": "https_required"}
    assert reply.headers["upgrade"] == "TLS/1.2, HTTP/1.1"


async def test_already_terminated_only_from_trusted_ips(start_gateway: StartGateway, upstream: Upstream) -> None:
    plugin = {"only_https": True, "accept_http_if_already_terminated": True}
    forwarded = [("x-forwarded-proto", "https")]
    untrusted = await start_gateway(config(upstream, plugin))
    reply = await (await Client.connect(port_of(untrusted))).request(
        "GET", "/anything", host="shop.example.test", headers=forwarded)
    assert reply.status == 426  # a header from anyone proves nothing
    trusted = await start_gateway(config(upstream, plugin), trusted_ips="127.0.0.1/32")
    reply = await (await Client.connect(port_of(trusted))).request(
        "GET", "/anything", host="shop.example.test", headers=forwarded)
    assert reply.status == 200


async def test_certificate_per_api(
    start_gateway: StartGateway, upstream: Upstream, ca: trustme.CA, server_pair: tuple[Path, Path]
) -> None:
    leaf = ca.issue_cert("shop.example.test", common_name="shop-plugin-cert")
    plugin = {"cert": "".join(b.bytes().decode() for b in leaf.cert_chain_pems),
              "key": leaf.private_key_pem.bytes().decode()}
    cert, key = server_pair
    gw = await start_gateway(config(upstream, plugin), ssl_cert=str(cert), ssl_cert_key=str(key))
    port = port_of(gw, ssl=True)
    assert await served_cn(port, "shop.example.test", ca) == "shop-plugin-cert"
    assert await served_cn(port, "other.example.test", ca) == "localhost"  # everyone else: the default
