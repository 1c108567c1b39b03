"""Client certificates per host: only clients whose SNI can reach a route needing one are asked.

The listener context asks (``CERT_OPTIONAL``) when any route needs a certificate; the SNI callback
then sets ``SSL_VERIFY_NONE`` on connections whose SNI reaches no such route
(``trio_gw.net.openssl_shim.set_verify_none``), as nginx does for a server without
``ssl_verify_client``.  Observables, each for TLS 1.2 and 1.3:

* a client offering a certificate from a CA the gateway does not trust gets ``unknown_ca`` when
  asked (it sends the certificate) and 200 when not asked (it never sends it);
* ``openssl s_client -msg`` shows the CertificateRequest message, or not;
* server side (in memory), ``getpeercert(True)`` is None although the client had a certificate.
"""

from __future__ import annotations

import shutil
import ssl
from pathlib import Path
from typing import Any

import pytest
import trio
import trustme

from trio_gw.net import openssl_shim
from trio_gw.testing import pki
from trio_gw.testing.http_client import Client, Reply

from .conftest import StartGateway, Upstream, port_of

ROOT_ID = "7a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
VERSIONS = [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3]
needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl s_client")


@pytest.fixture(scope="module")
def hosts_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[trustme.CA, Path, Path]:
    ca = trustme.CA()
    d = tmp_path_factory.mktemp("hosts-cert")
    leaf = ca.issue_cert("secure.example", "public.example", "*.wild.example", "localhost", "127.0.0.1")
    cert, key = d / "server.pem", d / "server.key"
    cert.write_bytes(b"".join(b.bytes() for b in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(key))
    return ca, cert, key


@pytest.fixture(scope="module")
def clients() -> dict[str, pki.Issued]:
    root, stranger_ca = pki.make_ca(), pki.make_ca(common_name="nobody trusts this CA")
    return {"root": root, "alice": pki.issue(root, "alice.example"),
            "stranger": pki.issue(stranger_ca, "stranger.example")}


def config(upstream: Upstream, root: pki.Issued, *, secure_hosts: list[str] | None) -> dict[str, Any]:
    secure: dict[str, Any] = {"name": "secure", "paths": ["/"], "plugins": [
        {"name": "mtls-auth", "config": {"ca_certificates": [ROOT_ID]}}]}
    if secure_hosts is not None:
        secure["hosts"] = secure_hosts
    return {
        "_format_version": "3.0",
        "ca_certificates": [{"id": ROOT_ID, "cert": root.cert_pem()}],
        "consumers": [{"username": "alice.example"}],
        "services": [{"name": "echo", "url": upstream.url, "routes": [
            secure, {"name": "public", "hosts": ["public.example"], "paths": ["/"]}]}],
    }


async def start(start_gateway: StartGateway, upstream: Upstream, hosts_pair: tuple[trustme.CA, Path, Path],
                clients: dict[str, pki.Issued], secure_hosts: list[str] | None) -> int:
    _, cert, key = hosts_pair
    gw = await start_gateway(config(upstream, clients["root"], secure_hosts=secure_hosts),
                             ssl_cert=str(cert), ssl_cert_key=str(key))
    return port_of(gw, ssl=True)


def client_ctx(ca: trustme.CA, tmp_path: Path, leaf: pki.Issued | None, version: ssl.TLSVersion,
               *, sni: bool = True) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    ctx.minimum_version = ctx.maximum_version = version
    if not sni:
        ctx.check_hostname = False
    if leaf is not None:
        cert, key = tmp_path / "client.pem", tmp_path / "client.key"
        cert.write_text(leaf.chain_pem())
        key.write_text(leaf.key_pem())
        ctx.load_cert_chain(str(cert), str(key))
    return ctx


async def get(port: int, ctx: ssl.SSLContext, sni: str | None, host: str) -> Reply | str:
    """The reply, or the reason of the TLS alert the exchange ends with (TLS 1.3: at the first read)."""
    try:
        client = await Client.connect(port, tls=ctx, server_hostname=sni)
        try:
            return await client.request("GET", "/x", host=host)
        finally:
            await client.aclose()
    except (trio.BrokenResourceError, BaseExceptionGroup) as exc:
        cause: BaseException | None = exc
        while cause is not None and not isinstance(cause, ssl.SSLError):
            cause = cause.exceptions[0] if isinstance(cause, BaseExceptionGroup) else cause.__cause__
        assert cause is not None, exc
        return str(cause.reason)


def status(result: Reply | str) -> int | str:
    return result if isinstance(result, str) else result.status


async def s_client(port: int, *args: str) -> str:
    result = await trio.run_process(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-msg", "-state", *args],
        stdin=b"", capture_stdout=True, capture_stderr=True, check=False)
    return result.stdout.decode(errors="replace") + result.stderr.decode(errors="replace")


# --- end to end ----------------------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS, ids=["tls1.2", "tls1.3"])
async def test_only_the_mtls_host_is_asked(
    start_gateway: StartGateway, upstream: Upstream, hosts_pair: Any, clients: dict[str, pki.Issued],
    tmp_path: Path, version: ssl.TLSVersion,
) -> None:
    ca = hosts_pair[0]
    port = await start(start_gateway, upstream, hosts_pair, clients, ["secure.example", "*.wild.example"])
    stranger = client_ctx(ca, tmp_path, clients["stranger"], version)
    # not asked: the untrusted certificate is never sent, so the handshake succeeds
    assert status(await get(port, stranger, "public.example", "public.example")) == 200
    assert status(await get(port, stranger, "PUBLIC.example", "public.example")) == 200
    # asked: the client sends it and OpenSSL refuses it
    for name in ("secure.example", "a.wild.example"):
        assert await get(port, stranger, name, name) == "TLSV1_ALERT_UNKNOWN_CA"
    alice = client_ctx(ca, tmp_path, clients["alice"], version)
    reply = await get(port, alice, "secure.example", "secure.example")
    assert isinstance(reply, Reply) and reply.status == 200, reply
    assert reply.json()["headers"]["x-consumer-username"] == "alice.example"
    no_cert = await get(port, client_ctx(ca, tmp_path, None, version), "secure.example", "secure.example")
    assert isinstance(no_cert, Reply) and (no_cert.status, no_cert.json()["reason"]) == (401, "no_cert")
    # a connection made for the public host and reused for the secure one: 421, never the route
    reused = await get(port, alice, "public.example", "secure.example")
    assert isinstance(reused, Reply) and (reused.status, reused.json()["reason"]) == (421, "sni_host_mismatch")
    # no SNI (an IP address was dialled): the Host could be anything, so the client is asked
    assert await get(port, client_ctx(ca, tmp_path, clients["stranger"], version, sni=False), None,
                     "public.example") == "TLSV1_ALERT_UNKNOWN_CA"


@pytest.mark.parametrize("version", VERSIONS, ids=["tls1.2", "tls1.3"])
async def test_a_host_less_route_needing_a_certificate_asks_every_sni(
    start_gateway: StartGateway, upstream: Upstream, hosts_pair: Any, clients: dict[str, pki.Issued],
    tmp_path: Path, version: ssl.TLSVersion,
) -> None:
    port = await start(start_gateway, upstream, hosts_pair, clients, None)
    stranger = client_ctx(hosts_pair[0], tmp_path, clients["stranger"], version)
    for name in ("public.example", "secure.example", "localhost"):
        assert await get(port, stranger, name, name) == "TLSV1_ALERT_UNKNOWN_CA"


async def test_without_the_shim_every_sni_is_asked(
    start_gateway: StartGateway, upstream: Upstream, hosts_pair: Any, clients: dict[str, pki.Issued],
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The fallback when the layout cannot be proven: today's behaviour, never a crash."""
    monkeypatch.setattr(openssl_shim, "connection_shim_available", lambda: False)
    port = await start(start_gateway, upstream, hosts_pair, clients, ["secure.example"])
    for version in VERSIONS:
        stranger = client_ctx(hosts_pair[0], tmp_path, clients["stranger"], version)
        assert await get(port, stranger, "public.example", "public.example") == "TLSV1_ALERT_UNKNOWN_CA"
        public = await get(port, client_ctx(hosts_pair[0], tmp_path, None, version), "public.example",
                           "public.example")
        assert status(public) == 200


@needs_openssl
@pytest.mark.parametrize("version", ["-tls1_2", "-tls1_3"])
async def test_s_client_sees_a_certificate_request_only_for_the_mtls_host(
    start_gateway: StartGateway, upstream: Upstream, hosts_pair: Any, clients: dict[str, pki.Issued],
    version: str, tmp_path: Path,
) -> None:
    port = await start(start_gateway, upstream, hosts_pair, clients, ["secure.example"])
    ca_file = tmp_path / "ca.pem"
    hosts_pair[0].cert_pem.write_to_path(str(ca_file))
    trust = ("-CAfile", str(ca_file))
    public = await s_client(port, version, *trust, "-servername", "public.example")
    secure = await s_client(port, version, *trust, "-servername", "secure.example")
    no_sni = await s_client(port, version, *trust, "-noservername")
    for out in (public, secure, no_sni):
        assert "ServerHello" in out and "Verification: OK" in out and "read finished" in out, out
    assert "CertificateRequest" not in public and "certificate request" not in public, public
    assert "CertificateRequest" in secure, secure
    assert "CertificateRequest" in no_sni, no_sni
    if version == "-tls1_2":
        assert "SSL_connect:SSLv3/TLS read server certificate request" in secure


# --- the shim, server side, in memory ------------------------------------------------------------


def handshake(server: ssl.SSLContext, client: ssl.SSLContext, name: str) -> ssl.SSLObject:
    s_in, s_out, c_in, c_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    srv = server.wrap_bio(s_in, s_out, server_side=True)
    cli = client.wrap_bio(c_in, c_out, server_hostname=name)
    for _ in range(6):
        for obj, out, peer_in in ((cli, c_out, s_in), (srv, s_out, c_in)):
            try:
                obj.do_handshake()
            except ssl.SSLWantReadError:
                pass
            if data := out.read():
                peer_in.write(data)
    cli.write(b"x")
    s_in.write(c_out.read())
    assert srv.read(1) == b"x"  # TLS 1.3: the client's certificate arrives after its Finished
    return srv


@pytest.mark.parametrize("version", VERSIONS, ids=["tls1.2", "tls1.3"])
def test_set_verify_none_in_the_sni_callback(hosts_pair: Any, version: ssl.TLSVersion) -> None:
    assert openssl_shim.connection_shim_available(), "the SSL* layout check failed on this interpreter"
    ca, cert, key = hosts_pair
    client_ca = trustme.CA()
    listener = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    listener.verify_mode = ssl.CERT_OPTIONAL
    swapped = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)  # what the SNI callback swaps in (CERT_NONE itself)
    for ctx in (listener, swapped):
        ctx.load_cert_chain(cert, key)
        client_ca.configure_trust(ctx)
    results: dict[str, bool] = {}

    def callback(obj: ssl.SSLObject, name: str | None, initial: ssl.SSLContext) -> None:
        obj.context = swapped
        if name == "public.example":
            results[name] = openssl_shim.set_verify_none(obj, initial)
            assert get_verify_mode(obj) == openssl_shim.SSL_VERIFY_NONE

    listener.sni_callback = callback
    client = ssl.create_default_context()
    ca.configure_trust(client)
    client.maximum_version = version
    client_ca.issue_cert("client.example").configure_cert(client)
    assert handshake(listener, client, "secure.example").getpeercert(True) is not None
    public = handshake(listener, client, "public.example")
    assert results == {"public.example": True} and public.getpeercert(True) is None
    assert public.version() == {ssl.TLSVersion.TLSv1_2: "TLSv1.2", ssl.TLSVersion.TLSv1_3: "TLSv1.3"}[version]


def test_set_verify_none_declines_what_it_cannot_prove(monkeypatch: pytest.MonkeyPatch) -> None:
    listener = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    listener.verify_mode = ssl.CERT_OPTIONAL
    obj = listener.wrap_bio(ssl.MemoryBIO(), ssl.MemoryBIO(), server_side=True)
    required = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    required.verify_mode = ssl.CERT_REQUIRED
    assert not openssl_shim.set_verify_none(object(), listener)  # no _sslobj
    assert not openssl_shim.set_verify_none(type("Fake", (), {"_sslobj": object()})(), listener)
    assert not openssl_shim.set_verify_none(obj, required)  # the connection's mode is not that context's
    assert get_verify_mode(obj) == 0x01  # SSL_VERIFY_PEER: unchanged
    monkeypatch.setattr(openssl_shim, "connection_shim_available", lambda: False)
    assert not openssl_shim.set_verify_none(obj, listener)
    assert get_verify_mode(obj) is None
    monkeypatch.undo()
    assert openssl_shim.set_verify_none(obj, listener) and get_verify_mode(obj) == 0


def get_verify_mode(sslobj: Any) -> int | None:
    """``SSL_get_verify_mode`` of a connection, through the shim's proven pointers; None when unavailable."""
    if not openssl_shim.connection_shim_available():
        return None
    lib = openssl_shim._lib()
    p = openssl_shim._ssl_ptr(sslobj)
    if lib is None or not p or lib.ssl.SSL_get_SSL_CTX(p) != openssl_shim._ctx_ptr(sslobj.context):
        return None
    return int(lib.ssl.SSL_get_verify_mode(p))
