"""Rejected handshakes are logged with their reason code, once per reason and client network per interval.

A real gateway (in process, listeners on 127.0.0.1:0) with a server truststore (``ssl_verify_client: on``),
strict SNI and TLS 1.2 at most; real TLS clients fail their handshakes for six reasons — no certificate, a
certificate from an unknown CA, plain HTTP, an unknown server name, TLS 1.3 only, a client that does not
trust the gateway — three times each.  Each reason shows once in the log (the other two counted as held
back), every failure is counted by reason; once the interval has passed (the node's limiter is given a
clock the test moves) the next failure of a reason is logged again with the held-back count.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import trio
import trustme

from trio_gw.runtime.gateway import Gateway
from trio_gw.runtime.handshake_log import HandshakeRejectionLog
from trio_gw.testing.http_client import Client

from .conftest import StartGateway, Upstream, port_of

OTHER_CA = trustme.CA()
NAME = "api.example.test"


def _client_context(ca: trustme.CA, issuer: trustme.CA | None = None, **options: Any) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    if issuer is not None:
        issuer.issue_cert("client@example.test").configure_cert(context)
    for name, value in options.items():
        setattr(context, name, value)
    return context


async def _tls_client(port: int, context: ssl.SSLContext, server_name: str = NAME) -> None:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    tls = trio.SSLStream(stream, context, server_hostname=server_name)
    try:
        await tls.do_handshake()
        await tls.receive_some(10)  # TLS 1.3: the server's verdict on our certificate arrives after the handshake
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    finally:
        await trio.aclose_forcefully(tls)


async def _plain_client(port: int) -> None:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    try:
        await stream.send_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        while await stream.receive_some(1024):
            pass
    except trio.BrokenResourceError:
        pass
    finally:
        await trio.aclose_forcefully(stream)


#: Each reason code and a client that fails its handshake for it.
CLIENTS: dict[str, Callable[[int, trustme.CA, Path], Awaitable[None]]] = {
    "no_cert": lambda port, ca, other: _tls_client(port, _client_context(ca)),
    "unknown_ca": lambda port, ca, other: _tls_client(port, _client_context(ca, OTHER_CA)),
    "plain_http": lambda port, ca, other: _plain_client(port),
    "unrecognized_name": lambda port, ca, other: _tls_client(port, _client_context(ca, ca), "unknown.example.test"),
    "protocol_version": lambda port, ca, other: _tls_client(port, _client_context(ca, ca,
                                                                           minimum_version=ssl.TLSVersion.TLSv1_3)),
    "client_rejected_server_certificate": lambda port, ca, other: _curl_distrusting(port, other),
}


async def _curl_distrusting(port: int, bundle: Path) -> None:
    """curl trusting another CA: it refuses the gateway's certificate with an alert (trio's client sends none)."""
    result = await trio.run_process(
        ["curl", "-sS", "--max-time", "10", "--cacert", str(bundle), "--resolve", f"{NAME}:{port}:127.0.0.1",
         f"https://{NAME}:{port}/"], check=False, capture_stdout=True, capture_stderr=True)
    assert result.returncode == 60, result.stderr  # CURLE_PEER_FAILED_VERIFICATION


async def _gateway(start_gateway: StartGateway, upstream: Upstream, ca: trustme.CA, ca_pem: Path) -> Gateway:
    leaf = ca.issue_cert(NAME)
    return await start_gateway(
        {"_format_version": "3.0",
         "certificates": [{"cert": leaf.cert_chain_pems[0].bytes().decode(),
                           "key": leaf.private_key_pem.bytes().decode(), "snis": [{"name": NAME}]}],
         "services": [{"name": "echo", "url": upstream.url, "routes": [{"name": "all", "paths": ["/"]}]}]},
        ssl_verify_client="on", ssl_client_certificate=[str(ca_pem)], ssl_sni_strict=True, ssl_max_version="1.2",
        rejection_log_interval="1h")


async def _failures(gw: Gateway, reason: str) -> float:
    client = await Client.connect(port_of(gw, kind="status"))
    text = (await client.request("GET", "/metrics")).body.decode()
    for line in text.splitlines():
        if line.startswith(f'trio_gw_tls_handshake_failures_total{{listener="proxy",reason="{reason}"}}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def _settled(gw: Gateway, reason: str, count: int) -> None:
    """The server side finishes after the client: a bounded wait for the count, no timing assertion."""
    with trio.move_on_after(10):
        while await _failures(gw, reason) < count:
            await trio.sleep(0.02)


async def test_each_reason_is_logged_once_per_interval_by_a_real_gateway(
    start_gateway: StartGateway, upstream: Upstream, ca: trustme.CA, ca_pem: Path, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger="trio_gw.tls"):
        gw = await _gateway(start_gateway, upstream, ca, ca_pem)
        port = port_of(gw, ssl=True)
        other = tmp_path / "other-ca.pem"
        OTHER_CA.cert_pem.write_to_path(str(other))
        now = [0.0]
        gw.rejections.clock = lambda: now[0]  # the node's limiter on a clock the test moves
        client = await Client.connect(port, tls=_client_context(ca, ca), server_hostname=NAME)
        assert (await client.request("GET", "/ok", host=NAME)).status == 200  # a good client is let through
        for _ in range(3):
            for reason, connect in CLIENTS.items():
                await connect(port, ca, other)
        for reason in CLIENTS:
            await _settled(gw, reason, 3)
        first = [r for r in caplog.records if r.name == "trio_gw.tls"]
        now[0] = 3600.0  # the interval has passed: the next failure of a reason is logged again
        await CLIENTS["unknown_ca"](port, ca, other)
        await _settled(gw, "unknown_ca", 4)
    lines = [r.getMessage() for r in first]
    reasons = sorted(line.split("reason=")[1].split()[0] for line in lines)
    assert reasons == sorted(CLIENTS), lines  # each reason once, whatever the order
    assert all(r.levelname == "NOTICE" for r in first)
    assert all(line.startswith("TLS handshake rejected: ") and " client=127.0.0.1 network=127.0.0.0/24 "
               "listener=proxy" in line for line in lines), lines
    assert any("reason=unrecognized_name" in line and "sni=unknown.example.test" in line for line in lines), lines
    assert any("reason=unknown_ca" in line and f"sni={NAME}" in line for line in lines), lines
    client = await Client.connect(port_of(gw, kind="status"))
    text = (await client.request("GET", "/metrics")).body.decode()
    for reason in CLIENTS:
        assert f'trio_gw_log_lines_suppressed_total{{reason="{reason}"}} 2.0' in text, text
    again = [r.getMessage() for r in caplog.records if r.name == "trio_gw.tls"][len(first):]
    assert again == [f"TLS handshake rejected: reason=unknown_ca client=127.0.0.1 network=127.0.0.0/24 "
                     f"listener=proxy sni={NAME} (2 more from this network in the last 3600s)"], again
    assert await _failures(gw, "unknown_ca") == 4


def test_the_held_back_count_is_told_when_the_interval_ends(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    rejections = HandshakeRejectionLog(60.0, clock=lambda: now[0])
    with caplog.at_level(logging.INFO, logger="trio_gw.tls"):
        assert rejections.record("proxy", "unknown_ca", "198.51.100.4", sni="api.example")
        assert not rejections.record("proxy", "unknown_ca", "198.51.100.5", sni="api.example")
        assert rejections.record("admin", "unknown_ca", "198.51.100.6")  # another listener: its own key
        assert rejections.flush() == 0
        now[0] = 60.0
        assert rejections.flush() == 1
    last = caplog.records[-1].getMessage()
    assert last == ("TLS handshake rejections continued: reason=unknown_ca client=198.51.100.5 "
                    "network=198.51.100.0/24 listener=proxy (1 more from this network in the last 60s)")
