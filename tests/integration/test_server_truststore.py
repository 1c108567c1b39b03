"""ssl_verify_client / ssl_client_certificate: the server-level truststore in real handshakes."""

from __future__ import annotations

from trio_gw.net.contexts import ALPN_HTTP11

import ssl
from pathlib import Path
from typing import Any

import pytest
import trio
import trustme

from trio_gw.errors import ConfigError
from trio_gw.runtime.certificate_files import read_client_truststore
from trio_gw.settings import parse_settings

from .conftest import StartGateway, port_of

CONFIG: dict[str, Any] = {"_format_version": "3.0"}


@pytest.fixture
def client_ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def truststore(client_ca: trustme.CA, tmp_path: Path) -> Path:
    path = tmp_path / "clients.pem"
    client_ca.cert_pem.write_to_path(str(path))
    return path


async def exchange(
    port: int, ca: trustme.CA, client: trustme.LeafCert | None, *, tls12: bool = False,
) -> bytes | bytearray:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    if tls12:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    if client is not None:
        client.configure_cert(ctx)
    stream = trio.SSLStream(await trio.open_tcp_stream("127.0.0.1", port), ctx, server_hostname="localhost")
    try:
        await stream.do_handshake()
        await stream.send_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        return await stream.receive_some(4096)  # TLS 1.3 reports a refused client certificate at the first read
    finally:
        await trio.aclose_forcefully(stream)


async def test_on_requires_a_certificate_from_the_truststore(
    start_gateway: StartGateway, ca: trustme.CA, server_pair: tuple[Path, Path], client_ca: trustme.CA,
    truststore: Path,
) -> None:
    cert, key = server_pair
    gw = await start_gateway(CONFIG, ssl_cert=str(cert), ssl_cert_key=str(key), ssl_verify_client="on",
                             ssl_client_certificate=str(truststore))
    assert gw.generation.server_tls.listener_context(ALPN_HTTP11).verify_mode == ssl.CERT_REQUIRED
    port = port_of(gw, ssl=True)
    with pytest.raises(trio.BrokenResourceError) as info:
        await exchange(port, ca, None)
    assert "CERTIFICATE_REQUIRED" in str(info.value.__cause__).upper()
    with pytest.raises(trio.BrokenResourceError) as info:
        await exchange(port, ca, None, tls12=True)
    assert "HANDSHAKE_FAILURE" in str(info.value.__cause__).upper()
    with pytest.raises(trio.BrokenResourceError) as info:
        await exchange(port, ca, trustme.CA().issue_cert("stranger@example.test"))
    assert "UNKNOWN_CA" in str(info.value.__cause__).upper()
    assert (await exchange(port, ca, client_ca.issue_cert("alice@example.test"))).startswith(b"HTTP/1.1 404")


async def test_optional_asks_but_lets_clients_without_one_through(
    start_gateway: StartGateway, ca: trustme.CA, server_pair: tuple[Path, Path], client_ca: trustme.CA,
    truststore: Path,
) -> None:
    cert, key = server_pair
    gw = await start_gateway(CONFIG, ssl_cert=str(cert), ssl_cert_key=str(key), ssl_verify_client="optional",
                             ssl_client_certificate=str(truststore))
    assert gw.generation.server_tls.listener_context(ALPN_HTTP11).verify_mode == ssl.CERT_OPTIONAL
    port = port_of(gw, ssl=True)
    assert (await exchange(port, ca, None)).startswith(b"HTTP/1.1 404")
    assert (await exchange(port, ca, client_ca.issue_cert("alice@example.test"))).startswith(b"HTTP/1.1 404")


async def test_off_ignores_the_truststore(
    start_gateway: StartGateway, ca: trustme.CA, server_pair: tuple[Path, Path], truststore: Path
) -> None:
    cert, key = server_pair
    gw = await start_gateway(CONFIG, ssl_cert=str(cert), ssl_cert_key=str(key), ssl_client_certificate=str(truststore))
    assert gw.generation.server_tls.listener_context(ALPN_HTTP11).verify_mode == ssl.CERT_NONE
    assert any("ssl_verify_client is off" in w for w in gw.generation.snapshot.warnings)


def test_truststore_files_are_checked(tmp_path: Path, client_ca: trustme.CA, truststore: Path) -> None:
    leaf = tmp_path / "leaf.pem"
    client_ca.issue_cert("alice@example.test").cert_chain_pems[0].write_to_path(str(leaf))
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(truststore.read_bytes() + trustme.CA().cert_pem.bytes())
    assert len(read_client_truststore(parse_settings([("t", {"ssl_client_certificate": str(bundle)})]))) == 2
    bad = parse_settings([("t", {"ssl_client_certificate": [str(tmp_path / "missing.pem"), str(leaf)]})])
    with pytest.raises(ConfigError) as info:
        read_client_truststore(bad)
    problems = {p.path: p.message for p in info.value.problems}
    assert "cannot read" in problems["ssl_client_certificate[0]"]
    assert "is not a CA certificate" in problems["ssl_client_certificate[1]"]
