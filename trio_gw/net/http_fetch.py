"""Small bounded HTTP requests for the gateway's own needs (CRL distribution points, event webhooks).

Theory of operation
-------------------
The gateway's own outbound TLS — not proxying, so none of the upstream TLS
settings apply — trusts what Kong's ``lua_ssl_trusted_certificate`` says:
PEM files, and ``system`` for the OS trust store (the default).
:func:`outbound_tls_context` builds that context once at start-up (reading the
store takes milliseconds: never per fetch) and :func:`fetch` verifies every
https server against it, name included.  ``lua_ssl_verify_depth`` bounds the
chain (OpenSSL's default, 100, when unset).
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

import h11
import trio

from trio_gw.errors import ConfigError, Problem
from trio_gw.net.openssl_shim import ShimUnavailable, set_verify_depth

#: A CRL larger than this is refused (tls.revocation bounds parsing at 16 MiB too).
MAX_FETCH_BYTES = 16 * 1024 * 1024


#: The ``lua_ssl_trusted_certificate`` entry standing for the OS trust store (Kong's word).
SYSTEM_STORE = "system"


class FetchError(Exception):
    """The resource could not be fetched; the message says why (no secrets).

    ``permanent`` marks failures that trying again cannot fix (an untrusted
    server certificate, an unsupported URL).
    """

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


def outbound_tls_context(
    trusted: Sequence[str], verify_depth: int | None = None, *, setting: str = "lua_ssl_trusted_certificate"
) -> ssl.SSLContext:
    """The client context of the gateway's own https fetches (blocking: run it in a worker thread).

    Args:
        trusted: PEM file paths, and/or ``system`` for the OS trust store; empty trusts nothing.
        verify_depth: most intermediates between a server's leaf and its anchor (``None``: OpenSSL's 100).
        setting: the setting ``trusted`` came from, for messages.

    Raises:
        ConfigError: a file is unreadable or holds no PEM certificate (naming ``setting[i]``),
            or the depth cannot be applied.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies the chain and the host name
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    problems: list[Problem] = []
    for i, entry in enumerate(trusted):
        if entry.strip().lower() == SYSTEM_STORE:
            ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
            continue
        try:
            text = Path(entry).read_text()
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not a text (PEM) file"
            problems.append(Problem(f"{setting}[{i}]", f"cannot read {entry}: {reason}"))
            continue
        if "-----BEGIN CERTIFICATE-----" not in text:
            problems.append(Problem(f"{setting}[{i}]", f"{entry} holds no PEM certificate (BEGIN CERTIFICATE)"))
            continue
        try:
            ctx.load_verify_locations(cadata=text)
        except ssl.SSLError as exc:
            problems.append(Problem(f"{setting}[{i}]", f"{entry} is not a usable PEM CA bundle ({exc.reason})"))
    if verify_depth is not None:
        try:
            set_verify_depth(ctx, verify_depth)
        except ShimUnavailable as exc:
            problems.append(Problem("lua_ssl_verify_depth", str(exc)))
    if problems:
        raise ConfigError(problems)
    return ctx


async def fetch(
    url: str, *, timeout: float, max_bytes: int = MAX_FETCH_BYTES, ssl_context: ssl.SSLContext | None = None,
    post: tuple[str, bytes] | None = None,
) -> bytes:
    """GET ``url`` (http or https) within ``timeout`` seconds — or POST to it.

    Args:
        url: what to fetch.
        timeout: the deadline for everything (connect, handshake, body).
        max_bytes: a larger body is refused.
        ssl_context: verifies https servers (:func:`outbound_tls_context`); ``None``: the system store.
        post: ``(content type, body)`` to POST instead of GET (an OCSP request).

    Raises:
        FetchError: unreachable, timed out, untrusted, not 200, or too large.
    """
    if post is None:
        _, body = await request("GET", url, timeout=timeout, max_bytes=max_bytes, ssl_context=ssl_context,
                                stop_unless=200)
    else:
        _, body = await request("POST", url, timeout=timeout, body=post[1], headers=[("content-type", post[0])],
                                max_bytes=max_bytes, ssl_context=ssl_context, stop_unless=200)
    return body


async def request(
    method: str,
    url: str,
    *,
    timeout: float,
    body: bytes = b"",
    headers: Sequence[tuple[str, str]] = (),
    max_bytes: int = MAX_FETCH_BYTES,
    ssl_context: ssl.SSLContext | None = None,
    stop_unless: int | None = None,
) -> tuple[int, bytes]:
    """Send one request (``Connection: close``) and read the answer, within ``timeout`` seconds.

    Args:
        method: ``GET``, ``POST``...
        url: an http or https URL.
        timeout: the deadline for everything (connect, handshake, request, answer).
        body: the request body (sent with ``Content-Length`` when not empty, or for POST/PUT/PATCH).
        headers: extra request headers (``Host``, ``Connection`` and ``Content-Length`` are set here).
        max_bytes: a larger answer body is refused.
        ssl_context: verifies https servers (:func:`outbound_tls_context`); ``None``: the system store.
        stop_unless: raise ``FetchError("HTTP <status>")`` as soon as another status arrives.

    Returns:
        The status and the answer body.

    Raises:
        FetchError: unreachable, timed out, untrusted (``permanent``), or too large.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise FetchError(f"unsupported URL {url!r}", permanent=True)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    head = [("host", parts.netloc), ("connection", "close"), ("user-agent", "trio-gw"), *headers]
    if body or method in ("POST", "PUT", "PATCH"):
        head.append(("content-length", str(len(body))))
    try:
        with trio.fail_after(timeout):
            stream: trio.abc.Stream = await trio.open_tcp_stream(parts.hostname, port)
            try:  # closed on every path, a failed handshake included (else the socket waits for the GC)
                if parts.scheme == "https":
                    context = ssl_context if ssl_context is not None else ssl.create_default_context()
                    tls = trio.SSLStream(stream, context, server_hostname=parts.hostname, https_compatible=True)
                    stream = tls
                    await tls.do_handshake()
                return await _exchange(stream, h11.Request(method=method, target=target, headers=head), body,
                                       max_bytes, stop_unless)
            finally:
                await trio.aclose_forcefully(stream)
    except trio.TooSlowError as exc:
        raise FetchError(f"timed out after {timeout}s") from exc
    except (OSError, trio.BrokenResourceError, ssl.SSLError, h11.ProtocolError) as exc:
        cause = exc.__cause__ if isinstance(exc, trio.BrokenResourceError) and exc.__cause__ else exc
        if isinstance(cause, ssl.SSLCertVerificationError):
            raise FetchError(f"the server certificate of {parts.hostname} is not trusted "
                             f"({cause.verify_message}; see lua_ssl_trusted_certificate)", permanent=True) from exc
        raise FetchError(f"{type(cause).__name__}: {cause}") from exc


async def _exchange(
    stream: trio.abc.Stream, request: h11.Request, body: bytes, max_bytes: int, stop_unless: int | None
) -> tuple[int, bytes]:
    conn = h11.Connection(h11.CLIENT)
    out = conn.send(request)
    if body:
        out += conn.send(h11.Data(data=body))
    await stream.send_all(out + conn.send(h11.EndOfMessage()))
    status, received = 0, bytearray()
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(await stream.receive_some(65536))  # type: ignore[arg-type]  # bytearray ok
        elif isinstance(event, h11.Response):
            status = event.status_code
            if stop_unless is not None and status != stop_unless:
                raise FetchError(f"HTTP {status}")
        elif isinstance(event, h11.Data):
            received += event.data
            if len(received) > max_bytes:
                raise FetchError(f"larger than {max_bytes} bytes")
        elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
            return status, bytes(received)
