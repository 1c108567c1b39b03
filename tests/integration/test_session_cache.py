"""The server-side session cache (Kong's ``ssl_session_cache_size``), against a real gateway.

A TLS 1.2 client that sends no ticket resumes by session ID, from the cache of
the listener context.  ``32k`` holds 125 sessions (nginx's 4,000 per megabyte):
after 130 other clients the first one's session has made room and its client
does a full handshake, while with Kong's ``10m`` (40,000 sessions) it still
resumes.  The clients are blocking stdlib ``ssl`` sockets in a thread; the
gateway runs on this test's event loop.
"""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

import pytest
import trio
import trustme

from .conftest import StartGateway, port_of

OTHERS = 130  # more than the 125 sessions of 32k


def _tls12_client(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.options |= ssl.OP_NO_TICKET  # resume by session ID, from the server's cache
    return ctx


def _connect(port: int, ctx: ssl.SSLContext, session: ssl.SSLSession | None = None) -> tuple[ssl.SSLSession, bool]:
    """One TLS 1.2 connection: its session, and whether it resumed ``session``."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            ctx.wrap_socket(raw, server_hostname="localhost", session=session) as tls:
        assert tls.version() == "TLSv1.2"
        new = tls.session
        assert new is not None
        return new, bool(tls.session_reused)


def _first_resumes_after_others(port: int, ctx: ssl.SSLContext) -> tuple[bool, bool]:
    """Whether the first client's session still resumes after OTHERS clients, and whether the last one's does."""
    first, _ = _connect(port, ctx)
    last = first
    for _ in range(OTHERS):
        last, reused = _connect(port, ctx)
        assert not reused
    _, last_resumed = _connect(port, ctx, last)
    _, first_resumed = _connect(port, ctx, first)
    return first_resumed, last_resumed


@pytest.mark.parametrize(
    ("settings", "first_still_resumes"),
    [
        ({"ssl_session_cache_size": "32k"}, False),  # 125 sessions: the first made room
        ({}, True),  # Kong's 10m: 40,000 sessions
    ],
)
async def test_a_full_cache_makes_room_with_its_oldest_session(
    start_gateway: StartGateway, ca: trustme.CA, server_pair: tuple[Path, Path], settings: dict[str, str],
    first_still_resumes: bool,
) -> None:
    cert, key = server_pair
    gw = await start_gateway(ssl_cert=str(cert), ssl_cert_key=str(key), **settings)
    first, last = await trio.to_thread.run_sync(_first_resumes_after_others, port_of(gw, ssl=True), _tls12_client(ca))
    assert (first, last) == (first_still_resumes, True)


async def test_with_tickets_off_tls12_clients_still_resume_by_session_id(
    start_gateway: StartGateway, ca: trustme.CA, server_pair: tuple[Path, Path],
) -> None:
    # As with Kong and nginx: ssl_session_tickets off stops the tickets, not the cache.
    cert, key = server_pair
    gw = await start_gateway(ssl_cert=str(cert), ssl_cert_key=str(key), ssl_session_tickets="off")
    port, ctx = port_of(gw, ssl=True), _tls12_client(ca)
    session, _ = await trio.to_thread.run_sync(_connect, port, ctx)
    _, reused = await trio.to_thread.run_sync(_connect, port, ctx, session)
    assert reused
