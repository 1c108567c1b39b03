"""mtls-auth end to end: the listener asks for a certificate, the route's plugin decides."""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import socket
import shutil
import ssl
import time
import urllib.parse
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import trio
import trustme
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from trio_gw.testing import pki
from trio_gw.testing.http_client import Client, Reply

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


# --- issue 5 "Done when", end to end (trio_gw.testing.pki PKIs) ----------------------------------------
#
# Every test runs a real gateway on 127.0.0.1:0 and real TLS clients; the echo upstream reports the
# headers it received, so "the upstream sees / never sees" is observed, not inferred.

ROOT_ID = "2c8e2d3f-4e5b-4c6d-9e7f-8091a2b3c4d5"
OTHER_ROOT_ID = "3d9f3e40-5f6c-4d7e-af80-91a2b3c4d5e6"
SELF_A_ID = "4ea04f51-6071-4e8f-b091-a2b3c4d5e6f7"
SELF_B_ID = "5fb15062-7182-4f90-81a2-b3c4d5e6f708"


def write_pair(tmp_path: Path, name: str, leaf: pki.Issued) -> tuple[str, str]:
    cert, key = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
    cert.write_text(leaf.chain_pem())
    key.write_text(leaf.key_pem())
    return str(cert), str(key)


def tls_client(ca: trustme.CA, tmp_path: Path, leaf: pki.Issued | None = None, name: str = "client",
               *, maximum_version: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    if maximum_version is not None:
        ctx.maximum_version = maximum_version
    if leaf is not None:
        ctx.load_cert_chain(*write_pair(tmp_path, name, leaf))
    return ctx


async def get(port: int, ctx: ssl.SSLContext, path: str = "/who", *, host: str = "localhost",
              sni: str = "localhost", headers: list[tuple[str, str]] | None = None) -> Reply:
    client = await Client.connect(port, tls=ctx, server_hostname=sni)
    try:
        return await client.request("GET", path, host=host, headers=headers)
    finally:
        await client.aclose()


async def gateway(start_gateway: StartGateway, server_pair: tuple[Path, Path], declarative: dict[str, Any],
                  **settings: Any) -> Any:
    cert, key = server_pair
    return await start_gateway(declarative, ssl_cert=str(cert), ssl_cert_key=str(key), **settings)


def mtls_config(upstream: Upstream, root: pki.Issued, *, plugin: dict[str, Any] | None = None,
                consumers: list[dict[str, Any]] | None = None, extra_routes: Sequence[dict[str, Any]] = (),
                ) -> dict[str, Any]:
    return {
        "_format_version": "3.0",
        "ca_certificates": [{"id": ROOT_ID, "cert": root.cert_pem()}],
        "consumers": consumers if consumers is not None else [{"username": "alice.example"}],
        "services": [{"name": "echo", "url": upstream.url, "routes": [
            {"name": "m", "paths": ["/"], "plugins": [
                {"name": "mtls-auth", "config": {"ca_certificates": [ROOT_ID], **(plugin or {})}}]},
            *extra_routes]}],
    }


def ssl_error_of(exc: BaseException) -> ssl.SSLError | None:
    """The ``ssl.SSLError`` behind trio's ``BrokenResourceError`` (possibly inside an exception group)."""
    if isinstance(exc, ssl.SSLError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for sub in exc.exceptions:
            if (found := ssl_error_of(sub)) is not None:
                return found
    return ssl_error_of(exc.__cause__) if exc.__cause__ is not None else None


async def alert_of(port: int, ctx: ssl.SSLContext) -> str:
    """The alert a request ends with (TLS 1.3: a refused client certificate shows at the first read)."""
    try:
        reply = await get(port, ctx)
    except (trio.BrokenResourceError, BaseExceptionGroup) as exc:
        found = ssl_error_of(exc)
        assert found is not None, exc
        return str(found.reason)
    raise AssertionError(f"no alert: HTTP {reply.status} {reply.body!r}")


def denied(reply: Reply, status: int, reason: str) -> None:
    assert (reply.status, reply.json()["reason"]) == (status, reason), reply.body


async def test_done_when_configured_ca_gets_200_and_upstream_sees_consumer(
    start_gateway: StartGateway, upstream: Upstream, ca: trustme.CA, server_pair: tuple[Path, Path], tmp_path: Path
) -> None:
    """Items 1 and 2: a certificate from the configured CA → 200 + consumer; none → 401 no_cert."""
    root = pki.make_ca()
    gw = await gateway(start_gateway, server_pair, mtls_config(upstream, root))
    port = port_of(gw, ssl=True)
    alice = pki.issue(root, "alice.example", common_name="Alice")
    alice_id = next(c.id for c in gw.generation.snapshot.entities.consumers.values() if c.username == "alice.example")
    for version in (ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2):
        reply = await get(port, tls_client(ca, tmp_path, alice, maximum_version=version))
        assert reply.status == 200, reply.body
        seen = reply.json()["headers"]
        assert (seen["x-consumer-username"], seen["x-consumer-id"]) == ("alice.example", alice_id)
        assert seen["x-authenticated-groups"] == "Alice"  # authenticated_group_by CN
    before = len(upstream.server.requests)
    denied(await get(port, tls_client(ca, tmp_path)), 401, "no_cert")
    assert len(upstream.server.requests) == before  # refused before any upstream request


async def test_done_when_other_ca_is_refused_in_the_handshake(
    start_gateway: StartGateway, upstream: Upstream, ca: trustme.CA, server_pair: tuple[Path, Path], tmp_path: Path
) -> None:
    """Item 3: the listener trusts only the configured CA, so OpenSSL itself refuses another CA's
    certificate with the ``unknown ca`` alert (TLS 1.3: the client learns it at its first read)."""
    root, other = pki.make_ca(), pki.make_ca(common_name="another CA")
    gw = await gateway(start_gateway, server_pair, mtls_config(upstream, root))
    port = port_of(gw, ssl=True)
    stranger = pki.issue(other, "alice.example")
    for version in (ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2):
        assert await alert_of(port, tls_client(ca, tmp_path, stranger, maximum_version=version)) == \
            "TLSV1_ALERT_UNKNOWN_CA"


async def test_done_when_unknown_ca_reason_when_another_route_trusts_the_ca(
    start_gateway: StartGateway, upstream: Upstream, ca: trustme.CA, server_pair: tuple[Path, Path], tmp_path: Path
) -> None:
    """Item 3, second form: when the handshake accepts the CA (another route trusts it), a route
    whose plugin does not trust it answers 401 ``unknown_ca``."""
    root, other = pki.make_ca(), pki.make_ca(common_name="another CA")
    config = mtls_config(upstream, root, extra_routes=[{"name": "o", "paths": ["/other"], "plugins": [
        {"name": "mtls-auth", "config": {"ca_certificates": [OTHER_ROOT_ID], "skip_consumer_lookup": True}}]}])
    config["ca_certificates"].append({"id": OTHER_ROOT_ID, "cert": other.cert_pem()})
    gw = await gateway(start_gateway, server_pair, config)
    port = port_of(gw, ssl=True)
    ctx = tls_client(ca, tmp_path, pki.issue(other, "alice.example"))
    assert (await get(port, ctx, "/other")).status == 200
    denied(await get(port, ctx, "/who"), 401, "unknown_ca")


async def test_done_when_expired_certificate(
    start_gateway: StartGateway, upstream: Upstream, ca: trustme.CA, server_pair: tuple[Path, Path], tmp_path: Path
) -> None:
    """Item 4: an expired client certificate.

    The listener verifies what the client sends (``CERT_OPTIONAL`` still verifies a presented
    certificate), so OpenSSL refuses it in the handshake with the ``certificate expired`` alert;
    the request never reaches the plugin, whose 401 ``expired`` is covered by the unit tests and
    by the self-anchored case below (a credential-pinned leaf is checked by the plugin only when
    the handshake accepts it — it does not, for an expired one either).
    """
    root = pki.make_ca()
    gw = await gateway(start_gateway, server_pair, mtls_config(upstream, root))
    port = port_of(gw, ssl=True)
    expired = pki.build_certificate(issuer=root, dns_names=["alice.example"], not_before=pki.EXPIRED_AT - 86_400,
                                    not_after=pki.EXPIRED_AT)
    for version in (ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2):
        assert await alert_of(port, tls_client(ca, tmp_path, expired, maximum_version=version)) == \
            "SSLV3_ALERT_CERTIFICATE_EXPIRED"


def leaf_with_crl_point(root: pki.Issued, name: str, url: str) -> pki.Issued:
    key = pki.make_key()
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(root.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(root.key.public_key()), False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False)
        .add_extension(x509.CRLDistributionPoints([x509.DistributionPoint(
            [x509.UniformResourceIdentifier(url)], None, None, None)]), False)
        .sign(root.key, hashes.SHA256())
    )
    return pki.Issued(cert, key, (root,))


def crl_of(root: pki.Issued, *revoked: pki.Issued) -> bytes:
    now = datetime.now(UTC)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(root.cert.subject)
        .last_update(now - timedelta(minutes=1))
        .next_update(now + timedelta(days=1))
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(root.key.public_key()), False)
        .add_extension(x509.CRLNumber(1), False)
    )
    for leaf in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(leaf.cert.serial_number).revocation_date(now).build())
    return builder.sign(root.key, hashes.SHA256()).public_bytes(Encoding.DER)


async def serve_crl(nursery: trio.Nursery, body: list[bytes], fetched: trio.Event) -> str:
    """A one-file HTTP server on 127.0.0.1:0: what a CA's CRL distribution point is."""

    async def handle(stream: trio.SocketStream) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = await stream.receive_some(4096)
            if not chunk:
                return
            data += chunk
        head = b"HTTP/1.1 200 OK\r\nContent-Type: application/pkix-crl\r\nConnection: close\r\n"
        await stream.send_all(head + b"Content-Length: %d\r\n\r\n" % len(body[0]) + body[0])
        await stream.aclose()
        fetched.set()

    listeners = await nursery.start(functools.partial(trio.serve_tcp, handle, 0, host="127.0.0.1"))
    return f"http://127.0.0.1:{listeners[0].socket.getsockname()[1]}/root.crl"


async def test_done_when_revoked_by_crl_from_distribution_point(
    start_gateway: StartGateway, upstream: Upstream, ca: trustme.CA, server_pair: tuple[Path, Path],
    tmp_path: Path, nursery: trio.Nursery,
) -> None:
    """Item 5: a leaf revoked by its CA's CRL, fetched from the leaf's CRL distribution point.

    CRLs are attached by distribution point only (``CACertificate`` has no ``crls`` field yet).
    The plugin never blocks on IO: the first request misses the node's CrlCache, which marks the
    URL wanted; the node fetches it every ``CRL_FETCH_INTERVAL`` seconds.  With the default
    ``IGNORE_CA_ERROR`` that first request passes (status unknown ≠ revoked); once the CRL server
    has been asked for the CRL, requests get 401 ``revoked`` while an unrevoked sibling under the
    same CRL still gets 200 — so the refusal really comes from the CRL.
    """
    root = pki.make_ca()
    fetched = trio.Event()
    body = [b""]  # the leaves need the URL and the CRL names the leaves: fill it in after
    url = await serve_crl(nursery, body, fetched)
    revoked = leaf_with_crl_point(root, "alice.example", url)
    good = leaf_with_crl_point(root, "bob.example", url)
    body[0] = crl_of(root, revoked)
    consumers = [{"username": "alice.example"}, {"username": "bob.example"}]
    gw = await gateway(start_gateway, server_pair, mtls_config(upstream, root, consumers=consumers))
    port = port_of(gw, ssl=True)
    bad_ctx, good_ctx = tls_client(ca, tmp_path, revoked, "revoked"), tls_client(ca, tmp_path, good, "good")
    first = await get(port, bad_ctx)
    assert first.status == 200 and not fetched.is_set(), "first request: CRL not fetched yet (IGNORE_CA_ERROR)"
    with trio.fail_after(15):
        await fetched.wait()
        while (reply := await get(port, bad_ctx)).status == 200:
            await trio.sleep(0.05)  # the fetch finished; the cache is filled right after
    denied(reply, 401, "revoked")
    assert (await get(port, good_ctx)).json()["headers"]["x-consumer-username"] == "bob.example"




def raw_request(port: int, ctx: ssl.SSLContext, path: str, session: ssl.SSLSession | None = None
                ) -> tuple[int, bytes, bool, ssl.SSLSession | None]:
    """One request over a stdlib TLS socket (trio.SSLStream cannot resume a session): status,
    body, whether the session was resumed, and the session to resume next time."""
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as sock,
        ctx.wrap_socket(sock, server_hostname="localhost", session=session) as tls,
    ):
        tls.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := tls.recv(65536):
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        return int(head.split()[1]), body, bool(tls.session_reused), tls.session


def allowlist_config(upstream: Upstream, a: pki.Issued, b: pki.Issued, on_a: list[str]) -> dict[str, Any]:
    return {
        "_format_version": "3.0",
        "certificates": [{"id": SELF_A_ID, "cert": a.cert_pem(), "key": a.key_pem()},
                         {"id": SELF_B_ID, "cert": b.cert_pem(), "key": b.key_pem()}],
        "services": [{"name": "echo", "url": upstream.url, "routes": [
            {"name": "a", "paths": ["/a"], "plugins": [{"name": "mtls-allowlist", "config": {"certificates": on_a}}]},
            # keeps A among the listener's anchors, so the listener context survives the reload
            {"name": "b", "paths": ["/b"], "plugins": [
                {"name": "mtls-allowlist", "config": {"certificates": [SELF_A_ID]}}]},
        ]}],
    }


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2])
async def test_done_when_allowlist_removal_refuses_a_resumed_session(
    start_gateway: StartGateway, upstream: Upstream, ca: trustme.CA, server_pair: tuple[Path, Path],
    tmp_path: Path, version: ssl.TLSVersion,
) -> None:
    """Item 6: a self-signed leaf on a static allowlist gets 200; removed from the list (declarative
    reload), the very next request is refused with 403 ``not_allowed`` *on a resumed TLS session*.

    Another route still lists the leaf, so the listener's trust anchors, hence its context and
    ticket keys, are unchanged: the session really resumes (``session_reused``) and only the
    per-request re-check of the leaf (the resumed session still carries it) refuses it.
    """
    a, b = pki.self_signed_leaf("a.example"), pki.self_signed_leaf("b.example")
    gw = await gateway(start_gateway, server_pair, allowlist_config(upstream, a, b, [SELF_A_ID, SELF_B_ID]))
    port = port_of(gw, ssl=True)
    ctx = tls_client(ca, tmp_path, a, "a", maximum_version=version)
    status, _, reused, session = await trio.to_thread.run_sync(raw_request, port, ctx, "/a/x")
    assert (status, reused) == (200, False)
    status, _, reused, session = await trio.to_thread.run_sync(raw_request, port, ctx, "/a/x", session)
    assert (status, reused) == (200, True), "the gateway resumes sessions"
    (tmp_path / "gw0" / "kong.yaml").write_text(yaml.safe_dump(allowlist_config(upstream, a, b, [SELF_B_ID])))
    await gw.reload()
    status, body, reused, _ = await trio.to_thread.run_sync(raw_request, port, ctx, "/a/x", session)
    assert reused is True
    assert status == 403 and b'"not_allowed"' in body
    status, _, _, _ = await trio.to_thread.run_sync(raw_request, port, ctx, "/b/x", session)
    assert status == 200  # the same session on the route that still lists it


async def test_done_when_allowlist_emptied_replaces_the_listener_context(
    start_gateway: StartGateway, upstream: Upstream, ca: trustme.CA, server_pair: tuple[Path, Path], tmp_path: Path,
) -> None:
    """Item 6, other form: when the leaf leaves every list, the listener context is replaced (new
    ticket keys): the old session is not resumed and the full handshake refuses the leaf."""
    a, b = pki.self_signed_leaf("a.example"), pki.self_signed_leaf("b.example")
    gw = await gateway(start_gateway, server_pair, allowlist_config(upstream, a, b, [SELF_A_ID, SELF_B_ID]))
    port = port_of(gw, ssl=True)
    ctx = tls_client(ca, tmp_path, a, "a")
    status, _, _, session = await trio.to_thread.run_sync(raw_request, port, ctx, "/a/x")
    assert status == 200
    config = allowlist_config(upstream, a, b, [SELF_B_ID])
    config["services"][0]["routes"][1]["plugins"][0]["config"]["certificates"] = [SELF_B_ID]
    (tmp_path / "gw0" / "kong.yaml").write_text(yaml.safe_dump(config))
    await gw.reload()
    with pytest.raises(ssl.SSLError, match="UNKNOWN_CA|CERTIFICATE_UNKNOWN|BAD_CERTIFICATE"):
        await trio.to_thread.run_sync(raw_request, port, ctx, "/a/x", session)


async def test_done_when_rotation_second_certificate_works_first_revoked_does_not(
    start_gateway: StartGateway, upstream: Upstream, ca: trustme.CA, server_pair: tuple[Path, Path], tmp_path: Path,
) -> None:
    """Item 7: two certificates for one consumer; the first credential revoked, the second active
    in its validity window, a third scheduled for later."""
    root = pki.make_ca()
    old, new, next_ = (pki.issue(root, f"device-{i}.example") for i in range(3))
    now = int(time.time())

    def fp(leaf: pki.Issued) -> str:
        return hashlib.sha256(leaf.cert_der()).hexdigest()

    creds: list[dict[str, Any]] = [
        {"id": "0a000000-0000-4000-8000-000000000001", "fingerprint": fp(old), "status": "revoked"},
        {"id": "0a000000-0000-4000-8000-000000000002", "fingerprint": fp(new), "status": "active",
         "valid_from": now - 60, "valid_until": now + 3600},
        {"id": "0a000000-0000-4000-8000-000000000003", "fingerprint": fp(next_), "status": "scheduled",
         "valid_from": now + 3600},
    ]
    consumers = [{"username": "alice", "mtls_auth_credentials": creds}]
    gw = await gateway(start_gateway, server_pair, mtls_config(upstream, root, consumers=consumers))
    port = port_of(gw, ssl=True)
    reply = await get(port, tls_client(ca, tmp_path, new, "new"))
    assert reply.status == 200
    seen = reply.json()["headers"]
    assert (seen["x-consumer-username"], seen["x-credential-identifier"]) == ("alice", creds[1]["id"])
    denied(await get(port, tls_client(ca, tmp_path, old, "old")), 401, "revoked")
    denied(await get(port, tls_client(ca, tmp_path, next_, "next")), 401, "not_yet_valid")


async def test_done_when_bound_key_needs_its_certificate(
    start_gateway: StartGateway, upstream: Upstream, ca: trustme.CA, server_pair: tuple[Path, Path], tmp_path: Path,
) -> None:
    """Item 8: key-auth ``bound_certificates``: the wrong certificate (or none) → 401
    ``binding_mismatch``; the bound one → 200 with the key's consumer."""
    root = pki.make_ca()
    alice, bob = pki.issue(root, "alice.example"), pki.issue(root, "bob.example")
    consumers = [{"username": "alice.example", "keyauth_credentials": [
        {"key": "alice-key", "bound_certificates": [hashlib.sha256(alice.cert_der()).hexdigest()]}]}]
    key_route = {"name": "k", "paths": ["/key"], "plugins": [{"name": "key-auth", "config": {}}]}
    gw = await gateway(start_gateway, server_pair,
                       mtls_config(upstream, root, consumers=consumers, extra_routes=[key_route]))
    port = port_of(gw, ssl=True)
    key = [("apikey", "alice-key")]
    denied(await get(port, tls_client(ca, tmp_path, bob, "bob"), "/key", headers=key), 401, "binding_mismatch")
    denied(await get(port, tls_client(ca, tmp_path), "/key", headers=key), 401, "binding_mismatch")
    reply = await get(port, tls_client(ca, tmp_path, alice, "alice"), "/key", headers=key)
    assert reply.status == 200
    assert reply.json()["headers"]["x-consumer-username"] == "alice.example"


HEADER_FORMATS: dict[str, tuple[str, str, Callable[[pki.Issued], str]]] = {
    # format: (route, header name, value builder)
    "base64_encoded": ("/b64", "x-ssl-client-cert", lambda leaf: base64.b64encode(leaf.cert_der()).decode()),
    "url_encoded": ("/url", "x-amzn-mtls-clientcert", lambda leaf: urllib.parse.quote(leaf.cert_pem(), safe="")),
    "rfc9440": ("/rfc", "client-cert", lambda leaf: f":{base64.b64encode(leaf.cert_der()).decode()}:"),
    "xfcc": ("/xfcc", "x-forwarded-client-cert", lambda leaf: (
        f'Hash={hashlib.sha256(leaf.cert_der()).hexdigest()};Cert="{urllib.parse.quote(leaf.cert_pem(), safe="")}"')),
}


def header_config(upstream: Upstream, root: pki.Issued) -> dict[str, Any]:
    routes = [
        {"name": fmt.replace("_", "-"), "paths": [route], "plugins": [{"name": "header-cert-auth", "config": {
            "ca_certificates": [ROOT_ID], "certificate_header_name": name, "certificate_header_format": fmt}}]}
        for fmt, (route, name, _) in HEADER_FORMATS.items()
    ]
    return {
        "_format_version": "3.0",
        "ca_certificates": [{"id": ROOT_ID, "cert": root.cert_pem()}],
        "consumers": [{"username": "alice.example"}],
        "services": [{"name": "echo", "url": upstream.url, "routes": routes}],
    }


@pytest.mark.parametrize("fmt", list(HEADER_FORMATS))
async def test_done_when_header_certificate_from_trusted_ip_only(
    start_gateway: StartGateway, upstream: Upstream, fmt: str,
) -> None:
    """Item 9: a certificate header from ``trusted_ips`` authenticates (and is not forwarded);
    from any other address it is ignored (401 ``no_cert``)."""
    root = pki.make_ca()
    alice = pki.issue(root, "alice.example")
    route, name, build = HEADER_FORMATS[fmt]
    trusted = await start_gateway(header_config(upstream, root), trusted_ips="127.0.0.1/32")
    untrusted = await start_gateway(header_config(upstream, root), trusted_ips="10.0.0.0/8")
    headers = [(name, build(alice))]
    client = await Client.connect(port_of(trusted))
    reply = await client.request("GET", route + "/who", headers=headers)
    assert reply.status == 200, reply.body
    seen = reply.json()["headers"]
    assert seen["x-consumer-username"] == "alice.example"
    assert name not in seen and "client-cert-chain" not in seen
    client = await Client.connect(port_of(untrusted))
    denied(await client.request("GET", route + "/who", headers=headers), 401, "no_cert")


async def test_done_when_sni_disagrees_with_host(
    start_gateway: StartGateway, upstream: Upstream, ca: trustme.CA, server_pair: tuple[Path, Path], tmp_path: Path,
) -> None:
    """Item 10: a route needing a client certificate answers 421 ``sni_host_mismatch`` when the
    Host header names another host than the TLS server name."""
    root = pki.make_ca()
    gw = await gateway(start_gateway, server_pair, mtls_config(upstream, root))
    port = port_of(gw, ssl=True)
    ctx = tls_client(ca, tmp_path, pki.issue(root, "alice.example"))
    denied(await get(port, ctx, host="default.test", sni="localhost"), 421, "sni_host_mismatch")
    assert (await get(port, ctx, host=f"localhost:{port}", sni="localhost")).status == 200


async def test_allowlist_route_refuses_sni_host_mismatch(
    start_gateway: StartGateway, upstream: Upstream, ca: trustme.CA, server_pair: tuple[Path, Path], tmp_path: Path,
) -> None:
    """Item 10 on an ``mtls-allowlist`` route (regression: only mtls-auth checked SNI vs Host)."""
    a, b = pki.self_signed_leaf("a.example"), pki.self_signed_leaf("b.example")
    gw = await gateway(start_gateway, server_pair, allowlist_config(upstream, a, b, [SELF_A_ID]))
    port = port_of(gw, ssl=True)
    ctx = tls_client(ca, tmp_path, a, "a")
    denied(await get(port, ctx, "/a/x", host="default.test", sni="localhost"), 421, "sni_host_mismatch")
    assert (await get(port, ctx, "/a/x", host="LOCALHOST", sni="localhost")).status == 200


SPOOFED = [("X-Consumer-Username", "mallory"), ("X-Consumer-ID", "00000000-0000-4000-8000-000000000000"),
           ("X-Credential-Identifier", "forged"), ("X-Anonymous-Consumer", "false"),
           ("X-Authenticated-Groups", "admins"), ("Client-Cert", ":AAAA:"), ("X-Forwarded-Client-Cert", "Hash=00")]


async def test_done_when_clients_cannot_inject_identity_headers(
    start_gateway: StartGateway, upstream: Upstream, ca: trustme.CA, server_pair: tuple[Path, Path], tmp_path: Path,
) -> None:
    """Item 11: identity headers sent by a client never reach the upstream — replaced on an
    authenticated route, removed on a route without any auth plugin (HTTP and HTTPS)."""
    root = pki.make_ca()
    open_route = {"name": "open", "paths": ["/open"]}
    gw = await gateway(start_gateway, server_pair, mtls_config(upstream, root, extra_routes=[open_route]))
    port = port_of(gw, ssl=True)
    ctx = tls_client(ca, tmp_path, pki.issue(root, "alice.example"))
    seen = (await get(port, ctx, headers=SPOOFED)).json()["headers"]
    assert seen["x-consumer-username"] == "alice.example"
    assert seen["x-consumer-id"] != SPOOFED[1][1]
    for name in ("x-credential-identifier", "x-anonymous-consumer", "client-cert", "x-forwarded-client-cert"):
        assert name not in seen
    assert seen.get("x-authenticated-groups") != "admins"
    lowered = {k.lower() for k, _ in SPOOFED}
    seen = (await get(port, ctx, "/open", headers=SPOOFED)).json()["headers"]
    assert lowered.isdisjoint(seen)
    client = await Client.connect(port_of(gw))
    seen = (await client.request("GET", "/open", headers=SPOOFED)).json()["headers"]
    assert lowered.isdisjoint(seen)


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2])
async def test_resumed_session_keeps_the_intermediate_of_the_client_chain(
    start_gateway: StartGateway, upstream: Upstream, ca: trustme.CA, server_pair: tuple[Path, Path],
    tmp_path: Path, version: ssl.TLSVersion,
) -> None:
    """Regression: a session ticket keeps the leaf but not the intermediates the client sent, so a
    route trusting only the root answered 200 on the full handshake and 401 ``unknown_ca`` on the
    resumed one.  The listener now gives back the intermediates it verified (tls/resumed_chain.py)."""
    root = pki.make_ca()
    leaf = pki.issue(pki.make_ca(issuer=root, common_name="issuing CA"), "alice.example")
    gw = await gateway(start_gateway, server_pair, mtls_config(upstream, root))
    port = port_of(gw, ssl=True)
    ctx = tls_client(ca, tmp_path, leaf, "a", maximum_version=version)  # sends leaf + intermediate
    status, _, reused, session = await trio.to_thread.run_sync(raw_request, port, ctx, "/x")
    assert (status, reused) == (200, False)
    status, body, reused, _ = await trio.to_thread.run_sync(raw_request, port, ctx, "/x", session)
    assert reused is True
    assert status == 200, body
    assert json.loads(body)["headers"]["x-consumer-username"] == "alice.example"


async def test_revoked_by_crl_attached_to_the_ca_certificate(
    start_gateway: StartGateway, upstream: Upstream, ca: trustme.CA, server_pair: tuple[Path, Path], tmp_path: Path
) -> None:
    """A CRL uploaded with the CA certificate applies from the very first request (nothing to fetch)."""
    root = pki.make_ca()
    alice = pki.issue(root, "alice.example", common_name="alice.example")
    mallory = pki.issue(root, "mallory.example", common_name="alice.example")
    declarative = mtls_config(upstream, root, plugin={"revocation_check_mode": "STRICT"})
    declarative["ca_certificates"][0]["crls"] = [pki.crl_pem(root, [mallory])]
    gw = await gateway(start_gateway, server_pair, declarative)
    port = port_of(gw, ssl=True)
    denied(await get(port, tls_client(ca, tmp_path, mallory, "mallory")), 401, "revoked")
    assert (await get(port, tls_client(ca, tmp_path, alice, "alice"))).status == 200


async def test_key_auth_hide_credentials_removes_the_key_from_header_and_query(
    start_gateway: StartGateway, upstream: Upstream
) -> None:
    consumers = [{"username": "alice.example", "keyauth_credentials": [{"key": "alice-key"}]}]
    config = {"_format_version": "3.0", "consumers": consumers, "services": [{
        "name": "echo", "url": upstream.url, "routes": [{"name": "k", "paths": ["/"], "plugins": [
            {"name": "key-auth", "config": {"hide_credentials": True}}]}]}]}
    gw = await start_gateway(config)
    client = await Client.connect(port_of(gw))
    seen = (await client.request("GET", "/anything?apikey=alice-key&page=2")).json()
    assert seen["query"] == "page=2"
    seen = (await client.request("GET", "/anything", headers=[("apikey", "alice-key")])).json()
    assert "apikey" not in seen["headers"]
    assert seen["headers"]["x-consumer-username"] == "alice.example"


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed")
@pytest.mark.parametrize("send_ca_dn", [False, True])
async def test_send_ca_dn_announces_the_plugin_cas(
    start_gateway: StartGateway, upstream: Upstream, server_pair: tuple[Path, Path], ca_pem: Path, send_ca_dn: bool
) -> None:
    root = pki.make_ca(common_name="Announced Client Root")
    gw = await gateway(start_gateway, server_pair, mtls_config(upstream, root, plugin={"send_ca_dn": send_ca_dn}))
    result = await trio.run_process(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{port_of(gw, ssl=True)}", "-servername", "localhost",
         "-CAfile", str(ca_pem)],
        stdin=b"", capture_stdout=True, capture_stderr=True, check=False,
    )
    out = result.stdout.decode()
    if send_ca_dn:
        assert "Acceptable client certificate CA names" in out and "CN = Announced Client Root" in out, out
    else:
        assert "No client certificate CA names sent" in out, out
