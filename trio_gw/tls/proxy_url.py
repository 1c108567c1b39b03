"""Forward (egress) proxy URLs: Tyk ``upstream.proxy.url`` / classic ``proxy.transport.proxy_url``.

Theory of operation
-------------------
A service may reach its upstream through an HTTP forward proxy given as
``http://[user:pass@]host:port`` or ``https://[user:pass@]host:port``.  For an
https upstream the gateway opens a tunnel with ``CONNECT host:port`` and then
runs the upstream's own TLS profile *through* it (SNI and the name check refer
to the origin, never to the proxy).  A plain-http upstream is asked for with
an absolute-form target (``GET http://host:port/path``, RFC 9112 §3.2.2).
Credentials become ``Proxy-Authorization: Basic`` (RFC 7617; user and password
percent-decoded, joined by ``:``).  With ``https://`` the connection to the
proxy itself is TLS, verified against the system roots (as Tyk does;
``SSL_CERT_FILE``/``SSL_CERT_DIR`` select them); no client certificate is
presented to the proxy.

This module only parses and describes; ``net.forward_proxy`` does the IO.
The password never appears in ``describe()`` or ``repr()``.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from trio_gw.errors import ConfigError
from trio_gw.tls.hostname import InvalidServerName, normalize_server_name

__all__ = ["ForwardProxy", "parse_proxy_url"]

_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class ForwardProxy:
    """A parsed forward proxy."""

    scheme: str
    host: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @property
    def tls(self) -> bool:
        """Whether the connection to the proxy itself is TLS."""
        return self.scheme == "https"

    @property
    def authorization(self) -> bytes | None:
        """The ``Proxy-Authorization`` value, or ``None`` without credentials."""
        if self.username is None:
            return None
        token = f"{self.username}:{self.password or ''}".encode()
        return b"Basic " + base64.b64encode(token)

    @property
    def identity(self) -> str:
        """What tells two proxies apart in a pool key: the URL, credentials as a digest."""
        auth = self.authorization
        digest = hashlib.sha256(auth).hexdigest()[:16] if auth is not None else "-"
        return f"{self.describe()}#{digest}"

    def describe(self) -> str:
        """``scheme://[user@]host:port`` for logs (never the password)."""
        user = f"{self.username}@" if self.username is not None else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{user}{host}:{self.port}"


def parse_proxy_url(url: str, *, path: str) -> ForwardProxy:
    """Parse a forward proxy URL.

    Args:
        url: ``http(s)://[user[:password]@]host[:port]`` (no path, query or fragment).
        path: where it was configured, for errors.

    Returns:
        The proxy (port defaults to 80 / 443 by scheme).

    Raises:
        ConfigError: another scheme, no host, a bad port, or a path/query part.
    """
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"not a proxy URL: {exc}", path) from exc
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise ConfigError(f"a forward proxy URL starts with http:// or https://, got {scheme or 'none'!r}", path)
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigError("a forward proxy URL has no path, query or fragment", path)
    if not parts.hostname:
        raise ConfigError("the forward proxy URL has no host", path)
    try:
        host = normalize_server_name(parts.hostname)
    except InvalidServerName as exc:
        raise ConfigError(f"the forward proxy host is invalid: {exc.reason}", path) from exc
    if port == 0:
        raise ConfigError("the forward proxy port must be 1-65535", path)
    username = unquote(parts.username) if parts.username is not None else None
    password = unquote(parts.password) if parts.password is not None else None
    return ForwardProxy(scheme, host, port or _DEFAULT_PORTS[scheme], username, password)
