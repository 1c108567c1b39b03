"""Revocation wherever a client certificate is trusted, through a whole gateway.

A real OCSP responder (HTTP, 127.0.0.1:0) answers about client certificates
whose AIA names it; CRLs come from a file (``ssl_crl``) or a distribution
point.  Checked on every place that trusts a client certificate:
``mtls-auth``, ``mtls-allowlist``, ``header-cert-auth``, the server truststore
(``ssl_verify_client`` + ``ssl_ocsp``) and admin mTLS (``admin_ssl_ocsp``).
Reasons ``revoked`` and ``revocation_unknown`` reach the answer, the access
log and ``/metrics``.  A handshake or a decision never fetches: a ``STRICT``
first request waits for the background fetch its miss asked for, and is then
decided on the answer.
"""

from __future__ import annotations

import json
import ssl
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
import trio
import trustme

from trio_gw.runtime.gateway import Gateway
from trio_gw.testing.http_client import Client, Reply
from trio_gw.testing.ocsp_responder import OcspResponder
from trio_gw.testing.pki import Issued, crl_pem, issue, make_ca

from .conftest import StartGateway, Upstream, port_of

CA_ID = "6a1f0c3e-2d4b-4a5c-9d6e-7f8091a2b3c4"


def client_ctx(server_ca: trustme.CA, leaf: Issued | None, tmp: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    server_ca.configure_trust(ctx)
    if leaf is not None:
        path = tmp / f"client-{leaf.cert.serial_number}.pem"
        path.write_text(leaf.chain_pem() + leaf.key_pem())
        ctx.load_cert_chain(str(path))
    return ctx


async def get(port: int, ctx: ssl.SSLContext, host: str, path: str = "/",
              headers: list[tuple[str, str]] | None = None) -> Reply:
    client = await Client.connect(port, tls=ctx, server_hostname=host)
    try:
        return await client.request("GET", path, host=host, headers=headers)
    finally:
        await client.aclose()


def reason(reply: Reply) -> str | None:
    return reply.json().get("reason") if reply.status >= 400 else None


def routes(upstream: Upstream, root: Issued, mode: str) -> dict[str, Any]:
    """mtls-auth, mtls-allowlist and header-cert-auth routes, each with ``revocation_check_mode``."""
    common = {"ca_certificates": [CA_ID], "skip_consumer_lookup": True, "revocation_check_mode": mode}
    return {
        "_format_version": "3.0",
        "ca_certificates": [{"id": CA_ID, "cert": root.cert_pem()}],
        "services": [{"name": "echo", "url": upstream.url, "routes": [
            {"name": "mtls", "hosts": ["mtls.test"], "plugins": [{"name": "mtls-auth", "config": common}]},
            {"name": "allow", "hosts": ["allow.test"], "plugins": [{"name": "mtls-allowlist", "config": {
                "certificates": [CA_ID], "revocation_check_mode": mode}}]},
            {"name": "header", "hosts": ["header.test"], "plugins": [{"name": "header-cert-auth", "config": {
                **common, "certificate_header_name": "x-client-cert",
                "certificate_header_format": "url_encoded"}}]},
        ]}],
    }


async def check_all(port: int, server_ca: trustme.CA, leaf: Issued, tmp: Path) -> list[tuple[int, str | None]]:
    """The answer of each route to ``leaf``: in the handshake (mtls, allow) and in a header (header)."""
    ctx = client_ctx(server_ca, leaf, tmp)
    plain = client_ctx(server_ca, None, tmp)
    header = [("x-client-cert", urllib.parse.quote(leaf.cert_pem(), safe=""))]
    replies = [await get(port, ctx, "mtls.test"), await get(port, ctx, "allow.test"),
               await get(port, plain, "header.test", headers=header)]
    return [(r.status, reason(r)) for r in replies]


@pytest.fixture
def root() -> Issued:
    return make_ca(common_name="client root")


@pytest.fixture
def server_pair(ca: trustme.CA, tmp_path: Path) -> tuple[Path, Path]:
    """The gateway's certificate, for every host these tests name."""
    leaf = ca.issue_cert("localhost", "mtls.test", "allow.test", "header.test", "open.test", "nowhere.test")
    cert, key = tmp_path / "server.pem", tmp_path / "server.key"
    cert.write_bytes(b"".join(b.bytes() for b in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(key))
    return cert, key


async def start(start_gateway: StartGateway, server_pair: tuple[Path, Path], declarative: dict[str, Any],
                **settings: Any) -> Gateway:
    cert, key = server_pair
    return await start_gateway(declarative, ssl_cert=str(cert), ssl_cert_key=str(key), trusted_ips="127.0.0.1",
                               proxy_access_log=settings.pop("proxy_access_log", "off"), **settings)


async def test_plugins_ask_the_responder_first(
    start_gateway: StartGateway, upstream: Upstream, ca: trustme.CA, server_pair: tuple[Path, Path],
    root: Issued, tmp_path: Path,
) -> None:
    with OcspResponder(root) as responder:
        good = issue(root, "good.client", ocsp_urls=[responder.url])
        revoked = issue(root, "revoked.client", ocsp_urls=[responder.url])
        responder.set(good, "good")
        responder.set(revoked, "revoked")
        log = tmp_path / "access.log"
        gw = await start(start_gateway, server_pair, routes(upstream, root, "STRICT"), proxy_access_log=str(log),
                         access_log_format="json")
        port = port_of(gw, ssl=True)
        # STRICT, nothing at hand yet: the first request waits for the fetch its miss asked for
        assert await check_all(port, ca, good, tmp_path) == [(200, None)] * 3
        assert await check_all(port, ca, revoked, tmp_path) == [(401, "revoked")] * 3
        assert responder.requests == 2  # one fetch per certificate, then cert_cache_ttl reuse
        metrics = gw.metrics.exposition().decode()
        assert 'trio_gw_requests_total{reason="revoked",status="4xx"} 3.0' in metrics
    gw.access_log.close()
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [line.get("reason") for line in lines if line.get("status") == 401] == ["revoked"] * 3


async def test_strict_without_an_answer_is_revocation_unknown(
    start_gateway: StartGateway, upstream: Upstream, ca: trustme.CA, server_pair: tuple[Path, Path],
    root: Issued, tmp_path: Path,
) -> None:
    with OcspResponder(root) as responder:
        responder.down = True
        leaf = issue(root, "good.client", ocsp_urls=[responder.url])
        strict = await start(start_gateway, server_pair, routes(upstream, root, "STRICT"))
        assert await check_all(port_of(strict, ssl=True), ca, leaf, tmp_path) == [(401, "revocation_unknown")] * 3
        lenient = await start(start_gateway, server_pair, routes(upstream, root, "IGNORE_CA_ERROR"))
        assert await check_all(port_of(lenient, ssl=True), ca, leaf, tmp_path) == [(200, None)] * 3
        skip = await start(start_gateway, server_pair, routes(upstream, root, "SKIP"))
        before = responder.requests
        assert await check_all(port_of(skip, ssl=True), ca, leaf, tmp_path) == [(200, None)] * 3
        assert responder.requests == before  # SKIP asks nobody


async def test_crls_decide_when_ocsp_cannot(
    start_gateway: StartGateway, upstream: Upstream, ca: trustme.CA, server_pair: tuple[Path, Path],
    root: Issued, tmp_path: Path, nursery: trio.Nursery,
) -> None:
    """No responder in the certificate: the CRL of its distribution point decides (Kong's order)."""
    from .test_client_auth import serve_crl

    fetched = trio.Event()
    body = [b""]
    url = await serve_crl(nursery, body, fetched)
    good = issue(root, "good.client", crl_urls=[url])
    revoked = issue(root, "revoked.client", crl_urls=[url])
    body[0] = crl_pem(root, [revoked]).encode()
    gw = await start(start_gateway, server_pair, routes(upstream, root, "STRICT"))
    port = port_of(gw, ssl=True)
    assert await check_all(port, ca, revoked, tmp_path) == [(401, "revoked")] * 3
    assert await check_all(port, ca, good, tmp_path) == [(200, None)] * 3


async def test_server_truststore_ssl_ocsp(
    start_gateway: StartGateway, upstream: Upstream, ca: trustme.CA, server_pair: tuple[Path, Path],
    root: Issued, tmp_path: Path,
) -> None:
    """nginx's ssl_ocsp: a certificate of ssl_client_certificate is checked before routing, on every request."""
    truststore = tmp_path / "clients.pem"
    truststore.write_text(root.cert_pem())
    with OcspResponder(root) as responder:
        good = issue(root, "good.client", ocsp_urls=[responder.url])
        revoked = issue(root, "revoked.client", ocsp_urls=[responder.url])
        unknown = issue(root, "unknown.client", ocsp_urls=[responder.url])  # the responder does not know it
        responder.set(good, "good")
        responder.set(revoked, "revoked")
        declarative = {"_format_version": "3.0", "services": [{"name": "echo", "url": upstream.url, "routes": [
            {"name": "open", "hosts": ["open.test"]}]}]}
        gw = await start(start_gateway, server_pair, declarative, ssl_verify_client="on",
                         ssl_client_certificate=str(truststore), ssl_ocsp="leaf")
        port = port_of(gw, ssl=True)
        assert (await get(port, client_ctx(ca, good, tmp_path), "open.test")).status == 200
        refused = await get(port, client_ctx(ca, revoked, tmp_path), "open.test")
        assert (refused.status, reason(refused)) == (401, "revoked")
        refused = await get(port, client_ctx(ca, unknown, tmp_path), "nowhere.test")  # before routing: not 404
        assert (refused.status, reason(refused)) == (401, "revocation_unknown")


async def test_server_truststore_ssl_crl(
    start_gateway: StartGateway, upstream: Upstream, ca: trustme.CA, server_pair: tuple[Path, Path],
    root: Issued, tmp_path: Path,
) -> None:
    """ssl_crl: a CRL file for the truststore; re-read at reload."""
    truststore = tmp_path / "clients.pem"
    truststore.write_text(root.cert_pem())
    alice, bob = issue(root, "alice.client"), issue(root, "bob.client")
    crl = tmp_path / "clients.crl"
    crl.write_text(crl_pem(root, [alice]))
    declarative = {"_format_version": "3.0", "services": [{"name": "echo", "url": upstream.url, "routes": [
        {"name": "open", "hosts": ["open.test"]}]}]}
    gw = await start(start_gateway, server_pair, declarative, ssl_verify_client="on",
                     ssl_client_certificate=str(truststore), ssl_ocsp="on", ssl_crl=str(crl))
    port = port_of(gw, ssl=True)
    refused = await get(port, client_ctx(ca, alice, tmp_path), "open.test")
    assert (refused.status, reason(refused)) == (401, "revoked")
    assert (await get(port, client_ctx(ca, bob, tmp_path), "open.test")).status == 200
    crl.write_text(crl_pem(root, [bob]))
    assert await gw.reload()
    assert (await get(port, client_ctx(ca, alice, tmp_path), "open.test")).status == 200
    refused = await get(port, client_ctx(ca, bob, tmp_path), "open.test")
    assert (refused.status, reason(refused)) == (401, "revoked")


async def test_admin_mtls_checks_revocation(
    start_gateway: StartGateway, ca: trustme.CA, server_pair: tuple[Path, Path], root: Issued, tmp_path: Path,
) -> None:
    cas = tmp_path / "admins.pem"
    cas.write_text(root.cert_pem())
    cert, key = server_pair
    with OcspResponder(root) as responder:
        good = issue(root, "ops.admin", ocsp_urls=[responder.url])
        revoked = issue(root, "gone.admin", ocsp_urls=[responder.url])
        responder.set(good, "good")
        responder.set(revoked, "revoked")
        gw = await start_gateway({"_format_version": "3.0"}, admin_listen="127.0.0.1:0 ssl", admin_mtls="on",
                                 admin_mtls_ca_certificates=str(cas), admin_ssl_cert=str(cert),
                                 admin_ssl_cert_key=str(key), admin_ssl_ocsp="leaf")
        port = port_of(gw, ssl=True, kind="admin")
        ok = await get(port, client_ctx(ca, good, tmp_path), "localhost", "/services")
        assert ok.status == 200
        refused = await get(port, client_ctx(ca, revoked, tmp_path), "localhost", "/services")
        assert (refused.status, refused.json()) == (401, {"message": "TLS certificate failed verification",
                                                          "reason": "revoked"})
        assert 'trio_gw_admin_revocation_refusals_total{reason="revoked"} 1.0' in gw.metrics.exposition().decode()
