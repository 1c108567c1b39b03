"""A small bounded HTTP GET for the gateway's own needs (CRL distribution points)."""

from __future__ import annotations

import ssl
from urllib.parse import urlsplit

import h11
import trio

#: A CRL larger than this is refused (tls.revocation bounds parsing at 16 MiB too).
MAX_FETCH_BYTES = 16 * 1024 * 1024


class FetchError(Exception):
    """The resource could not be fetched; the message says why (no secrets)."""


async def fetch(url: str, *, timeout: float, max_bytes: int = MAX_FETCH_BYTES) -> bytes:
    """GET ``url`` (http or https, system roots) within ``timeout`` seconds.

    Raises:
        FetchError: unreachable, timed out, not 200, or too large.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise FetchError(f"unsupported URL {url!r}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        with trio.fail_after(timeout):
            stream: trio.abc.Stream = await trio.open_tcp_stream(parts.hostname, port)
            if parts.scheme == "https":
                tls = trio.SSLStream(stream, ssl.create_default_context(), server_hostname=parts.hostname,
                                     https_compatible=True)
                await tls.do_handshake()
                stream = tls
            try:
                return await _get(stream, parts.netloc, target, max_bytes)
            finally:
                await trio.aclose_forcefully(stream)
    except trio.TooSlowError as exc:
        raise FetchError(f"timed out after {timeout}s") from exc
    except (OSError, trio.BrokenResourceError, ssl.SSLError, h11.ProtocolError) as exc:
        raise FetchError(f"{type(exc).__name__}: {exc}") from exc


async def _get(stream: trio.abc.Stream, host: str, target: str, max_bytes: int) -> bytes:
    conn = h11.Connection(h11.CLIENT)
    request = h11.Request(method="GET", target=target, headers=[("host", host), ("connection", "close"),
                                                                 ("user-agent", "trio-gw")])
    await stream.send_all(conn.send(request) + conn.send(h11.EndOfMessage()))
    body = bytearray()
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(await stream.receive_some(65536))  # type: ignore[arg-type]  # bytearray ok
        elif isinstance(event, h11.Response):
            if event.status_code != 200:
                raise FetchError(f"HTTP {event.status_code}")
        elif isinstance(event, h11.Data):
            body += event.data
            if len(body) > max_bytes:
                raise FetchError(f"larger than {max_bytes} bytes")
        elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
            return bytes(body)
