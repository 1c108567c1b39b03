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

Tyk's ``external_services`` (``tls.external_services``) adds, per service, a
forward proxy (``request(proxy=...)``: ``CONNECT`` for https targets, through
``net.forward_proxy``; an absolute-form request for http ones) and a TLS client
profile (:func:`external_tls_context`: a client certificate, a CA file instead
of ``lua_ssl_trusted_certificate``, a version range).
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

import h11
import trio

from trio_gw.errors import ConfigError, Problem
from trio_gw.net.forward_proxy import absolute_form_origin, open_connect_tunnel, open_proxy_stream
from trio_gw.net.openssl_shim import ShimUnavailable, set_verify_depth
from trio_gw.tls.external_services import MtlsSettings, ProxySettings
from trio_gw.tls.proxy_url import ForwardProxy
from trio_gw.tls.upstream_identity import UpstreamReason, UpstreamTlsError, classify_read_failure, classify_tls_failure

#: A CRL larger than this is refused (tls.revocation bounds parsing at 16 MiB too).
MAX_FETCH_BYTES = 16 * 1024 * 1024


#: No forward proxy: every connection goes direct.
NO_PROXIES = ProxySettings()
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


def external_tls_context(
    mtls: MtlsSettings, trusted: Sequence[str], verify_depth: int | None = None, *, setting: str
) -> ssl.SSLContext:
    """The client context of one external service (Tyk ``external_services.<service>.mtls``); blocking.

    Without ``mtls.enabled`` it is :func:`outbound_tls_context` of ``trusted``.

    Args:
        mtls: the service's parsed ``mtls`` block.
        trusted: ``lua_ssl_trusted_certificate``, trusted when the block names no ``ca_file``.
        verify_depth: ``lua_ssl_verify_depth``.
        setting: the block's key (``external_services.webhooks.mtls``), for messages.

    Raises:
        ConfigError: a file is unreadable or not PEM, or the key does not belong to the certificate
            (the message names the key and the file, never the key's content).
    """
    if not mtls.enabled:
        return outbound_tls_context(trusted, verify_depth)
    if mtls.ca_file is not None:
        ctx = outbound_tls_context([mtls.ca_file], verify_depth, setting=f"{setting}.ca_file")
    elif mtls.insecure_skip_verify:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    else:
        ctx = outbound_tls_context(trusted, verify_depth)
    if mtls.insecure_skip_verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = mtls.versions.minimum
    ctx.maximum_version = mtls.versions.maximum
    if mtls.cert_file is not None and mtls.key_file is not None:
        problems: list[Problem] = []
        for key, path in (("cert_file", mtls.cert_file), ("key_file", mtls.key_file)):
            try:
                Path(path).read_bytes()
            except OSError as exc:
                problems.append(Problem(f"{setting}.{key}", f"cannot read {path}: {exc.strerror}"))
        if problems:
            raise ConfigError(problems)
        try:
            ctx.load_cert_chain(mtls.cert_file, mtls.key_file)
        except ssl.SSLError as exc:
            if exc.reason == "KEY_VALUES_MISMATCH":
                raise ConfigError(f"{mtls.key_file} is not the private key of {mtls.cert_file}",
                                  f"{setting}.key_file") from None
            raise ConfigError(f"{mtls.cert_file} and {mtls.key_file} are not a usable PEM certificate and key "
                              f"({exc.reason or exc.__class__.__name__})", f"{setting}.cert_file") from None
    return ctx


async def fetch(
    url: str, *, timeout: float, max_bytes: int = MAX_FETCH_BYTES, ssl_context: ssl.SSLContext | None = None,
    post: tuple[str, bytes] | None = None, proxies: ProxySettings = NO_PROXIES,
) -> bytes:
    """GET ``url`` (http or https) within ``timeout`` seconds — or POST to it.

    Args:
        url: what to fetch.
        timeout: the deadline for everything (connect, handshake, body).
        max_bytes: a larger body is refused.
        ssl_context: verifies https servers (:func:`outbound_tls_context`); ``None``: the system store.
        post: ``(content type, body)`` to POST instead of GET (an OCSP request).
        proxies: Tyk ``external_services.proxy``: the forward proxy for this URL, if any.

    Raises:
        FetchError: unreachable, timed out, untrusted, not 200, or too large.
    """
    proxy = proxies.proxy_for_url(url)
    if post is None:
        _, body = await request("GET", url, timeout=timeout, max_bytes=max_bytes, ssl_context=ssl_context,
                                stop_unless=200, proxy=proxy)
    else:
        _, body = await request("POST", url, timeout=timeout, body=post[1], headers=[("content-type", post[0])],
                                max_bytes=max_bytes, ssl_context=ssl_context, stop_unless=200, proxy=proxy)
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
    proxy: ForwardProxy | None = None,
    trust_setting: str = "lua_ssl_trusted_certificate",
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
        proxy: a forward proxy to go through (``ProxySettings.proxy_for`` the URL), or ``None``.
        trust_setting: what ``ssl_context`` trusts, named in the error when a server is not trusted.

    Returns:
        The status and the answer body.

    Raises:
        FetchError: unreachable, timed out, untrusted or refusing our certificate (``permanent``), or too large.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise FetchError(f"unsupported URL {url!r}", permanent=True)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    head = [("host", parts.netloc), ("connection", "close"), ("user-agent", "trio-gw"), *headers]
    if body or method in ("POST", "PUT", "PATCH"):
        head.append(("content-length", str(len(body))))
    if proxy is not None and parts.scheme == "http":  # absolute form, RFC 9112 section 3.2.2
        target = (absolute_form_origin(parts.hostname, port) + target.encode("ascii")).decode("ascii")
        if proxy.authorization is not None:
            head.append(("proxy-authorization", proxy.authorization.decode("ascii")))
    try:
        with trio.fail_after(timeout):
            stream: trio.abc.Stream
            if proxy is None:
                stream = await trio.open_tcp_stream(parts.hostname, port)
            elif parts.scheme == "https":
                stream = await open_connect_tunnel(proxy, None, parts.hostname, port)
            else:
                stream = await open_proxy_stream(proxy, None)
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
    except UpstreamTlsError as exc:  # the proxy: unreachable, refused the CONNECT, or its TLS failed
        raise FetchError(f"through the proxy {proxy.describe() if proxy else ''}: {exc.detail}") from exc
    except (OSError, trio.BrokenResourceError, ssl.SSLError, h11.ProtocolError) as exc:
        cause = exc.__cause__ if isinstance(exc, trio.BrokenResourceError) and exc.__cause__ else exc
        if isinstance(cause, ssl.SSLCertVerificationError):
            raise FetchError(f"the server certificate of {parts.hostname} is not trusted "
                             f"({cause.verify_message}; see {trust_setting})", permanent=True) from exc
        if isinstance(cause, ssl.SSLError) and classify_read_failure(cause.reason) is UpstreamReason.REJECTED_CLIENT_CERT:
            raise FetchError(f"{parts.hostname} refused the gateway's client certificate, or its absence "
                             f"({cause.reason})", permanent=True) from exc
        if isinstance(cause, ssl.SSLError) and classify_tls_failure(cause.reason, None) is UpstreamReason.TLS_VERSION:
            raise FetchError(f"no TLS version in common with {parts.hostname} ({cause.reason})",
                             permanent=True) from exc
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
