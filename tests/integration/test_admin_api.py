"""The Admin API in a running node: seed flows over real sockets, with curl where it matters."""

from __future__ import annotations

import json
import shutil
import ssl
from pathlib import Path
from typing import Any

import pytest
import trio
import trustme

from trio_gw.testing.http_client import Client
from trio_gw.testing.pki import expired_leaf, make_ca

from .conftest import StartGateway, Upstream, port_of
from .test_tls_server import served_cn


def pem_pair(ca: trustme.CA, name: str) -> tuple[str, str]:
    leaf = ca.issue_cert(name, common_name=name)
    return "".join(b.bytes().decode() for b in leaf.cert_chain_pems), leaf.private_key_pem.bytes().decode()


async def admin(gw: Any) -> Client:
    return await Client.connect(port_of(gw, kind="admin"))


async def call(client: Client, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    headers = [("content-type", "application/json")] if data is not None else []
    reply = await client.request(method, path, body=data, headers=headers)
    return reply.status, (reply.json() if reply.body else None)


@pytest.fixture
async def sqlite_gateway(start_gateway: StartGateway) -> Any:
    return await start_gateway(None, database="sqlite", admin_listen="127.0.0.1:0")


async def test_uploaded_certificate_is_served_by_the_next_handshake(
    sqlite_gateway: Any, ca: trustme.CA, upstream: Upstream
) -> None:
    client = await admin(sqlite_gateway)
    cert, key = pem_pair(ca, "uploaded.example.test")
    status, created = await call(client, "POST", "/certificates", {"cert": cert, "key": key,
                                                                   "snis": ["uploaded.example.test"]})
    assert status == 201, created
    assert "key" not in created
    status, listing = await call(client, "GET", "/certificates")
    assert status == 200
    assert [c["id"] for c in listing["data"]] == [created["id"]]
    status, service = await call(client, "POST", "/services", {"name": "api", "url": "https://127.0.0.1:9",
                                                               "client_certificate": {"id": created["id"]}})
    assert status == 201, service
    assert await served_cn(port_of(sqlite_gateway, ssl=True), "uploaded.example.test", ca) == "uploaded.example.test"


async def test_bad_uploads_get_4xx_and_change_nothing(sqlite_gateway: Any, ca: trustme.CA) -> None:
    client = await admin(sqlite_gateway)
    cert, _ = pem_pair(ca, "a.example.test")
    _, other_key = pem_pair(ca, "b.example.test")
    status, error = await call(client, "POST", "/certificates", {"cert": cert, "key": other_key})
    assert status == 400
    assert "key" in error["fields"]
    old = expired_leaf(make_ca())
    status, error = await call(client, "POST", "/certificates", {"cert": old.cert_pem(), "key": old.key_pem()})
    assert status == 400
    assert "expired" in json.dumps(error)
    status, error = await call(client, "POST", "/ca_certificates", {"cert": cert})
    assert status == 400
    assert "CA" in json.dumps(error)
    status, error = await call(client, "POST", "/snis", {"name": "x.example.test",
                                                         "certificate": {"id": "00000000-0000-4000-8000-000000000000"}})
    assert status == 400
    status, listing = await call(client, "GET", "/certificates")
    assert listing["data"] == []
    assert (await call(client, "GET", "/snis"))[1]["data"] == []


async def test_declarative_mode_is_read_only(start_gateway: StartGateway) -> None:
    gw = await start_gateway({"_format_version": "3.0"}, admin_listen="127.0.0.1:0")
    status, error = await call(await admin(gw), "POST", "/services", {"name": "s", "url": "http://x.test"})
    assert status == 405
    assert "read-only" in error["message"]


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed")
async def test_multipart_upload_as_in_the_seed(sqlite_gateway: Any, ca: trustme.CA, tmp_path: Path) -> None:
    cert, key = pem_pair(ca, "form.example.test")
    (tmp_path / "cert.pem").write_text(cert)
    (tmp_path / "key.pem").write_text(key)
    port = port_of(sqlite_gateway, kind="admin")
    result = await trio.run_process(
        ["curl", "-sS", "-F", f"cert=@{tmp_path / 'cert.pem'}", "-F", f"key=@{tmp_path / 'key.pem'}",
         "-F", "snis[]=form.example.test", f"http://127.0.0.1:{port}/certificates"],
        capture_stdout=True, capture_stderr=True, check=False,
    )
    assert result.returncode == 0, result.stderr
    created = json.loads(result.stdout)
    assert "id" in created and "key" not in created, created
    assert await served_cn(port_of(sqlite_gateway, ssl=True), "form.example.test", ca) == "form.example.test"


async def test_admin_mtls_refuses_clients_without_a_certificate(
    start_gateway: StartGateway, ca: trustme.CA, tmp_path: Path
) -> None:
    admin_ca = trustme.CA()
    ca_file = tmp_path / "admin-ca.pem"
    admin_ca.cert_pem.write_to_path(str(ca_file))
    gw = await start_gateway(None, database="sqlite", admin_listen="127.0.0.1:0 ssl", admin_mtls="on",
                             admin_mtls_ca_certificates=str(ca_file))
    port = port_of(gw, ssl=True, kind="admin")
    # the node's generated dev CA signs the admin server certificate
    ctx = ssl.create_default_context(cafile=str(Path(gw.settings.prefix) / "pki" / "ca.pem"))
    refused = None
    try:
        client = await Client.connect(port, tls=ctx, server_hostname="localhost")
        await client.request("GET", "/certificates")
    except BaseException as exc:  # an ExceptionGroup from the client's nursery, or the error itself
        refused = exc
    assert refused is not None and "CERTIFICATE_REQUIRED" in repr(_root(refused)).upper()
    admin_ca.issue_cert("operator@example.test").configure_cert(ctx)
    client = await Client.connect(port, tls=ctx, server_hostname="localhost")
    assert (await client.request("GET", "/certificates")).status == 200


def _root(exc: BaseException) -> BaseException:
    while True:
        if isinstance(exc, BaseExceptionGroup):
            exc = exc.exceptions[0]
        elif exc.__cause__ is not None:
            exc = exc.__cause__
        else:
            return exc


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl s_client")
@pytest.mark.parametrize("skip_announcement", [False, True])
async def test_admin_mtls_announces_its_ca_and_closes_with_close_notify(
    start_gateway: StartGateway, tmp_path: Path, skip_announcement: bool
) -> None:
    """The admin CAs are named in the CertificateRequest (Tyk's default; skip_client_ca_announcement
    turns it off), and a Connection: close answer ends with close_notify (s_client exits 0)."""
    admin_ca = trustme.CA(organization_name="trio-gw admin operators")
    ca_file, client_pem = tmp_path / "admin-ca.pem", tmp_path / "operator.pem"
    admin_ca.cert_pem.write_to_path(str(ca_file))
    admin_ca.issue_cert("operator@example.test").private_key_and_cert_chain_pem.write_to_path(str(client_pem))
    gw = await start_gateway(None, database="sqlite", admin_listen="127.0.0.1:0 ssl", admin_mtls="on",
                             admin_mtls_ca_certificates=str(ca_file),
                             skip_client_ca_announcement="on" if skip_announcement else "off")
    port = port_of(gw, ssl=True, kind="admin")
    result = await trio.run_process(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "localhost",
         "-cert", str(client_pem), "-ign_eof"],
        stdin=b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n", capture_stdout=True,
        capture_stderr=True, check=False)
    out, err = result.stdout.decode(), result.stderr.decode()
    assert "HTTP/1.1 200" in out and "unexpected eof" not in err and result.returncode == 0, err
    if skip_announcement:
        assert "No client certificate CA names sent" in out
    else:
        assert "Acceptable client certificate CA names" in out and "trio-gw admin operators" in out


async def test_admin_mtls_refuses_a_plain_admin_listener(start_gateway: StartGateway, ca_pem: Path) -> None:
    """A plain admin listener next to admin_mtls would serve the Admin API without a certificate."""
    from trio_gw.errors import ConfigError

    with pytest.raises(ConfigError) as refused:
        await start_gateway(None, database="sqlite", admin_listen="127.0.0.1:0 ssl, 127.0.0.1:0", admin_mtls="on",
                            admin_mtls_ca_certificates=str(ca_pem))
    (problem,) = refused.value.problems
    assert problem.path == "admin_listen" and "127.0.0.1:0 has no `ssl` flag" in problem.message
