"""The Status API over TLS (status_ssl_cert) and the node's own https fetches (lua_ssl_trusted_certificate)."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
import trio
import trustme

from trio_gw.errors import ConfigError
from trio_gw.net.http_fetch import FetchError, fetch, outbound_tls_context
from trio_gw.testing.http_client import Client

from .conftest import StartGateway, port_of

BODY = b"not really a CRL, but bytes all the same"


def _write_leaf(ca: trustme.CA, directory: Path, *names: str) -> tuple[Path, Path]:
    leaf = ca.issue_cert(*names, common_name=names[0])
    cert, key = directory / f"{names[0]}.crt", directory / f"{names[0]}.key"
    cert.write_bytes(b"".join(b.bytes() for b in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(key))
    return cert, key


async def test_status_is_served_over_tls_with_status_ssl_cert(
    start_gateway: StartGateway, ca: trustme.CA, client_ctx: ssl.SSLContext, tmp_path: Path
) -> None:
    cert, key = _write_leaf(ca, tmp_path, "status.test")
    gw = await start_gateway(status_listen="127.0.0.1:0 ssl", status_ssl_cert=str(cert), status_ssl_cert_key=str(key))
    port = port_of(gw, ssl=True, kind="status")
    client = await Client.connect(port, tls=client_ctx, server_hostname="status.test")
    try:
        reply = await client.request("GET", "/status", host="status.test")
    finally:
        await client.aclose()
    assert reply.status == 200
    assert reply.json()["database"]["kind"] == "off"


async def test_ssl_status_listener_without_certificate_serves_the_generated_one(
    start_gateway: StartGateway, tmp_path: Path
) -> None:
    gw = await start_gateway(status_listen="127.0.0.1:0 ssl")
    ctx = ssl.create_default_context(cafile=str(Path(gw.settings.prefix) / "pki" / "ca.pem"))
    client = await Client.connect(port_of(gw, ssl=True, kind="status"), tls=ctx, server_hostname="localhost")
    try:
        assert (await client.request("GET", "/status")).status == 200
    finally:
        await client.aclose()


async def test_status_key_mismatch_stops_start_up(start_gateway: StartGateway, ca: trustme.CA, tmp_path: Path) -> None:
    cert, _ = _write_leaf(ca, tmp_path, "status.test")
    _, other_key = _write_leaf(ca, tmp_path, "other.test")
    with pytest.raises(ConfigError) as info:
        await start_gateway(status_listen="127.0.0.1:0 ssl", status_ssl_cert=str(cert), status_ssl_cert_key=str(other_key))
    assert [p.path for p in info.value.problems] == [f"status_ssl_cert_key[0] ({other_key})"]


# --- fetch over https with lua_ssl_trusted_certificate -----------------------------------------------


async def _serve_once(listener: trio.SocketListener, ctx: ssl.SSLContext) -> None:
    while True:
        sock = await listener.accept()
        stream = trio.SSLStream(sock, ctx, server_side=True, https_compatible=True)
        try:
            await stream.do_handshake()
            await stream.receive_some(65536)
            await stream.send_all(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\nconnection: close\r\n\r\n" % len(BODY) + BODY)
        except trio.BrokenResourceError:
            pass  # the client refused our certificate
        await trio.aclose_forcefully(stream)


@pytest.fixture
async def private_https(nursery: trio.Nursery, tmp_path: Path) -> tuple[str, Path]:
    """An https server whose certificate comes from a private CA (written to the returned path)."""
    private = trustme.CA()
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    private.issue_cert("127.0.0.1").configure_cert(server_ctx)
    listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
    nursery.start_soon(_serve_once, listener, server_ctx)
    ca_path = tmp_path / "private-ca.pem"
    private.cert_pem.write_to_path(str(ca_path))
    return f"https://127.0.0.1:{listener.socket.getsockname()[1]}/ca.crl", ca_path


async def test_fetch_trusts_exactly_lua_ssl_trusted_certificate(private_https: tuple[str, Path]) -> None:
    url, ca_path = private_https
    trusted = await trio.to_thread.run_sync(outbound_tls_context, ["system", str(ca_path)], None)
    assert await fetch(url, timeout=5, ssl_context=trusted) == BODY
    system_only = await trio.to_thread.run_sync(outbound_tls_context, ["system"], None)
    with pytest.raises(FetchError, match=r"not trusted \(unable to get local issuer certificate; see lua_ssl"):
        await fetch(url, timeout=5, ssl_context=system_only)
    with pytest.raises(FetchError, match="not trusted"):
        await fetch(url, timeout=5)  # no context: the system store, as before


async def test_fetch_name_and_depth_are_checked(nursery: trio.Nursery, tmp_path: Path) -> None:
    root = trustme.CA()
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    root.create_child_ca().issue_cert("127.0.0.1").configure_cert(server_ctx)  # leaf, intermediate, root
    listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
    nursery.start_soon(_serve_once, listener, server_ctx)
    port = listener.socket.getsockname()[1]
    ca_path = tmp_path / "root.pem"
    root.cert_pem.write_to_path(str(ca_path))
    assert await fetch(f"https://127.0.0.1:{port}/x", timeout=5,
                       ssl_context=outbound_tls_context([str(ca_path)], 1)) == BODY
    with pytest.raises(FetchError, match="certificate chain too long"):
        await fetch(f"https://127.0.0.1:{port}/x", timeout=5, ssl_context=outbound_tls_context([str(ca_path)], 0))
    with pytest.raises(FetchError, match="(?i)hostname mismatch"):
        await fetch(f"https://localhost:{port}/x", timeout=5, ssl_context=outbound_tls_context([str(ca_path)], None))
