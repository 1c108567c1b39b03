"""A client that closes its connection while its request waits on a slow upstream ends that request (nginx's 499).

Real sockets on 127.0.0.1: an in-process gateway, the echo upstream answering after a delay, clients that
leave (plain and TLS), stay, or half-close; the access log in a JSON file says what became of each request.
"""

from __future__ import annotations

import json
import socket
import ssl
from pathlib import Path
from typing import Any

import pytest
import trio
import trustme

from trio_gw.net.client_abort import CHECK_INTERVAL, ClientAborts, tcp_peer_closed
from trio_gw.net.exchange import Exchange
from trio_gw.runtime.gateway import Gateway

from .conftest import StartGateway, Upstream, port_of

#: The upstream answers this late (ms): far beyond the two check intervals a departure takes to be seen.
SLOW_MS = 10_000


async def _gateway(start_gateway: StartGateway, upstream: Upstream, log: Path, **settings: Any) -> Gateway:
    conf = {"_format_version": "3.0", "services": [{"name": "slow", "url": upstream.url, "routes": [{"paths": ["/"]}]}]}
    return await start_gateway(conf, proxy_access_log=str(log), access_log_format="json", **settings)


async def _records(log: Path, count: int, wait: float = 2 * SLOW_MS / 1000) -> list[dict[str, Any]]:
    """The access log's JSON lines once ``count`` are written (a bounded wait)."""
    with trio.move_on_after(wait):
        while not log.exists() or len(log.read_text().splitlines()) < count:
            await trio.sleep(0.05)
    return [json.loads(line) for line in log.read_text().splitlines()]


async def _send(gw: Gateway, target: str, *, half_close: bool = False, extra: str = "") -> trio.SocketStream:
    """A new plain connection that has sent ``GET target`` (and, with ``half_close``, its FIN)."""
    client = await trio.open_tcp_stream("127.0.0.1", port_of(gw))
    await client.send_all(f"GET {target} HTTP/1.1\r\nhost: a\r\n{extra}\r\n".encode())
    if half_close:
        await client.send_eof()
    return client


async def _read_until(stream: trio.abc.ReceiveStream, marker: bytes | None) -> bytes:
    """What ``stream`` gives until ``marker`` is in it, or (``None``) until its end (bounded)."""
    got = b""
    with trio.fail_after(SLOW_MS / 1000 - 1):
        while marker is None or marker not in got:
            chunk = await stream.receive_some(65536)
            if not chunk:
                break
            got += chunk
    return got


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
async def test_a_client_that_leaves_ends_its_request_with_499(
    start_gateway: StartGateway, upstream: Upstream, tmp_path: Path, server_pair: tuple[Path, Path],
    ca: trustme.CA, tls: bool,
) -> None:
    log = tmp_path / "access.json"
    cert, key = server_pair
    gw = await _gateway(start_gateway, upstream, log, ssl_cert=str(cert), ssl_cert_key=str(key))
    client: trio.abc.Stream = await trio.open_tcp_stream("127.0.0.1", port_of(gw, ssl=tls))
    if tls:
        context = ssl.create_default_context()
        ca.configure_trust(context)
        client = trio.SSLStream(client, context, server_hostname="localhost")
    await client.send_all(f"GET /delay/{SLOW_MS} HTTP/1.1\r\nhost: a\r\n\r\n".encode())
    await trio.sleep(0.3)
    await client.aclose()  # TLS: close_notify, then the FIN
    (record,) = await _records(log, 1)
    assert (record["status"], record["reason"]) == (499, "client_closed")
    assert record["latency_ms"] < SLOW_MS - 1000  # ended when the client left, not when the upstream answered
    assert gw.proxy.aborts.aborted == 1


async def test_a_client_that_stays_gets_its_slow_answer(
    start_gateway: StartGateway, upstream: Upstream, tmp_path: Path,
) -> None:
    log = tmp_path / "access.json"
    gw = await _gateway(start_gateway, upstream, log)
    delay_ms = int(2.5 * CHECK_INTERVAL * 1000)  # the watcher looks at it twice at least
    client = await _send(gw, f"/delay/{delay_ms}")
    assert (await _read_until(client, b"\r\n\r\n")).startswith(b"HTTP/1.1 200 ")
    (record,) = await _records(log, 1)
    assert (record["status"], record["reason"]) == (200, None)
    assert gw.proxy.aborts.aborted == 0
    await client.aclose()


async def test_a_half_closed_client_gets_a_quick_answer_but_not_a_slow_one(
    start_gateway: StartGateway, upstream: Upstream, tmp_path: Path,
) -> None:
    """As nginx on epoll: a FIN counts as leaving, even a half-close — once the request waited an interval."""
    log = tmp_path / "access.json"
    gw = await _gateway(start_gateway, upstream, log)
    quick = await _send(gw, "/anything", half_close=True, extra="connection: close\r\n")
    assert (await _read_until(quick, None)).startswith(b"HTTP/1.1 200 ")
    slow = await _send(gw, f"/delay/{SLOW_MS}", half_close=True)
    assert await _read_until(slow, None) == b""  # closed without an answer, before the upstream's
    statuses = [(r["status"], r["reason"]) for r in await _records(log, 2)]
    assert statuses == [(200, None), (499, "client_closed")]


# --- the pieces --------------------------------------------------------------------------


def _tcp_pair() -> tuple[socket.socket, socket.socket]:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
    return client, server


async def test_a_client_that_leaves_while_the_upstream_is_being_reached_ends_its_request(
    start_gateway: StartGateway, tmp_path: Path,
) -> None:
    """An upstream that drops SYNs (its accept queue full) holds a connect for connect_timeout; a client
    that leaves meanwhile ends it, as nginx notices a client's FIN while it connects upstream."""
    full = socket.socket()
    full.bind(("127.0.0.1", 0))
    full.listen(0)  # never accepted: the queue fills, then the kernel drops further SYNs
    port = full.getsockname()[1]
    fillers = []
    for _ in range(4):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(("127.0.0.1", port))
        fillers.append(filler)
    await trio.sleep(0.2)
    try:
        log = tmp_path / "access.json"
        conf = {"_format_version": "3.0", "services": [{"name": "syn-drop", "url": f"http://127.0.0.1:{port}",
                                                        "connect_timeout": SLOW_MS, "retries": 0,
                                                        "routes": [{"paths": ["/"]}]}]}
        gw = await start_gateway(conf, proxy_access_log=str(log), access_log_format="json")
        client = await _send(gw, "/x")
        await trio.sleep(0.3)
        start = trio.current_time()
        await client.aclose()
        (record,) = await _records(log, 1)
        assert (record["status"], record["reason"]) == (499, "client_closed")
        assert trio.current_time() - start < 3 * CHECK_INTERVAL  # not connect_timeout (10 s)
    finally:
        for sock in (*fillers, full):
            sock.close()


def test_tcp_peer_closed_sees_a_fin_and_a_reset_but_not_an_open_peer() -> None:
    client, server = _tcp_pair()
    with client, server:
        assert not tcp_peer_closed(server)
        client.sendall(b"unread")
        client.shutdown(socket.SHUT_WR)  # a FIN after data the server has not read
        trio.run(trio.sleep, 0.05)
        assert tcp_peer_closed(server)
    client, server = _tcp_pair()
    with server:
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        client.close()  # linger 0: a reset
        trio.run(trio.sleep, 0.05)
        assert tcp_peer_closed(server)
    assert not tcp_peer_closed(server)  # closed here: cannot tell, so not "left"


class _Stream:
    def __init__(self, closed: bool) -> None:
        self.closed = closed
        self.looks = 0

    def peer_closed(self) -> bool:
        self.looks += 1
        return self.closed


class _Upstream:
    def __init__(self) -> None:
        self.interrupts = 0

    def interrupt_receive(self) -> None:
        self.interrupts += 1


def test_only_requests_seen_at_the_previous_look_are_looked_at_and_each_is_ended_once() -> None:
    aborts = ClientAborts()
    gone, staying, quick = _Stream(True), _Stream(False), _Stream(True)
    up = _Upstream()
    ex_gone, ex_staying, ex_quick = (Exchange(started=0.0) for _ in range(3))
    ex_gone.upstream_stream = up
    aborts.watch(gone, ex_gone)
    aborts.watch(staying, ex_staying)
    assert aborts.check() == 0 and gone.looks == 0  # registered since the last look: not yet
    aborts.watch(quick, ex_quick)
    assert aborts.check() == 1  # gone: waited a whole interval, and its client left
    assert ex_gone.client_closed and up.interrupts == 1 and not ex_staying.client_closed
    assert quick.looks == 0 and staying.looks == 1
    aborts.unwatch(quick)  # answered before a second look
    assert aborts.check() == 0  # gone is marked already; its upstream is interrupted again (it may not have been receiving)
    assert up.interrupts == 2 and quick.looks == 0 and not ex_quick.client_closed
    aborts.unwatch(gone)
    aborts.unwatch(staying)
    assert aborts.check() == 0 and aborts.aborted == 1


# --- a body that stalls or breaks ---------------------------------------------------------


@pytest.mark.parametrize(("body", "status", "reason"), [
    (b"content-length: 100\r\n\r\n0123456789", 408, "client_body_timeout"),  # 10 of 100 bytes, then silence
    (b"transfer-encoding: chunked\r\n\r\n5\r\n0123456789\r\n", 400, "bad_request"),  # no CRLF after 5 bytes
], ids=["stalled", "broken"])
async def test_a_stalled_or_broken_body_is_answered_and_in_the_access_log(
    start_gateway: StartGateway, upstream: Upstream, tmp_path: Path, body: bytes, status: int, reason: str,
) -> None:
    """nginx answers a body that stalls for client_body_timeout with 408, one that breaks its framing
    with 400; the connection then closes. Before, the connection closed with no answer at all and the
    access log said status 0."""
    log = tmp_path / "access.json"
    gw = await _gateway(start_gateway, upstream, log, client_body_timeout="300ms")
    client = await trio.open_tcp_stream("127.0.0.1", port_of(gw))
    await client.send_all(b"POST /anything HTTP/1.1\r\nhost: a\r\n" + body)
    answer = await _read_until(client, None)  # the gateway closes after answering
    assert answer.startswith(f"HTTP/1.1 {status} ".encode())
    assert json.loads(answer.partition(b"\r\n\r\n")[2])["reason"] == reason
    (record,) = await _records(log, 1)
    assert (record["status"], record["reason"]) == (status, reason)


async def test_with_proxy_ignore_client_abort_the_upstream_exchange_runs_to_its_end(
    start_gateway: StartGateway, upstream: Upstream, tmp_path: Path,
) -> None:
    """nginx's proxy_ignore_client_abort, under Kong's injected-directive name."""
    log = tmp_path / "access.json"
    gw = await _gateway(start_gateway, upstream, log, nginx_proxy_proxy_ignore_client_abort="on")
    delay_ms = int(2.5 * CHECK_INTERVAL * 1000)  # two looks would have seen the client gone
    client = await _send(gw, f"/delay/{delay_ms}", half_close=True)
    (record,) = await _records(log, 1)
    assert (record["status"], record["reason"]) == (200, None)
    assert record["latency_ms"] >= delay_ms
    assert gw.proxy.aborts.aborted == 0
    await client.aclose()
