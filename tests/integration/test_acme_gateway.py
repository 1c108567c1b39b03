"""ACME end to end: a real pebble validates challenges against the gateway's own listeners.

pebble (Debian's package, ``make system-tools``) runs on free 127.0.0.1
ports; its resolver is a stub answering 127.0.0.1 for every name, and its
``httpPort``/``tlsPort`` are the gateway's plain and TLS proxy listeners, so
http-01 is answered by the proxy before routing and tls-alpn-01 by the SNI
callback.  The gateway's ``lua_ssl_trusted_certificate`` is pebble's TLS CA
(the ACME server's TLS is verified).  Cases: issue (both challenges) and serve
at the next handshake (``openssl s_client``), renew in the background when the
renewal window opens, a failing challenge backs off and says why, and a second
node on the same datastore serves the certificate while one renewer works for
the cluster.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trio
from cryptography import x509

from trio_gw.model.inventory import Role
from trio_gw.runtime.gateway import Gateway
from trio_gw.runtime.settings import load_settings
from trio_gw.testing.dns_stub import DnsStub
from trio_gw.testing.http_client import Client, Reply
from trio_gw.testing.pebble import Pebble, pebble_available, start_pebble
from trio_gw.testing.ports import reserved_ports

if not pebble_available():
    if os.environ.get("CI") == "true":
        pytest.fail("pebble is required under CI=true (tools/install-system-tools.sh pebble)", pytrace=False)
    pytestmark = pytest.mark.skip(reason="pebble is not installed (make system-tools)")
elif shutil.which("openssl") is None:
    pytestmark = pytest.mark.skip(reason="needs the openssl CLI (make system-tools)")

HOST = "api.acme.test"
SECRET = "correct horse battery staple"


@dataclass
class Rig:
    pebble: Pebble
    http_port: int
    tls_port: int
    workdir: Path


@pytest.fixture
def dns() -> Iterator[DnsStub]:
    with DnsStub() as stub:
        yield stub


def rig_for(tmp_path: Path, dns: DnsStub, *, http_port: int | None = None) -> Iterator[Rig]:
    """pebble validating on the ports the gateway will listen on (``http_port``: another one)."""
    workdir = tmp_path / "pebble"
    workdir.mkdir()
    with reserved_ports(2) as (gateway_http, gateway_tls), start_pebble(
            workdir, http_port=http_port or gateway_http, tls_port=gateway_tls, dns_server=dns.server) as pebble:
        yield Rig(pebble, gateway_http, gateway_tls, tmp_path)


@pytest.fixture
def rig(tmp_path: Path, dns: DnsStub) -> Iterator[Rig]:
    yield from rig_for(tmp_path, dns)


async def start_node(nursery: trio.Nursery, rig: Rig, name: str, *, proxy: bool = True, **extra: Any) -> Gateway:
    prefix = rig.workdir / name
    prefix.mkdir(exist_ok=True)
    listen = (f"127.0.0.1:{rig.http_port} reuseport, 127.0.0.1:{rig.tls_port} ssl reuseport" if proxy               else "127.0.0.1:0, 127.0.0.1:0 ssl")
    settings = {
        "prefix": str(prefix), "proxy_listen": listen, "admin_listen": "127.0.0.1:0", "status_listen": "off",
        "proxy_access_log": "off", "database": "sqlite", "lua_ssl_trusted_certificate": str(rig.pebble.ca_file),
        "private_key_encryption_secret": SECRET, "db_update_frequency": "200ms", **extra,
    }
    gateway: Gateway = await nursery.start(Gateway(load_settings(None, environ={}, overrides=settings)).run)
    return gateway


async def admin(gw: Gateway, method: str, path: str, body: Any = None, *, form: str | None = None) -> Reply:
    port = next(li.port for li in gw.listeners["admin"])
    client = await Client.connect(port)
    try:
        if form is not None:
            return await client.request(method, path, body=form.encode(),
                                        headers=[("content-type", "application/x-www-form-urlencoded")])
        data = json.dumps(body).encode() if body is not None else None
        headers = [("content-type", "application/json")] if data is not None else []
        return await client.request(method, path, body=data, headers=headers)
    finally:
        await client.aclose()


async def enable_acme(gw: Gateway, rig: Rig, **config: Any) -> None:
    plugin = {"name": "acme", "config": {"account_email": "ops@acme.test", "api_uri": rig.pebble.directory,
                                         "tos_accepted": True, "cert_type": "ecc", "domains": ["*.acme.test"],
                                         **config}}
    reply = await admin(gw, "POST", "/plugins", plugin)
    assert reply.status == 201, reply.body


async def served(port: int, name: str, rig: Rig) -> x509.Certificate:
    """The certificate a real client gets for ``name``, verified against pebble's root of this run."""
    root = rig.workdir / "pebble-root.pem"
    root.write_text(rig.pebble.root_pem())
    done = await trio.run_process(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", name, "-CAfile", str(root),
         "-verify_hostname", name, "-verify_return_error"],
        stdin=b"", capture_stdout=True, capture_stderr=True, check=False)
    out = done.stdout.decode(errors="replace")
    assert done.returncode == 0 and "Verify return code: 0 (ok)" in out, out + done.stderr.decode()
    pem = out[out.index("-----BEGIN CERTIFICATE-----"):out.index("-----END CERTIFICATE-----") + 25]
    return x509.load_pem_x509_certificate(pem.encode())


async def test_http01_issue_serve_and_list(nursery: trio.Nursery, rig: Rig) -> None:
    gw = await start_node(nursery, rig, "a")
    assert (await admin(gw, "GET", "/acme/certificates")).status == 404  # no acme plugin: Kong's 404
    await enable_acme(gw, rig, domains=["*.acme.test", "localhost"])
    reply = await admin(gw, "POST", "/acme", form=f"host={HOST}")  # curl -d host=... as in Kong's docs
    assert (reply.status, reply.json()) == (201, {"message": f"certificate for host {HOST} is created"}), reply.body
    leaf = await served(rig.tls_port, HOST, rig)  # the very next handshake
    assert leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName) == [HOST]
    (row,) = (await admin(gw, "GET", "/acme/certificates")).json()["data"]
    assert (row["host"], row["valid"], row["serial_number"]) == (HOST, True, format(leaf.serial_number, "x"))
    assert (await admin(gw, "GET", f"/acme/certificates/{HOST}")).json()["data"]["certificate_id"] == (
        row["certificate_id"])
    roles = {f.role for f in gw.generation.inventory if f.entity_id == row["certificate_id"]}
    assert roles == {Role.ACME}  # the inventory (expiry gauges, events) sees it as ACME-managed
    stored = await admin(gw, "GET", f"/certificates/{row['certificate_id']}")
    assert "key" not in stored.json() and [t for t in stored.json()["tags"]] == ["acme"]
    with sqlite3.connect(rig.workdir / "a" / "trio-gw.db") as db:
        (data,) = db.execute("SELECT data FROM certificates WHERE id = ?", (row["certificate_id"],)).fetchone()
        secrets = db.execute("SELECT value FROM meta WHERE key LIKE 'secret:acme_account:%'").fetchall()
    assert json.loads(data)["key"].startswith("tgw-sealed:1:")  # the key is sealed at rest
    assert len(secrets) == 1 and secrets[0][0].startswith("tgw-sealed:1:")  # so is the account key
    metrics = gw.metrics.exposition().decode()
    assert 'trio_gw_acme_certificates_total{reason="no_certificate",result="issued"} 1.0' in metrics
    sanity = await admin(gw, "POST", "/acme", {"host": "nope.example", "test_http_challenge_flow": True})
    assert sanity.status == 400 and "host is not included in plugin config.domains" in sanity.json()["message"]
    gw.lifecycle.acme.sanity_port = rig.http_port  # the CA's port 80 stands for this listener here
    sanity = await admin(gw, "POST", "/acme", form="host=localhost&test_http_challenge_flow=true")
    assert (sanity.status, sanity.json()) == (200, {"message": "sanity test for host localhost passed"})
    sanity = await admin(gw, "POST", "/acme", {"host": "nowhere.acme.test", "test_http_challenge_flow": True})
    assert sanity.status == 400  # the name does not resolve outside pebble's stub: Kong's message says why
    assert "problem found running sanity check for nowhere.acme.test" in sanity.json()["message"]


async def test_tls_alpn01_issue_and_serve(nursery: trio.Nursery, rig: Rig) -> None:
    gw = await start_node(nursery, rig, "a")
    await enable_acme(gw, rig, challenge="tls-alpn-01")
    assert gw.generation.server_tls.alpn_probe  # the listener contexts carry the ClientHello probe
    reply = await admin(gw, "POST", "/acme", {"host": HOST})
    assert reply.status == 201, reply.body
    leaf = await served(rig.tls_port, HOST, rig)
    assert leaf.issuer.rfc4514_string().startswith("CN=Pebble Intermediate")


async def test_renewal_in_the_background(nursery: trio.Nursery, rig: Rig) -> None:
    gw = await start_node(nursery, rig, "a")
    await enable_acme(gw, rig, renew_threshold_days=30)
    assert (await admin(gw, "POST", "/acme", {"host": HOST})).status == 201
    first = await served(rig.tls_port, HOST, rig)
    service = gw.lifecycle.acme
    assert all(o.issued is None for o in await service.run_round())  # not due yet
    not_after = first.not_valid_after_utc.timestamp()
    service.clock = lambda: not_after - 29 * 86400  # inside renew_threshold_days
    (outcome,) = await service.run_round()
    assert outcome.issued is not None and outcome.plan.reason == "renewal_due"
    renewed = await served(rig.tls_port, HOST, rig)
    assert renewed.serial_number != first.serial_number
    rows = (await admin(gw, "GET", "/acme/certificates")).json()["data"]
    assert len(rows) == 1 and rows[0]["serial_number"] == format(renewed.serial_number, "x")  # replaced, same id


@pytest.fixture
def failing_rig(tmp_path: Path, dns: DnsStub) -> Iterator[Rig]:
    """pebble validating http-01 on a port nothing listens on."""
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
    try:
        yield from rig_for(tmp_path, dns, http_port=closed.getsockname()[1])
    finally:
        closed.close()


async def test_a_failing_challenge_backs_off_and_says_why(nursery: trio.Nursery, failing_rig: Rig) -> None:
    gw = await start_node(nursery, failing_rig, "a")
    await enable_acme(gw, failing_rig, fail_backoff_minutes=5)
    reply = await admin(gw, "POST", "/acme", {"host": HOST})
    assert reply.status == 500 and reply.json()["reason"] == "challenge_failed", reply.body
    assert reply.json()["message"].startswith("failed to update certificate: http-01 for api.acme.test: ")
    assert "connection refused" in reply.json()["message"].lower(), reply.body
    again = await admin(gw, "POST", "/acme", {"host": HOST})
    assert again.status == 429 and again.json()["reason"] == "backing_off"
    assert again.json()["last_failure"]["reason"] == "challenge_failed"
    assert again.json()["retry_at"] >= int(time.time()) + 4 * 60
    assert gw.lifecycle.challenges.pending() == (0, 0)  # every published answer was withdrawn
    assert await gw.lifecycle.acme.run_round() == []  # nothing managed yet; the backoff holds
    metrics = gw.metrics.exposition().decode()
    assert 'trio_gw_acme_certificates_total{reason="challenge_failed",result="failed"} 1.0' in metrics


async def test_a_second_node_serves_it_and_one_node_renews(nursery: trio.Nursery, rig: Rig) -> None:
    a = await start_node(nursery, rig, "a")
    (rig.workdir / "b").mkdir()
    (rig.workdir / "b" / "trio-gw.db").symlink_to(rig.workdir / "a" / "trio-gw.db")  # one datastore
    b = await start_node(nursery, rig, "b", proxy=False)
    await enable_acme(a, rig)
    assert (await admin(a, "POST", "/acme", {"host": HOST})).status == 201
    b_tls = next(li.port for li in b.listeners["proxy"] if li.tls is not None)
    with trio.fail_after(15):
        while b.generation.snapshot.acme is None or not b.generation.snapshot.sni_index.exact:
            await trio.sleep(0.05)  # B reloads what A wrote (db_update_frequency)
    leaf_a = await served(rig.tls_port, HOST, rig)
    leaf_b = await served(b_tls, HOST, rig)
    assert leaf_a.serial_number == leaf_b.serial_number
    store = b.store
    assert store is not None
    assert await trio.to_thread.run_sync(store.try_lock, "acme")  # B is renewing for the cluster...
    try:
        a.lifecycle.acme.clock = lambda: leaf_a.not_valid_after_utc.timestamp()
        assert await a.lifecycle.acme.run_round() == []  # ...so A's round does nothing
    finally:
        await trio.to_thread.run_sync(store.unlock, "acme")
    b.lifecycle.acme.clock = lambda: leaf_a.not_valid_after_utc.timestamp() - 86400
    (outcome,) = await b.lifecycle.acme.run_round()  # B renews with the account A registered
    assert outcome.issued is not None
    a.lifecycle.acme.clock = time.time
    with trio.fail_after(15):
        while (await served(rig.tls_port, HOST, rig)).serial_number == leaf_a.serial_number:
            await trio.sleep(0.1)  # A serves B's renewal after its own reload


async def test_a_handshake_for_a_listed_name_starts_an_issuance(nursery: trio.Nursery, rig: Rig) -> None:
    """Kong's "trigger asynchronous creation from proxy requests": the handshake is not held up."""
    gw = await start_node(nursery, rig, "a")
    await enable_acme(gw, rig)
    name = "ondemand.acme.test"
    done = await trio.run_process(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{rig.tls_port}", "-servername", name],
        stdin=b"", capture_stdout=True, capture_stderr=True, check=False)
    assert done.returncode == 0  # served at once, with the default certificate (not trusted here)
    with trio.fail_after(60):
        while not gw.generation.snapshot.sni_index.exact:
            await trio.sleep(0.1)  # issued in the background, written, installed
    leaf = await served(rig.tls_port, name, rig)
    assert leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName) == [name]


async def test_the_cas_tls_is_verified_against_lua_ssl_trusted_certificate(nursery: trio.Nursery, rig: Rig) -> None:
    gw = await start_node(nursery, rig, "a", lua_ssl_trusted_certificate="system")  # pebble's CA not trusted
    await enable_acme(gw, rig)
    reply = await admin(gw, "POST", "/acme", {"host": HOST})
    assert reply.status == 500 and reply.json()["reason"] == "ca_untrusted", reply.body
    assert "lua_ssl_trusted_certificate" in reply.json()["message"]
