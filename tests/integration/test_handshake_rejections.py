"""Rejected handshakes are logged with their reason code, once per reason and client network per interval.

Real TLS handshakes on 127.0.0.1:0 against a test listener that does what the gateway's listener will do on
its failure path: classify the failure (``tls.handshake_errors``) and make the one call
``HandshakeRejectionLog.record``.  Clients: no certificate, a certificate from an unknown CA, plain HTTP —
each three times, so each reason shows once with the other two counted.
"""

from __future__ import annotations

import logging
import ssl

import pytest
import trio
import trustme
from prometheus_client import CollectorRegistry

from trio_gw.runtime.handshake_log import HandshakeRejectionLog
from trio_gw.runtime.kong_metrics import KongMetrics
from trio_gw.tls.handshake_errors import classify_handshake_failure

CA, OTHER_CA = trustme.CA(), trustme.CA()


def _server_context() -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    CA.issue_cert("localhost").configure_cert(context)
    CA.configure_trust(context)
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def _client_context(issuer: trustme.CA | None) -> ssl.SSLContext:
    context = ssl.create_default_context()
    CA.configure_trust(context)
    if issuer is not None:
        issuer.issue_cert("client@example").configure_cert(context)
    return context


async def _listener(rejections: HandshakeRejectionLog, *, task_status: trio.TaskStatus[int]) -> None:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    context = _server_context()

    async def handle(stream: trio.SocketStream) -> None:
        tls = trio.SSLStream(stream, context, server_side=True)
        try:
            await tls.do_handshake()
            await tls.send_all(b"ok")
        except trio.BrokenResourceError as exc:
            cause = exc.__cause__
            verify = cause.verify_message if isinstance(cause, ssl.SSLCertVerificationError) else None
            reason = cause.reason if isinstance(cause, ssl.SSLError) else None
            client_ip = stream.socket.getpeername()[0]
            rejections.record("proxy", classify_handshake_failure(reason, verify), client_ip, sni=None)
        finally:
            await trio.aclose_forcefully(tls)

    async with trio.open_nursery() as nursery:
        task_status.started(listeners[0].socket.getsockname()[1])
        await trio.serve_listeners(handle, listeners, handler_nursery=nursery)


async def _tls_client(port: int, issuer: trustme.CA | None) -> None:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    tls = trio.SSLStream(stream, _client_context(issuer), server_hostname="localhost")
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


async def test_each_reason_is_logged_once_per_interval_and_the_rest_counted(caplog: pytest.LogCaptureFixture) -> None:
    registry = CollectorRegistry()
    rejections = HandshakeRejectionLog(3600.0, metrics=KongMetrics(registry, node_id="n"))
    with caplog.at_level(logging.INFO, logger="trio_gw.tls"):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(_listener, rejections)
            for _ in range(3):
                await _tls_client(port, None)
                await _tls_client(port, OTHER_CA)
                await _plain_client(port)
            for _ in range(400):  # the server side finishes after the client: bounded wait, no timing assertion
                if registry.get_sample_value("trio_gw_tls_handshake_failures_total",
                                             {"listener": "proxy", "reason": "plain_http"}) == 3:
                    break
                await trio.sleep(0.01)
            nursery.cancel_scope.cancel()
    lines = [r.getMessage() for r in caplog.records if r.name == "trio_gw.tls"]
    reasons = sorted(line.split("reason=")[1].split()[0] for line in lines)
    assert reasons == ["no_cert", "plain_http", "unknown_ca"], lines
    assert all("client=127.0.0.1 network=127.0.0.0/24 listener=proxy" in line for line in lines)
    assert all(r.levelname == "NOTICE" for r in caplog.records if r.name == "trio_gw.tls")
    for reason in ("no_cert", "unknown_ca", "plain_http"):
        assert registry.get_sample_value("trio_gw_tls_handshake_failures_total",
                                         {"listener": "proxy", "reason": reason}) == 3
        assert registry.get_sample_value("trio_gw_log_lines_suppressed_total", {"reason": reason}) == 2


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
