"""TLS sessions resume on every worker and every node: openssl s_client -sess_out / -sess_in against real nodes.

Each reconnect presents the ticket of the previous connection and saves the
new one; ``Reused`` means the process that accepted it decrypted a ticket that
another process (worker or node) may have issued.  The workers' listeners have
a socket each (``reuseport``), so the kernel spreads the connections over both
by the client's port, and ``/status`` proves both took some.  The rotation
test waits for the ring's next key (``ssl_session_ticket_rotation: 5s``) and
presents a ticket of the previous one: it resumes (and the client is given a
ticket under the new key).
"""

from __future__ import annotations

import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
import trustme

from trio_gw.testing.postgres import PostgresServer

from .cluster_tools import status, wait_for
from .processes import Node, nodes  # noqa: F401  (fixture)

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command line")

RECONNECTS = 100
REQUEST = b"GET /tickets HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    d = tmp_path_factory.mktemp("tickets-pki")
    leaf = trustme.CA().issue_cert("localhost", "127.0.0.1")
    leaf.cert_chain_pems[0].write_to_path(str(d / "cert.pem"))
    leaf.private_key_pem.write_to_path(str(d / "key.pem"))
    return {"ssl_cert": [str(d / "cert.pem")], "ssl_cert_key": [str(d / "key.pem")]}


def s_client(port: int, session: Path, *, present: bool = True, save: bool = True) -> str:
    """One TLS 1.3 connection and one request; ``New`` or ``Reused``."""
    args = ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "localhost", "-tls1_3", "-ign_eof"]
    if present and session.exists():
        args += ["-sess_in", str(session)]
    if save:
        args += ["-sess_out", str(session)]
    out = subprocess.run(args, input=REQUEST, capture_output=True, timeout=30).stdout.decode(errors="replace")
    verdicts = [line.split(",")[0] for line in out.splitlines() if line.startswith(("New,", "Reused,"))]
    assert verdicts, out
    return verdicts[0]


def ticket_name(session: Path) -> str:
    text = subprocess.run(["openssl", "sess_id", "-in", str(session), "-noout", "-text"],
                          capture_output=True, text=True, timeout=10, check=True).stdout
    return text.split("TLS session ticket:\n", 1)[1].splitlines()[0].split(" - ", 1)[1][:48]


def https_port(node: Node) -> int:
    import json

    ready = json.loads((node.prefix / "trio-gw.ready.json").read_text())
    return int(next(li["port"] for li in ready["listeners"]["proxy"] if li["ssl"]))


def accepted(node: Node) -> list[int]:
    return [int(w.get("connections_accepted", 0)) for w in status(node)["workers"]["list"]]


@pytest.mark.parametrize("database", ["sqlite", "off"])
def test_100_reconnects_all_resume_across_two_workers(
    tmp_path: Path, nodes: list[Node], certificate: dict[str, Any], database: str
) -> None:
    settings: dict[str, Any] = {"database": database, "workers": 2, "proxy_listen": "127.0.0.1:0 ssl reuseport",
                                **certificate}
    if database == "off":
        (tmp_path / "kong.yaml").write_text('_format_version: "3.0"\n')
        settings["declarative_config"] = str(tmp_path / "kong.yaml")
    node = Node(tmp_path / "n", settings)
    nodes.append(node)
    wait_for(lambda: status(node)["workers"]["ready"] == 2, "two workers")
    tickets = status(node)["session_tickets"]
    assert tickets["source"] == ("datastore" if database == "sqlite" else "supervisor") and tickets["shared"]
    port, session = https_port(node), tmp_path / "session.pem"
    before = accepted(node)
    assert s_client(port, session, present=False) == "New"
    verdicts = [s_client(port, session) for _ in range(RECONNECTS)]
    assert verdicts == ["Reused"] * RECONNECTS
    took = wait_for(lambda: [a - b for a, b in zip(accepted(node), before)]
                    if sum(accepted(node)) - sum(before) == RECONNECTS + 1 else None, "worker reports")
    assert all(n > 0 for n in took), took  # both workers resumed sessions


def test_100_reconnects_all_resume_across_two_nodes(
    tmp_path: Path, nodes: list[Node], certificate: dict[str, Any], private_postgres: PostgresServer
) -> None:
    pg = {"database": "postgres", "pg_host": private_postgres.host, "pg_port": private_postgres.port,
          "pg_user": private_postgres.user, "pg_database": private_postgres.database,
          "pg_schema": f"tickets_{uuid.uuid4().hex[:10]}", "private_key_encryption_secret": "cluster secret"}
    settings = {**pg, "proxy_listen": "127.0.0.1:0 ssl", **certificate}
    a = Node(tmp_path / "a", settings)
    nodes.append(a)
    b = Node(tmp_path / "b", settings)
    nodes.append(b)
    assert status(a)["session_tickets"]["keys"] == status(b)["session_tickets"]["keys"]  # one ring, sealed in PG
    session = tmp_path / "session.pem"
    assert s_client(https_port(a), session, present=False) == "New"
    verdicts = [s_client(https_port((b, a)[i % 2]), session) for i in range(RECONNECTS)]
    assert verdicts == ["Reused"] * RECONNECTS


def test_after_a_rotation_a_ticket_of_the_previous_key_still_resumes(
    tmp_path: Path, nodes: list[Node], certificate: dict[str, Any]
) -> None:
    node = Node(tmp_path / "n", {"database": "sqlite", "workers": 2, "proxy_listen": "127.0.0.1:0 ssl reuseport",
                                 "ssl_session_ticket_rotation": "5s", "ssl_session_timeout": "60s", **certificate})
    nodes.append(node)
    wait_for(lambda: status(node)["workers"]["ready"] == 2, "two workers")
    port, old = https_port(node), tmp_path / "old.pem"
    assert s_client(port, old, present=False) == "New"
    first = status(node)["session_tickets"]["encrypting"]
    wait_for(lambda: status(node)["session_tickets"]["encrypting"] != first, "the next key", timeout=30)
    renewed = tmp_path / "renewed.pem"
    renewed.write_bytes(old.read_bytes())
    for _ in range(10):  # on either worker, the old ticket resumes
        renewed.write_bytes(old.read_bytes())
        assert s_client(port, renewed) == "Reused"
    assert ticket_name(renewed) != ticket_name(old)  # and the client now holds a ticket of the new key
    assert s_client(port, renewed, save=False) == "Reused"


def test_a_changed_client_certificate_policy_is_not_bypassed_by_a_shared_ticket(
    tmp_path: Path, nodes: list[Node], certificate: dict[str, Any]
) -> None:
    """Shared keys are scoped by the listener's policy: once a route asks for client certificates, a ticket
    issued before (under the old policy) makes a full handshake on every worker; new tickets resume."""
    from .cluster_tools import call

    node = Node(tmp_path / "n", {"database": "sqlite", "workers": 2, "proxy_listen": "127.0.0.1:0 ssl reuseport",
                                 **certificate})
    nodes.append(node)
    wait_for(lambda: status(node)["workers"]["ready"] == 2, "two workers")
    port, before = https_port(node), tmp_path / "before.pem"
    assert s_client(port, before, present=False) == "New"
    assert s_client(port, before) == "Reused"
    root = trustme.CA()
    code, ca = call(node.admin_port, "POST", "/ca_certificates", {"cert": root.cert_pem.bytes().decode()})
    assert code == 201, ca
    code, body = call(node.admin_port, "POST", "/services", {"name": "s", "url": "http://127.0.0.1:9"})
    assert code == 201, body
    code, body = call(node.admin_port, "POST", "/services/s/routes", {"name": "r", "paths": ["/mtls"]})
    assert code == 201, body
    code, body = call(node.admin_port, "POST", "/routes/r/plugins",
                      {"name": "mtls-auth", "config": {"ca_certificates": [ca["id"]]}})
    assert code == 201, body
    version = status(node)["database"]["version"]
    wait_for(lambda: all(w.get("store_version") == version for w in status(node)["workers"]["list"]), "the change")
    for _ in range(6):  # whichever worker accepts: the old ticket's key is not this policy's
        assert s_client(port, before, save=False) == "New"
    after = tmp_path / "after.pem"
    assert s_client(port, after, present=False) == "New"
    assert [s_client(port, after) for _ in range(6)] == ["Reused"] * 6


ROOT_ID = "5e000000-0000-4000-8000-000000000001"


def test_a_session_resumed_on_another_worker_keeps_its_client_chain(
    tmp_path: Path, nodes: list[Node], certificate: dict[str, Any]
) -> None:
    """A client certificate issued by an intermediate, a route trusting only the root: a resumed session
    carries the leaf but not the chain, so the worker that resumes it must know the intermediate — which the
    worker that made the full handshake verified and shared. Every resumption is accepted, on either worker."""
    import socket
    import ssl

    import yaml

    from trio_gw.testing import pki

    from .cluster_tools import upstream

    root = pki.make_ca(common_name="clients root")
    intermediate = pki.make_ca(issuer=root, common_name="clients intermediate")
    alice = pki.issue(intermediate, "alice.example")
    (tmp_path / "alice.pem").write_text(alice.chain_pem())  # leaf + intermediate, as a client sends them
    (tmp_path / "alice.key").write_text(alice.key_pem())
    with upstream() as url:
        kong = tmp_path / "kong.yaml"
        kong.write_text(yaml.safe_dump({
            "_format_version": "3.0", "ca_certificates": [{"id": ROOT_ID, "cert": root.cert_pem()}],
            "consumers": [{"username": "alice.example"}],
            "services": [{"name": "echo", "url": url, "routes": [{"name": "secure", "paths": ["/"], "plugins": [
                {"name": "mtls-auth", "config": {"ca_certificates": [ROOT_ID]}}]}]}]}))
        node = Node(tmp_path / "n", {"database": "off", "declarative_config": str(kong), "workers": 2,
                                     "proxy_listen": "127.0.0.1:0 ssl reuseport", **certificate})
        nodes.append(node)
        wait_for(lambda: status(node)["workers"]["ready"] == 2, "two workers")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE  # the point here is the client's certificate
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2  # a TLS 1.2 session is reusable at once by the stdlib client
        ctx.load_cert_chain(str(tmp_path / "alice.pem"), str(tmp_path / "alice.key"))
        port, session, answers = https_port(node), None, []
        before = accepted(node)
        for i in range(20):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
                    ctx.wrap_socket(raw, server_hostname="localhost", session=session) as tls:
                tls.sendall(f"GET /x/{i} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode())
                data = b""
                while chunk := tls.recv(65536):
                    data += chunk
                answers.append((data.split(b" ", 2)[1], tls.session_reused))
                session = tls.session
        assert answers[0] == (b"200", False)
        assert answers[1:] == [(b"200", True)] * 19, answers
        took = wait_for(lambda: [a - b for a, b in zip(accepted(node), before)]
                        if sum(accepted(node)) - sum(before) == 20 else None, "worker reports")
        assert all(n > 0 for n in took), took  # resumed on both workers
