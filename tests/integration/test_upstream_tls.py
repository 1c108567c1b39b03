"""Upstream TLS and mTLS end to end: real TLS upstreams on 127.0.0.1, an in-process gateway.

Each upstream is a real TLS server (the echo server with an ``ssl_context``, a
raw TLS listener, or ``openssl s_server``); what is checked is what the
upstream saw (the client certificate subject, the bytes received) and the
reason code of the gateway's 502.
"""

from __future__ import annotations

import ssl
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trio
import trustme
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from trio_gw.runtime.echo import EchoServer, open_echo_listeners
from trio_gw.testing import pki as tpki
from trio_gw.testing.forward_proxy import start_proxy
from trio_gw.testing.http_client import Client
from trio_gw.tls.pinning import spki_pin

from .conftest import StartGateway, port_of

pytestmark = pytest.mark.filterwarnings("ignore::trio.TrioDeprecationWarning")


# --- PKI and servers ------------------------------------------------------------------


@pytest.fixture(scope="module")
def server_ca() -> trustme.CA:
    return trustme.CA(organization_name="upstream servers")


@pytest.fixture(scope="module")
def client_ca() -> trustme.CA:
    return trustme.CA(organization_name="upstream clients")


def pem_of(leaf: trustme.LeafCert) -> tuple[str, str]:
    chain = "".join(b.bytes().decode() for b in leaf.cert_chain_pems)
    return chain, leaf.private_key_pem.bytes().decode()


def server_context(
    chain: str, key: str, *, client_ca: trustme.CA | None = None, max_version: ssl.TLSVersion | None = None,
    tmp: Path,
) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    path = tmp / f"srv-{uuid.uuid4().hex}.pem"
    path.write_text(chain + key)
    ctx.load_cert_chain(str(path))
    if client_ca is not None:
        ctx.verify_mode = ssl.CERT_REQUIRED
        client_ca.configure_trust(ctx)
    if max_version is not None:
        ctx.maximum_version = max_version
    return ctx


@dataclass
class TlsUpstream:
    server: EchoServer
    port: int

    def url(self, host: str = "127.0.0.1") -> str:
        return f"https://{host}:{self.port}"


async def start_tls_echo(nursery: trio.Nursery, ctx: ssl.SSLContext) -> TlsUpstream:
    server = EchoServer(ssl_context=ctx)
    listeners = await open_echo_listeners()
    nursery.start_soon(server.serve, listeners)
    return TlsUpstream(server, listeners[0].socket.getsockname()[1])


def cert_entity(leaf: trustme.LeafCert) -> dict[str, str]:
    chain, key = pem_of(leaf)
    return {"id": str(uuid.uuid4()), "cert": chain, "key": key}


def ca_entity(ca: trustme.CA) -> dict[str, str]:
    return {"id": str(uuid.uuid4()), "cert": ca.cert_pem.bytes().decode()}


def config(*services: dict[str, Any], certificates: list[dict[str, str]] = (),  # type: ignore[assignment]
           ca_certificates: list[dict[str, str]] = ()) -> dict[str, Any]:  # type: ignore[assignment]
    return {"_format_version": "3.0", "services": list(services), "certificates": list(certificates),
            "ca_certificates": list(ca_certificates)}


def svc(name: str, url: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "url": url, "routes": [{"name": name, "paths": [f"/{name}"]}], **fields}


async def get(gw: Any, path: str) -> tuple[int, dict[str, Any]]:
    client = await Client.connect(port_of(gw))
    try:
        reply = await client.request("GET", path)
        return reply.status, (reply.json() if reply.body[:1] == b"{" else {"body": reply.body[:300]})
    finally:
        await client.aclose()


@pytest.fixture
def mtls_upstream_ctx(server_ca: trustme.CA, client_ca: trustme.CA, tmp_path: Path) -> ssl.SSLContext:
    return server_context(*pem_of(server_ca.issue_cert("127.0.0.1", "localhost")), client_ca=client_ca, tmp=tmp_path)


# --- client certificates ------------------------------------------------------------------


async def test_each_service_presents_its_own_certificate_and_the_host_map_and_global_ones(
    nursery: trio.Nursery, start_gateway: StartGateway, server_ca: trustme.CA, client_ca: trustme.CA,
    mtls_upstream_ctx: ssl.SSLContext, tmp_path: Path,
) -> None:
    up = await start_tls_echo(nursery, mtls_upstream_ctx)
    up_other = await start_tls_echo(nursery, mtls_upstream_ctx)
    a, b = cert_entity(client_ca.issue_cert("svc-a.clients.test", common_name="svc-a")), cert_entity(client_ca.issue_cert("svc-b.clients.test", common_name="svc-b"))
    ca = ca_entity(server_ca)
    combined = tmp_path / "mapped.pem"
    combined.write_text("".join(pem_of(client_ca.issue_cert("mapped.clients.test", common_name="mapped"))))
    global_chain, global_key = pem_of(client_ca.issue_cert("global.clients.test", common_name="global"))
    (tmp_path / "g.pem").write_text(global_chain)
    (tmp_path / "g.key").write_text(global_key)
    gw = await start_gateway(
        config(
            svc("a", up.url(), client_certificate=a["id"], ca_certificates=[ca["id"]]),
            svc("b", up.url(), certificates=[b["id"]], ca_certificates=[ca["id"]]),
            svc("mapped", up.url(), ca_certificates=[ca["id"]]),
            svc("global", up_other.url(), ca_certificates=[ca["id"]]),
            certificates=[a, b], ca_certificates=[ca],
        ),
        upstream_certificates={f"127.0.0.1:{up.port}": str(combined)},
        client_ssl_cert=str(tmp_path / "g.pem"), client_ssl_cert_key=str(tmp_path / "g.key"),
    )
    for name, expected in (("a", "svc-a"), ("b", "svc-b"), ("mapped", "mapped"), ("global", "global"), ("a", "svc-a")):
        status, seen = await get(gw, f"/{name}/anything")
        assert status == 200, seen
        assert seen["client_cert_subject"] is not None and f"CN={expected}" in seen["client_cert_subject"]


class SServer:
    """``openssl s_server`` on 127.0.0.1:0 (it sends real TLS alerts; trio servers do not flush them)."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            ["openssl", "s_server", "-accept", "127.0.0.1:0", *args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        self.port = 0

    async def __aenter__(self) -> SServer:
        line = await self.readline_until(b"ACCEPT")
        self.port = int(line.strip().rsplit(b":", 1)[1])
        return self

    async def readline_until(self, marker: bytes) -> bytes:
        assert self.proc.stdout is not None
        with trio.fail_after(10):
            while True:
                line = await trio.to_thread.run_sync(self.proc.stdout.readline)
                if marker in line or not line:
                    return line

    def type(self, text: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text)
        self.proc.stdin.flush()

    async def __aexit__(self, *exc: object) -> None:
        self.proc.kill()
        await trio.to_thread.run_sync(self.proc.wait)


@pytest.mark.parametrize("version", ["-tls1_2", "-tls1_3"])
async def test_missing_or_unknown_client_certificate_is_upstream_rejected_client_cert(
    start_gateway: StartGateway, server_ca: trustme.CA, client_ca: trustme.CA, tmp_path: Path, version: str,
) -> None:
    pem = tmp_path / "s.pem"
    pem.write_text("".join(pem_of(server_ca.issue_cert("127.0.0.1"))))
    client_ca.cert_pem.write_to_path(str(tmp_path / "clients.pem"))
    stranger = cert_entity(trustme.CA().issue_cert("stranger.test", common_name="stranger"))
    async with SServer(version, "-Verify", "1", "-verify_return_error", "-CAfile", str(tmp_path / "clients.pem"), "-cert", str(pem),
                       "-key", str(pem), "-www") as server:
        ca = ca_entity(server_ca)
        url = f"https://127.0.0.1:{server.port}"
        gw = await start_gateway(config(
            svc("none", url, ca_certificates=[ca["id"]]),
            svc("stranger", url, client_certificate=stranger["id"], ca_certificates=[ca["id"]]),
            certificates=[stranger], ca_certificates=[ca],
        ))
        for name in ("none", "stranger"):
            status, body = await get(gw, f"/{name}/x")  # TLS 1.3: surfaces at the first read
            assert (status, body.get("reason")) == (502, "upstream_rejected_client_cert"), (name, status, body)
            assert "CERTIFICATE" not in body["message"].upper()


async def test_several_certificates_present_the_first_currently_valid(
    nursery: trio.Nursery, start_gateway: StartGateway, server_ca: trustme.CA, client_ca: trustme.CA,
    mtls_upstream_ctx: ssl.SSLContext,
) -> None:
    from datetime import datetime, timedelta, timezone

    soon = datetime.now(timezone.utc) + timedelta(days=10)
    # the store refuses expired uploads; a scheduled (not yet valid) replacement listed first is skipped
    scheduled = cert_entity(client_ca.issue_cert("next.clients.test", common_name="next", not_before=soon,
                                                 not_after=soon + timedelta(days=365)))
    current = cert_entity(client_ca.issue_cert("now.clients.test", common_name="now"))
    up = await start_tls_echo(nursery, mtls_upstream_ctx)
    ca = ca_entity(server_ca)
    gw = await start_gateway(config(
        svc("s", up.url(), certificates=[scheduled["id"], current["id"]], ca_certificates=[ca["id"]]),
        certificates=[scheduled, current], ca_certificates=[ca],
    ))
    status, seen = await get(gw, "/s/anything")
    assert status == 200 and "CN=now" in seen["client_cert_subject"]


# --- verification ------------------------------------------------------------------------------


async def test_untrusted_and_misnamed_upstreams_fail_unless_tls_verify_is_off(
    nursery: trio.Nursery, start_gateway: StartGateway, server_ca: trustme.CA, tmp_path: Path,
) -> None:
    stranger = trustme.CA(organization_name="stranger")
    untrusted = await start_tls_echo(nursery, server_context(*pem_of(stranger.issue_cert("127.0.0.1")), tmp=tmp_path))
    misnamed = await start_tls_echo(nursery, server_context(*pem_of(server_ca.issue_cert("other.test")), tmp=tmp_path))
    ca = ca_entity(server_ca)
    trust = {"ca_certificates": [ca["id"]]}
    gw = await start_gateway(config(
        svc("untrusted", untrusted.url(), **trust), svc("misnamed", misnamed.url(), **trust),
        svc("untrusted-off", untrusted.url(), tls_verify=False, **trust),
        svc("misnamed-off", misnamed.url(), tls_verify=False, **trust),
        ca_certificates=[ca],
    ))
    assert await get(gw, "/untrusted/x") == (502, {"message": "An invalid response was received from the upstream server",
                                                    "reason": "upstream_tls_untrusted"})
    assert (await get(gw, "/misnamed/x"))[1]["reason"] == "upstream_hostname_mismatch"
    assert (await get(gw, "/untrusted-off/x"))[0] == 200
    assert (await get(gw, "/misnamed-off/x"))[0] == 200
    assert len(untrusted.server.requests) == 1 and len(misnamed.server.requests) == 1


async def test_global_trust_store_and_insecure_skip_verify(
    nursery: trio.Nursery, start_gateway: StartGateway, server_ca: trustme.CA, tmp_path: Path, ca_pem: Path,
) -> None:
    up = await start_tls_echo(nursery, server_context(*pem_of(server_ca.issue_cert("127.0.0.1")), tmp=tmp_path))
    server_ca.cert_pem.write_to_path(str(tmp_path / "servers.pem"))
    gw = await start_gateway(config(svc("s", up.url())), proxy_ssl_trusted_certificate=str(tmp_path / "servers.pem"))
    assert (await get(gw, "/s/x"))[0] == 200
    gw2 = await start_gateway(config(svc("s", up.url())))  # system roots: the test CA is unknown
    assert (await get(gw2, "/s/x"))[1]["reason"] == "upstream_tls_untrusted"
    gw3 = await start_gateway(config(svc("s", up.url())), proxy_ssl_insecure_skip_verify=True)
    assert (await get(gw3, "/s/x"))[0] == 200


async def test_ip_upstream_is_matched_against_ip_sans(
    nursery: trio.Nursery, start_gateway: StartGateway, server_ca: trustme.CA, tmp_path: Path,
) -> None:
    dns_only = await start_tls_echo(nursery, server_context(*pem_of(server_ca.issue_cert("localhost")), tmp=tmp_path))
    ca = ca_entity(server_ca)
    gw = await start_gateway(config(
        svc("ip", dns_only.url("127.0.0.1"), ca_certificates=[ca["id"]]),
        svc("name", dns_only.url("localhost"), ca_certificates=[ca["id"]]),
        ca_certificates=[ca],
    ))
    assert (await get(gw, "/ip/x"))[1]["reason"] == "upstream_hostname_mismatch"
    assert (await get(gw, "/name/x"))[0] == 200


async def test_verify_depth(nursery: trio.Nursery, start_gateway: StartGateway, tmp_path: Path) -> None:
    leaf = tpki.chain_of_depth(3, leaf_name="localhost")  # leaf, 2 intermediates, root
    up = await start_tls_echo(nursery, server_context(leaf.chain_pem(), leaf.key_pem(), tmp=tmp_path))
    ca = {"id": str(uuid.uuid4()), "cert": leaf.root.cert_pem()}
    gw = await start_gateway(config(
        svc("deep-ok", up.url("localhost"), ca_certificates=[ca["id"]], tls_verify_depth=3),
        svc("too-deep", up.url("localhost"), ca_certificates=[ca["id"]], tls_verify_depth=1),
        ca_certificates=[ca],
    ))
    assert (await get(gw, "/deep-ok/x"))[0] == 200
    assert (await get(gw, "/too-deep/x"))[1]["reason"] == "upstream_tls_untrusted"


async def test_common_name_check(nursery: trio.Nursery, start_gateway: StartGateway, tmp_path: Path) -> None:
    root = tpki.make_ca()
    cn_only = tpki.cn_only_leaf(root, "localhost")
    up = await start_tls_echo(nursery, server_context(cn_only.chain_pem(), cn_only.key_pem(), tmp=tmp_path))
    san = tpki.issue(root, "elsewhere.test")
    up_san = await start_tls_echo(nursery, server_context(san.chain_pem(), san.key_pem(), tmp=tmp_path))
    stranger = tpki.cn_only_leaf(tpki.make_ca(common_name="stranger"), "localhost")
    up_untrusted = await start_tls_echo(nursery, server_context(stranger.chain_pem(), stranger.key_pem(), tmp=tmp_path))
    ca = {"id": str(uuid.uuid4()), "cert": root.cert_pem()}
    trust = {"ca_certificates": [ca["id"]]}
    gw = await start_gateway(config(
        svc("off", up.url("localhost"), **trust),
        svc("on", up.url("localhost"), tls_force_common_name_check=True, **trust),
        svc("on-wrong-host", up.url("127.0.0.1"), tls_force_common_name_check=True, **trust),
        svc("on-san", up_san.url("localhost"), tls_force_common_name_check=True, **trust),
        svc("on-untrusted", up_untrusted.url("localhost"), tls_force_common_name_check=True, **trust),
        ca_certificates=[ca],
    ))
    assert (await get(gw, "/off/x"))[1]["reason"] == "upstream_hostname_mismatch"
    assert (await get(gw, "/on/x"))[0] == 200
    assert (await get(gw, "/on-wrong-host/x"))[1]["reason"] == "upstream_cn_mismatch"
    assert (await get(gw, "/on-san/x"))[1]["reason"] == "upstream_hostname_mismatch"
    assert (await get(gw, "/on-untrusted/x"))[1]["reason"] == "upstream_tls_untrusted"
    # the global switch (Tyk ssl_force_common_name_check)
    gw2 = await start_gateway(config(svc("off", up.url("localhost"), **trust), ca_certificates=[ca]),
                              ssl_force_common_name_check=True)
    assert (await get(gw2, "/off/x"))[0] == 200


# --- pins ---------------------------------------------------------------------------------------


@dataclass
class RawTlsServer:
    """Accepts TLS and records every byte received after the handshake."""

    ctx: ssl.SSLContext
    received: list[bytes | bytearray] = field(default_factory=list)
    handshakes: int = 0

    async def serve(self, listener: trio.SocketListener) -> None:
        async with trio.open_nursery() as nursery:
            while True:
                sock = await listener.accept()
                nursery.start_soon(self._one, sock)

    async def _one(self, sock: trio.SocketStream) -> None:
        tls = trio.SSLStream(sock, self.ctx, server_side=True)
        try:
            await tls.do_handshake()
            self.handshakes += 1
            with trio.move_on_after(2):
                while data := await tls.receive_some(65536):
                    self.received.append(data)
        except (trio.BrokenResourceError, ssl.SSLError):
            pass
        finally:
            await trio.aclose_forcefully(tls)


async def test_wrong_pin_fails_before_any_request_byte(
    nursery: trio.Nursery, start_gateway: StartGateway, server_ca: trustme.CA, tmp_path: Path,
) -> None:
    leaf = server_ca.issue_cert("127.0.0.1", "localhost")
    ctx = server_context(*pem_of(leaf), tmp=tmp_path)
    raw = RawTlsServer(ctx)
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    nursery.start_soon(raw.serve, listeners[0])
    raw_port = listeners[0].socket.getsockname()[1]
    echo = await start_tls_echo(nursery, ctx)
    der = x509.load_pem_x509_certificate(leaf.cert_chain_pems[0].bytes()).public_bytes(Encoding.DER)
    good, wrong = spki_pin(der), "sha256//" + "A" * 43 + "="
    ca = ca_entity(server_ca)
    trust = {"ca_certificates": [ca["id"]]}
    gw = await start_gateway(config(
        svc("wrong", f"https://127.0.0.1:{raw_port}", tls_pinned_public_keys=[wrong], **trust),
        svc("good", echo.url(), tls_pinned_public_keys=[wrong, good], **trust),
        svc("mapped", echo.url("localhost"), **trust),
        ca_certificates=[ca],
    ), pinned_public_keys={"localhost": wrong})
    status, body = await get(gw, "/wrong/x")
    assert (status, body["reason"]) == (502, "upstream_pin_mismatch")
    await trio.sleep(0.2)
    assert raw.handshakes == 1 and raw.received == []  # handshake done, not one request byte
    assert (await get(gw, "/good/x"))[0] == 200
    assert (await get(gw, "/mapped/x"))[1]["reason"] == "upstream_pin_mismatch"  # host map, Tyk semantics


# --- renegotiation and versions -----------------------------------------------------------------


async def test_upstream_renegotiation_is_refused(start_gateway: StartGateway, server_ca: trustme.CA, tmp_path: Path) -> None:
    pem = tmp_path / "s_server.pem"
    pem.write_text("".join(pem_of(server_ca.issue_cert("127.0.0.1"))))
    async with SServer("-tls1_2", "-cert", str(pem), "-key", str(pem)) as server:
        ca = ca_entity(server_ca)
        gw = await start_gateway(config(
            svc("r", f"https://127.0.0.1:{server.port}", ca_certificates=[ca["id"]], read_timeout=5000),
            ca_certificates=[ca],
        ))
        result: list[tuple[int, dict[str, Any]]] = []

        async def ask() -> None:
            result.append(await get(gw, "/r/x"))

        async with trio.open_nursery() as inner:
            inner.start_soon(ask)
            await server.readline_until(b"GET /x")  # s_server prints what it received
            server.type(b"r\n")  # the server asks to renegotiate (docs/tls-stack.md §5)
        assert result[0][0] == 502 and result[0][1]["reason"] == "upstream_renegotiation_refused"


async def test_tls12_only_upstream_fails_under_min_version_13(
    start_gateway: StartGateway, server_ca: trustme.CA, tmp_path: Path,
) -> None:
    pem = tmp_path / "s.pem"
    pem.write_text("".join(pem_of(server_ca.issue_cert("127.0.0.1"))))
    async with SServer("-tls1_2", "-cert", str(pem), "-key", str(pem), "-www") as server:
        url = f"https://127.0.0.1:{server.port}"
        ca = ca_entity(server_ca)
        trust = {"ca_certificates": [ca["id"]]}
        gw = await start_gateway(config(
            svc("strict", url, tls_min_version="1.3", **trust), svc("default", url, **trust), ca_certificates=[ca],
        ))
        assert (await get(gw, "/strict/x"))[1]["reason"] == "upstream_tls_version"
        assert (await get(gw, "/default/x"))[0] == 200
        gw2 = await start_gateway(config(svc("default", url, **trust), ca_certificates=[ca]), proxy_ssl_min_version="1.3")
        assert (await get(gw2, "/default/x"))[1]["reason"] == "upstream_tls_version"


# --- forward proxy ------------------------------------------------------------------------------


async def test_connect_proxy_keeps_the_upstream_tls_profile(
    nursery: trio.Nursery, start_gateway: StartGateway, server_ca: trustme.CA, client_ca: trustme.CA,
    mtls_upstream_ctx: ssl.SSLContext, tmp_path: Path,
) -> None:
    up = await start_tls_echo(nursery, mtls_upstream_ctx)
    stranger = await start_tls_echo(nursery, server_context(*pem_of(trustme.CA().issue_cert("127.0.0.1")), tmp=tmp_path))
    proxy, proxy_port = await start_proxy(nursery)
    cert = cert_entity(client_ca.issue_cert("via.clients.test", common_name="via-proxy"))
    ca = ca_entity(server_ca)
    good = f"http://user:s3cret@127.0.0.1:{proxy_port}"
    common = {"client_certificate": cert["id"], "ca_certificates": [ca["id"]]}
    gw = await start_gateway(config(
        svc("via", up.url(), proxy_url=good, **common),
        svc("bad-auth", up.url(), proxy_url=f"http://user:wrong@127.0.0.1:{proxy_port}", **common),
        svc("untrusted", stranger.url(), proxy_url=good, **common),
        certificates=[cert], ca_certificates=[ca],
    ))
    status, seen = await get(gw, "/via/anything")
    assert status == 200 and "CN=via-proxy" in seen["client_cert_subject"]  # mTLS through the tunnel
    assert proxy.heads[-1] == (f"CONNECT 127.0.0.1:{up.port} HTTP/1.1".encode(), proxy.expected_auth)
    assert (await get(gw, "/bad-auth/x"))[1]["reason"] == "proxy_connect_failed"  # 407: not the pooled tunnel
    assert (await get(gw, "/untrusted/x"))[1]["reason"] == "upstream_tls_untrusted"  # verified end to end
    assert stranger.server.requests == []


async def test_plain_http_upstream_through_proxy_uses_absolute_form(
    nursery: trio.Nursery, start_gateway: StartGateway, upstream: Any,
) -> None:
    proxy, proxy_port = await start_proxy(nursery)
    gw = await start_gateway(config(svc("plain", upstream.url, proxy_url=f"http://user:s3cret@127.0.0.1:{proxy_port}")))
    status, seen = await get(gw, "/plain/anything")
    assert status == 200
    assert proxy.heads[-1] == (f"GET http://127.0.0.1:{upstream.port}/anything HTTP/1.1".encode(), proxy.expected_auth)
    assert seen["path"] == f"http://127.0.0.1:{upstream.port}/anything"  # this test proxy forwards verbatim


async def test_https_proxy_is_verified_against_the_os_store_and_gets_no_client_certificate(
    nursery: trio.Nursery, start_gateway: StartGateway, server_ca: trustme.CA, client_ca: trustme.CA,
    mtls_upstream_ctx: ssl.SSLContext, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Tyk: an https:// proxy is validated against the OS root store; SSL_CERT_FILE chooses that store."""
    proxy_ca, rogue_ca = trustme.CA(organization_name="proxy operator"), trustme.CA()
    (tmp_path / "proxy-ca.pem").write_bytes(proxy_ca.cert_pem.bytes())
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "proxy-ca.pem"))
    up = await start_tls_echo(nursery, mtls_upstream_ctx)
    ports: list[int] = []
    peers: list[bytes | None] = []
    for issuer in (proxy_ca, rogue_ca):
        ctx = server_context(*pem_of(issuer.issue_cert("127.0.0.1")), client_ca=client_ca, tmp=tmp_path)
        ctx.verify_mode = ssl.CERT_OPTIONAL  # ask the gateway for a certificate: it must present none
        proxy, port = await start_proxy(nursery, ctx, peers)
        ports.append(port)
    cert = cert_entity(client_ca.issue_cert("via.clients.test", common_name="via-https-proxy"))
    ca = ca_entity(server_ca)
    common = {"client_certificate": cert["id"], "ca_certificates": [ca["id"]]}
    gw = await start_gateway(config(
        svc("via", up.url(), proxy_url=f"https://user:s3cret@127.0.0.1:{ports[0]}", **common),
        svc("rogue", up.url(), proxy_url=f"https://user:s3cret@127.0.0.1:{ports[1]}", **common),
        certificates=[cert], ca_certificates=[ca],
    ))
    status, seen = await get(gw, "/via/x")
    assert status == 200 and "CN=via-https-proxy" in seen["client_cert_subject"]
    assert peers == [None]  # the proxy asked, the gateway presented nothing to it
    before = len(up.server.requests)
    assert (await get(gw, "/rogue/x"))[1]["reason"] == "proxy_connect_failed"
    assert len(up.server.requests) == before and peers == [None]  # refused before the CONNECT


async def test_unreachable_proxy_is_proxy_connect_failed(
    nursery: trio.Nursery, start_gateway: StartGateway, mtls_upstream_ctx: ssl.SSLContext,
) -> None:
    up = await start_tls_echo(nursery, mtls_upstream_ctx)
    closed = trio.socket.socket()
    await closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    gw = await start_gateway(config(svc("s", up.url(), proxy_url=f"http://127.0.0.1:{port}", tls_verify=False)))
    assert (await get(gw, "/s/x"))[1]["reason"] == "proxy_connect_failed"
    closed.close()


# --- pooling and rotation ---------------------------------------------------------------------------


async def test_profiles_never_share_connections_and_rotation_applies_to_new_connections(
    nursery: trio.Nursery, start_gateway: StartGateway, server_ca: trustme.CA, client_ca: trustme.CA,
    mtls_upstream_ctx: ssl.SSLContext, tmp_path: Path,
) -> None:
    up = await start_tls_echo(nursery, mtls_upstream_ctx)
    a, b = (cert_entity(client_ca.issue_cert(f"{n}.clients.test", common_name=n)) for n in ("pool-a", "pool-b"))
    ca = ca_entity(server_ca)
    services = [svc("a", up.url(), client_certificate=a["id"], ca_certificates=[ca["id"]]),
                svc("b", up.url(), client_certificate=b["id"], ca_certificates=[ca["id"]])]
    gw = await start_gateway(config(*services, certificates=[a, b], ca_certificates=[ca]))
    for _ in range(3):
        for name in ("a", "b"):
            status, seen = await get(gw, f"/{name}/anything")
            assert status == 200 and f"CN=pool-{name}" in seen["client_cert_subject"]
    assert up.server.connections == 2  # one pooled connection per profile, reused
    # rotate service a's certificate: the next new connection presents the new one
    rotated = cert_entity(client_ca.issue_cert("rotated.clients.test", common_name="pool-a-rotated"))
    services[0]["client_certificate"] = rotated["id"]
    import yaml

    assert gw.settings.declarative_config is not None
    Path(gw.settings.declarative_config).write_text(
        yaml.safe_dump(config(*services, certificates=[a, b, rotated], ca_certificates=[ca])))
    await gw.reload()
    status, seen = await get(gw, "/a/anything")
    assert status == 200 and "CN=pool-a-rotated" in seen["client_cert_subject"]
    assert (await get(gw, "/b/anything"))[0] == 200
    assert up.server.connections == 3  # b kept its pooled connection (same profile)
