"""Shared session-ticket keys on real handshakes: openssl s_client against two separate SSLContexts.

Each "worker" is a stdlib ``ssl`` server in a thread on 127.0.0.1:0 with its own
``SSLContext`` (as two worker processes or two nodes have), both given the same
ring through ``trio_gw.net.ticket_keys``.  A session saved from one
(``-sess_out``) is presented to the other (``-sess_in``): ``Reused`` proves the
ticket was decrypted there.  The ticket's first 16 bytes are the key name,
read back with ``openssl sess_id`` to check which key encrypted it.
"""

from __future__ import annotations

import logging
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from trio_gw.net import ticket_keys as shim
from trio_gw.net.ticket_keys import TicketKeys, install_ticket_keys, installed_keys, ticket_keys_supported
from trio_gw.tls.ticket_keys import RotationPolicy, TicketKeyRing, generate_key, maintain, ring_from_nginx_files

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command line")

RECONNECTS = 100
T0 = 1_800_000_000


class Worker:
    """A TLS server on 127.0.0.1:0 in a thread: handshake, one line, close; records ``session_reused``."""

    def __init__(self, ctx: ssl.SSLContext) -> None:
        self.ctx = ctx
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port: int = self.sock.getsockname()[1]
        self.reused: list[bool | None] = []  # SSLSocket.session_reused: None before a handshake
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(5)
            try:
                with self.ctx.wrap_socket(conn, server_side=True) as tls:
                    self.reused.append(tls.session_reused)
                    tls.sendall(b"ok\n")
            except (OSError, ssl.SSLError) as exc:
                self.errors.append(repr(exc))

    def close(self) -> None:
        self._stop.set()
        self.sock.close()
        self._thread.join(timeout=5)


@pytest.fixture(scope="module")
def leaf() -> trustme.LeafCert:
    return trustme.CA().issue_cert("localhost")


def server_context(leaf: trustme.LeafCert, keys: TicketKeys | None, scope: bytes = b"") -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    leaf.configure_cert(ctx)
    if keys is not None:
        assert install_ticket_keys(ctx, keys, scope=scope)
    return ctx


@pytest.fixture
def workers() -> Iterator[list[Worker]]:
    """The test's workers (see :func:`start`), closed afterwards."""
    started: list[Worker] = []
    yield started
    for w in started:
        w.close()


def start(workers: list[Worker], ctx: ssl.SSLContext) -> Worker:
    w = Worker(ctx)
    workers.append(w)
    return w


def s_client(port: int, session: Path, *, save: bool = True, present: bool = True, version: str = "-tls1_3") -> str:
    args = ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "localhost", "-ign_eof", version]
    if present and session.exists():
        args += ["-sess_in", str(session)]
    if save:
        args += ["-sess_out", str(session)]
    out = subprocess.run(args, input=b"", capture_output=True, timeout=20).stdout.decode(errors="replace")
    verdicts = [line.split(",")[0] for line in out.splitlines() if line.startswith(("New,", "Reused,"))]
    assert verdicts, out
    return verdicts[0]


def ticket_key_name(session: Path) -> bytes:
    text = subprocess.run(["openssl", "sess_id", "-in", str(session), "-noout", "-text"],
                          capture_output=True, text=True, timeout=10, check=True).stdout  # fmt: skip
    first = text.split("TLS session ticket:\n", 1)[1].splitlines()[0]
    return bytes.fromhex(first.split(" - ", 1)[1][:48].replace("-", " "))


def fixed_ring(now: float = T0) -> TicketKeyRing:
    ring = maintain(None, now, RotationPolicy())
    assert ring is not None
    return ring


@pytest.fixture(autouse=True)
def _needs_the_shim() -> None:
    if not ticket_keys_supported():
        pytest.fail("the OpenSSL layout proof failed on the CPython the project pins: shared tickets would be off")


# -- resumption across contexts ----------------------------------------------------------


@pytest.mark.parametrize("version", ["-tls1_3", "-tls1_2"])
def test_every_reconnect_resumes_on_the_other_worker(
    leaf: trustme.LeafCert, workers: list[Worker], tmp_path: Path, version: str
) -> None:
    keys = TicketKeys(fixed_ring(), clock=lambda: T0)
    a, b = start(workers, server_context(leaf, keys)), start(workers, server_context(leaf, keys))
    session = tmp_path / "session.pem"
    assert s_client(a.port, session, present=False, version=version) == "New"
    verdicts = [s_client((b, a)[i % 2].port, session, version=version) for i in range(RECONNECTS)]
    assert verdicts == ["Reused"] * RECONNECTS
    assert a.reused.count(True) + b.reused.count(True) == RECONNECTS
    assert b.reused.count(True) == RECONNECTS // 2 and not a.errors and not b.errors


def test_without_shared_keys_a_session_does_not_cross_contexts(
    leaf: trustme.LeafCert, workers: list[Worker], tmp_path: Path
) -> None:
    a, b = start(workers, server_context(leaf, None)), start(workers, server_context(leaf, None))
    session = tmp_path / "session.pem"
    s_client(a.port, session, present=False)
    assert s_client(a.port, session, save=False) == "Reused"  # the control: same context resumes
    assert s_client(b.port, session, save=False) == "New"


# -- rotation ----------------------------------------------------------------------------


def test_after_a_rotation_an_old_ticket_resumes_once_renewed_and_after_the_drop_it_does_not(
    leaf: trustme.LeafCert, workers: list[Worker], tmp_path: Path
) -> None:
    clock = [float(T0)]
    policy = RotationPolicy(interval=3600, lifetime=7200, lead=60)
    ring = fixed_ring()
    keys = TicketKeys(ring, clock=lambda: clock[0])
    a, b = start(workers, server_context(leaf, keys)), start(workers, server_context(leaf, keys))
    old = tmp_path / "old.pem"
    s_client(a.port, old, present=False)
    old_name = ring.keys[0].name
    assert ticket_key_name(old) == old_name

    clock[0] = T0 + 3600 - 60
    rotated = maintain(ring, clock[0], policy)
    assert rotated is not None and len(rotated.keys) == 2
    keys.swap(rotated)
    clock[0] = T0 + 3600  # the new key encrypts now, the old one only decrypts
    new_name = rotated.encrypting(clock[0]).name
    assert new_name != old_name
    renewed = tmp_path / "renewed.pem"
    renewed.write_bytes(old.read_bytes())
    assert s_client(b.port, renewed) == "Reused"  # the old ticket still resumes...
    assert ticket_key_name(renewed) == new_name  # ...and the client got one under the new key

    clock[0] = T0 + 3600 + 7200  # the old key's last ticket has expired: it leaves the ring
    dropped = maintain(rotated, clock[0], policy)
    assert dropped is not None and dropped.find(old_name) is None
    keys.swap(dropped)
    assert s_client(a.port, old, save=False) == "New"  # a full handshake, not an error
    assert s_client(b.port, renewed, save=False) == "Reused"
    assert not a.errors and not b.errors


def test_a_ticket_of_an_unknown_key_makes_a_full_handshake(
    leaf: trustme.LeafCert, workers: list[Worker], tmp_path: Path
) -> None:
    a = start(workers, server_context(leaf, TicketKeys(fixed_ring())))
    stranger = start(workers, server_context(leaf, TicketKeys(fixed_ring())))  # another cluster's ring
    session = tmp_path / "session.pem"
    s_client(stranger.port, session, present=False)
    assert s_client(a.port, session, save=False) == "New" and not a.errors


# -- scope: a changed listener policy does not resume ------------------------------------


def test_contexts_of_one_policy_share_tickets_and_another_policy_does_not(
    leaf: trustme.LeafCert, workers: list[Worker], tmp_path: Path
) -> None:
    keys = TicketKeys(fixed_ring())
    a = start(workers, server_context(leaf, keys, scope=b"policy-1"))
    b = start(workers, server_context(leaf, keys, scope=b"policy-1"))
    c = start(workers, server_context(leaf, keys, scope=b"policy-2"))  # e.g. a changed client-cert allowlist
    session = tmp_path / "session.pem"
    s_client(a.port, session, present=False)
    assert s_client(b.port, session, save=False) == "Reused"
    assert s_client(c.port, session, save=False) == "New"


# -- nginx's files -----------------------------------------------------------------------


def test_keys_from_nginx_files_are_shared_and_the_first_file_encrypts(
    leaf: trustme.LeafCert, workers: list[Worker], tmp_path: Path
) -> None:
    files = []
    for i in range(2):
        path = tmp_path / f"ticket{i}.key"
        subprocess.run(["openssl", "rand", "-out", str(path), "80"], check=True, timeout=10)
        files.append((f"ssl_session_ticket_key[{i}]", path.read_bytes()))
    keys = TicketKeys(ring_from_nginx_files(files))
    a, b = start(workers, server_context(leaf, keys)), start(workers, server_context(leaf, keys))
    session = tmp_path / "session.pem"
    s_client(a.port, session, present=False)
    assert ticket_key_name(session) == files[0][1][:16]
    assert s_client(b.port, session, save=False) == "Reused"


# -- the guard ---------------------------------------------------------------------------


def test_an_exception_in_the_callback_never_reaches_openssl(
    leaf: trustme.LeafCert, workers: list[Worker], tmp_path: Path
) -> None:
    def broken_clock() -> float:
        raise RuntimeError("clock failure")

    a = start(workers, server_context(leaf, TicketKeys(fixed_ring(), clock=broken_clock)))
    session = tmp_path / "session.pem"
    for _ in range(3):
        assert s_client(a.port, session) == "New"  # no ticket, no resumption, and every handshake completes
    assert a.errors == [] and a.reused == [False, False, False]


def test_when_the_layout_proof_fails_nothing_changes_and_it_is_said_once(
    leaf: trustme.LeafCert, workers: list[Worker], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(shim, "proven_context_pointer", lambda ctx: None)
    monkeypatch.setattr(shim, "_warned", False)
    keys = TicketKeys(fixed_ring())
    with caplog.at_level(logging.WARNING, logger="trio_gw.tls"):
        contexts = []
        for _ in range(2):
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            leaf.configure_cert(ctx)
            assert install_ticket_keys(ctx, keys) is False
            assert installed_keys(ctx) is None
            contexts.append(ctx)
    assert [r.getMessage() for r in caplog.records].count(caplog.records[0].getMessage()) == 1
    assert "shared TLS session-ticket keys are unavailable" in caplog.records[0].getMessage()
    a = start(workers, contexts[0])
    session = tmp_path / "session.pem"
    s_client(a.port, session, present=False)
    assert s_client(a.port, session, save=False) == "Reused"  # OpenSSL's own keys still serve this context


def test_the_callback_lives_as_long_as_its_context(leaf: trustme.LeafCert) -> None:
    keys = TicketKeys(fixed_ring())
    ctx = server_context(leaf, keys)
    assert installed_keys(ctx) is keys
    install_ticket_keys(ctx, TicketKeys(TicketKeyRing((generate_key(T0),))))
    assert installed_keys(ctx) is not keys  # installing again replaces the holder
