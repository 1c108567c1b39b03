"""An alert the client can read for every TLS error, and clean answers to bodies and versions h11 would take.

A TLS client built from tlslite-ng (a TLS implementation in Python, so records
can be made wrong on purpose) completes a handshake with the gateway, session
tickets on, then sends one malformed record; it must then *decrypt* the alert
the gateway answers with.  Through ``trio.SSLStream`` these probes failed with
``bad_record_mac`` on TLS 1.3: the session tickets were held back until the
first application write, so the alert left as record 2 without records 0 and 1
before it.  Each passing probe sits beside a well-formed request that gets 200.
"""

from __future__ import annotations

import logging
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio
from tlslite.api import HandshakeSettings, TLSConnection
from tlslite.constants import AlertDescription, ContentType
from tlslite.errors import TLSRemoteAlert
from tlslite.messages import Message

from .conftest import StartGateway, Upstream, port_of

pytestmark = pytest.mark.filterwarnings("ignore:The asyncore module:DeprecationWarning")  # tlslite's import

TLS13, TLS12 = (3, 4), (3, 3)
Probe = Callable[[TLSConnection, socket.socket], None]


def record(content_type: int, data: bytes) -> Probe:
    """One record of ``content_type`` with ``data``, encrypted under the connection's keys."""
    def send(conn: TLSConnection, _sock: socket.socket) -> None:
        for _ in conn._recordLayer.sendRecord(Message(content_type, bytearray(data))):
            pass
    return send


def raw(data: bytes) -> Probe:
    """Bytes written to the socket as they are (a plaintext record)."""
    return lambda _conn, sock: sock.sendall(data)


def request(_conn: TLSConnection, _sock: socket.socket) -> None:
    _conn.write(b"GET /api/ok HTTP/1.1\r\nHost: localhost\r\n\r\n")


#: probe → the alert OpenSSL answers, per version
PROBES: dict[str, tuple[Probe, dict[tuple[int, int], str]]] = {
    "ccs-after-finished": (raw(b"\x14\x03\x03\x00\x01\x01"),
                           {TLS13: "unexpected_message", TLS12: "internal_error"}),
    "invalid-keyupdate": (record(ContentType.handshake, b"\x18\x00\x00\x01\x02"),
                          {TLS13: "illegal_parameter", TLS12: "unexpected_message"}),
    "empty-alert": (record(ContentType.alert, b""), {TLS13: "unexpected_message", TLS12: "unexpected_message"}),
    "zero-content-type": (record(0, b"\x00" * 10), {TLS13: "unexpected_message", TLS12: "unexpected_message"}),
    "record-overflow": (record(ContentType.application_data, b"x" * (2**14 + 1)),
                        {TLS13: "record_overflow", TLS12: "record_overflow"}),
}


def exchange(port: int, version: tuple[int, int], probe: Probe) -> Any:
    """Handshake (tickets on), send the probe, read: the alert's name, or the answer's first line."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    conn = TLSConnection(sock)
    settings = HandshakeSettings()
    settings.minVersion = settings.maxVersion = version
    conn.handshakeClientCert(settings=settings, serverName="localhost")
    try:
        probe(conn, sock)
        try:
            return bytes(conn.read()).split(b"\r\n", 1)[0].decode()
        except TLSRemoteAlert as alert:
            return AlertDescription.toStr(alert.description)
    finally:
        sock.close()


@pytest.fixture
async def tls_port(start_gateway: StartGateway, upstream: Upstream, server_pair: tuple[Path, Path]) -> int:
    cert, key = server_pair
    gw = await start_gateway({"_format_version": "3.0", "services": [
        {"name": "echo", "url": upstream.url, "routes": [{"name": "api", "paths": ["/api"]}]}]},
        ssl_cert=str(cert), ssl_cert_key=str(key), ssl_min_version="1.2")
    return port_of(gw, ssl=True)


@pytest.mark.parametrize("version", [TLS13, TLS12], ids=["tls13", "tls12"])
@pytest.mark.parametrize("name", list(PROBES))
async def test_every_malformed_record_gets_an_alert_the_client_can_decrypt(
    tls_port: int, name: str, version: tuple[int, int]
) -> None:
    probe, alerts = PROBES[name]
    assert await trio.to_thread.run_sync(exchange, tls_port, version, probe) == alerts[version]


@pytest.mark.parametrize("version", [TLS13, TLS12], ids=["tls13", "tls12"])
async def test_the_same_client_with_a_well_formed_request_is_answered(tls_port: int, version: tuple[int, int]) -> None:
    assert await trio.to_thread.run_sync(exchange, tls_port, version, request) == "HTTP/1.1 200 "


async def test_a_non_ascii_server_name_gets_an_alert_and_one_log_line(
    tls_port: int, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.WARNING, logger="trio_gw")

    def s_client() -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{tls_port}", "-servername",
                               "bücher.example"], stdin=subprocess.DEVNULL, capture_output=True, timeout=30)

    results = [await trio.to_thread.run_sync(s_client) for _ in range(3)]
    assert all(b"alert internal error" in r.stderr for r in results)  # an alert, not a reset
    lines = [r.getMessage() for r in caplog.records if "not ASCII" in r.getMessage()]
    assert len(lines) == 1 and "refused 1 TLS handshake(s)" in lines[0]  # once per interval, not per handshake
    assert "Traceback" not in capfd.readouterr().err


async def test_a_chunk_size_of_17_hex_digits_is_400_at_once(
    start_gateway: StartGateway, upstream: Upstream,
) -> None:
    gw = await start_gateway({"_format_version": "3.0", "services": [
        {"name": "echo", "url": upstream.url, "routes": [{"name": "api", "paths": ["/api"]}]}]})
    head = b"POST /api/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
    for body, status in ((b"f" * 17 + b"\r\nabc", b"400"), (b"3\r\nabc\r\n0\r\n\r\n", b"200")):
        stream = await trio.open_tcp_stream("127.0.0.1", port_of(gw))
        await stream.send_all(head + body)
        with trio.fail_after(5):  # answered at once, not at client_body_timeout (60 s)
            answer = await stream.receive_some(65536)
        assert answer.split(b" ")[1] == status, answer
        if status == b"400":
            assert b"bad_chunk_size" in answer
        await stream.aclose()


async def test_http_2_0_on_an_http_1_1_connection_is_505(start_gateway: StartGateway, upstream: Upstream) -> None:
    gw = await start_gateway({"_format_version": "3.0", "services": [
        {"name": "echo", "url": upstream.url, "routes": [{"name": "api", "paths": ["/"]}]}]})
    for version, status in ((b"HTTP/2.0", b"505"), (b"HTTP/1.1", b"200")):
        stream = await trio.open_tcp_stream("127.0.0.1", port_of(gw))
        await stream.send_all(b"GET / " + version + b"\r\nHost: a\r\n\r\n")
        answer = await stream.receive_some(65536)
        assert answer.split(b" ")[1] == status, answer
        await stream.aclose()
