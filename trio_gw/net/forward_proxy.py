"""Reaching upstreams through an HTTP forward proxy (Tyk ``upstream.proxy``).

Theory of operation
-------------------
*https upstream*: TCP (and TLS, for an ``https://`` proxy, verified against the
system roots — OpenSSL's default paths, so ``SSL_CERT_FILE``/``SSL_CERT_DIR``
choose them, as for Go and thus Tyk — with no client certificate) to the proxy, then ``CONNECT host:port`` with ``Host`` and, when
the URL has credentials, ``Proxy-Authorization: Basic``.  h11 needs an
``EndOfMessage`` after the CONNECT request to reach ``SWITCHED_PROTOCOL``
(docs/tls-stack.md §8).  A 2xx answer opens the tunnel; bytes h11 read past the answer
(``trailing_data``) are replayed by :class:`PrefixedStream` so the upstream's
TLS handshake, run on top by ``net.upstream`` with the upstream's own profile
(SNI and name check = the origin), loses nothing.  Any other answer, or EOF,
fails with reason ``proxy_connect_failed``; the whole CONNECT phase runs under
the caller's connect deadline.

*plain http upstream*: one connection to the proxy carries the requests, each
with an absolute-form target (``GET http://host:port/path``, RFC 9112 §3.2.2)
and ``Proxy-Authorization``; :class:`AbsoluteFormConnection` rewrites the
request head h11 is asked to send, so the proxy exchange code stays unaware.
"""

from __future__ import annotations

import logging
import ssl
from typing import Any

import h11
import trio

from trio_gw.net.contexts import TLS_RECEIVE_SIZE
from trio_gw.tls.proxy_url import ForwardProxy
from trio_gw.tls.upstream_identity import UpstreamReason, UpstreamTlsError

log = logging.getLogger("trio_gw.upstream")

#: Largest CONNECT answer head accepted from a proxy.
MAX_CONNECT_RESPONSE = 16384


class PrefixedStream(trio.abc.Stream):
    """A stream that first returns ``prefix``, then reads ``inner``."""

    def __init__(self, inner: trio.abc.Stream, prefix: bytes) -> None:
        self.inner = inner
        self._prefix = prefix

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        if self._prefix:
            size = len(self._prefix) if max_bytes is None else max_bytes
            data, self._prefix = self._prefix[:size], self._prefix[size:]
            return data
        return await self.inner.receive_some(max_bytes)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        await self.inner.aclose()


async def open_proxy_stream(proxy: ForwardProxy, proxy_context: ssl.SSLContext | None) -> trio.abc.Stream:
    """Connect to the proxy itself (TLS for ``https://`` proxies).

    Raises:
        UpstreamTlsError: ``PROXY_CONNECT_FAILED`` when the proxy is unreachable or its TLS fails.
    """
    try:
        sock = await trio.open_tcp_stream(proxy.host, proxy.port)
    except OSError as exc:
        raise _failed(f"{proxy.describe()}: {exc}") from exc
    if not proxy.tls:
        return sock
    ctx = proxy_context or ssl.create_default_context()
    tls = trio.SSLStream(sock, ctx, server_hostname=proxy.host, https_compatible=True)
    try:
        await tls.do_handshake()
    except trio.BrokenResourceError as exc:
        await trio.aclose_forcefully(sock)
        raise _failed(f"TLS to {proxy.describe()}: {exc.__cause__}") from exc
    return tls


def _failed(detail: str) -> UpstreamTlsError:
    """A ``proxy_connect_failed`` error, its detail logged (at info) as the client never sees it."""
    log.info("forward proxy: %s", detail)
    return UpstreamTlsError(UpstreamReason.PROXY_CONNECT_FAILED, detail)


async def open_connect_tunnel(
    proxy: ForwardProxy, proxy_context: ssl.SSLContext | None, host: str, port: int
) -> trio.abc.Stream:
    """Open a ``CONNECT host:port`` tunnel through ``proxy``; the caller bounds the time.

    Returns:
        A stream to the origin (bytes flow unchanged through the proxy).

    Raises:
        UpstreamTlsError: ``PROXY_CONNECT_FAILED`` (unreachable, refused, non-2xx, bad answer).
    """
    stream = await open_proxy_stream(proxy, proxy_context)
    try:
        return await _connect(stream, proxy, host, port)
    except BaseException:
        await trio.aclose_forcefully(stream)
        raise


def _authority(host: str, port: int) -> bytes:
    return (f"[{host}]:{port}" if ":" in host else f"{host}:{port}").encode("ascii")


async def _connect(stream: trio.abc.Stream, proxy: ForwardProxy, host: str, port: int) -> trio.abc.Stream:
    conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_CONNECT_RESPONSE)
    authority = _authority(host, port)
    headers = [(b"host", authority)]
    if proxy.authorization is not None:
        headers.append((b"proxy-authorization", proxy.authorization))
    request = h11.Request(method=b"CONNECT", target=authority, headers=headers)
    try:
        await stream.send_all(conn.send(request) + conn.send(h11.EndOfMessage()))
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(bytes(await stream.receive_some(TLS_RECEIVE_SIZE)))
                continue
            if isinstance(event, h11.InformationalResponse):
                continue
            break
    except (trio.BrokenResourceError, h11.RemoteProtocolError, OSError) as exc:
        raise _failed(f"CONNECT via {proxy.describe()}: {exc}") from exc
    if not isinstance(event, h11.Response):
        raise _failed(f"{proxy.describe()} closed during CONNECT")
    if not 200 <= event.status_code < 300:
        raise _failed(f"{proxy.describe()} answered CONNECT with {event.status_code}")
    data, _closed = conn.trailing_data
    return PrefixedStream(stream, bytes(data)) if data else stream


class AbsoluteFormConnection(h11.Connection):
    """An h11 client that sends request heads in absolute form to a forward proxy."""

    def __init__(self, origin: bytes, authorization: bytes | None) -> None:
        super().__init__(h11.CLIENT)
        self._origin = origin  # b"http://host:port"
        self._authorization = authorization

    def send(self, event: Any) -> bytes | None:  # type: ignore[override]  # h11's overloads, one body
        if isinstance(event, h11.Request) and event.target.startswith(b"/"):
            headers = list(event.headers)
            if self._authorization is not None:
                headers.append((b"proxy-authorization", self._authorization))
            event = h11.Request(
                method=event.method, target=self._origin + event.target, headers=headers,
                http_version=event.http_version,
            )
        sent: bytes | None = super().send(event)
        return sent


def absolute_form_origin(host: str, port: int) -> bytes:
    """``http://host:port`` as the prefix of absolute-form targets."""
    return b"http://" + _authority(host, port)
