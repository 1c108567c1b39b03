"""The facts about one request that routing and header rewriting need.

Built once per request head by :meth:`RequestFacts.from_h11` (HTTP/1.1) or
:meth:`RequestFacts.from_head` (HTTP/2), after the guards (:mod:`trio_gw.http.guards`,
:mod:`trio_gw.http.h2_request`) have accepted the head.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol
from functools import lru_cache

import h11

from trio_gw.http.errors import RequestRejected
from trio_gw.http.paths import normalize_path

_HOST_RE = re.compile(r"(?:\[[0-9a-fA-F:.]+\]|[A-Za-z0-9._~!$&'()*+,;=%-]*)(?::([0-9]*))?")


@lru_cache(maxsize=4096)
def parse_host_header(value: str) -> tuple[str, int | None]:
    """Split a Host header into lowercase host and port.

    Args:
        value: the Host header value (``api.example.com:8443``, ``[::1]:80``).

    Returns:
        ``(host, port)``: host lowercased without a trailing dot (IPv6 literals
        keep their brackets); port ``None`` when absent or empty.

    Raises:
        RequestRejected: 400 ``invalid_host`` for anything that is not
            ``host[:port]`` with a port in 0..65535.
    """
    m = _HOST_RE.fullmatch(value)
    if m is None:
        raise RequestRejected(400, "Bad request", reason="invalid_host")
    digits = m.group(1)
    host = value[: m.start(1) - 1] if digits is not None else value
    port: int | None = None
    if digits:
        if len(digits) > 5 or int(digits) > 65535:
            raise RequestRejected(400, "Bad request", reason="invalid_host")
        port = int(digits)
    host = host.lower()
    if host.endswith(".") and len(host) > 1:
        host = host[:-1]
    if not host and port is not None:
        raise RequestRejected(400, "Bad request", reason="invalid_host")
    return host, port


@dataclass(frozen=True, slots=True)
class RequestFacts:
    """What routing needs to know about one request.

    Attributes:
        method: request method as sent (``GET``).
        host: from the Host header, lowercased, port removed (may be ``""``).
        path: the origin-form path without query; normalised when built by
            :meth:`from_h11`.
        query: the query string without ``?`` (may be empty).
        protocol: ``"http"`` or ``"https"`` (the downstream connection's).
        sni: the TLS server name, if any.
        headers: lowercased name -> values, for header matching only.
        port: the Host header's port, or ``None``.
        host_header: the Host header as received (for ``preserve_host``).
    """

    method: str
    host: str
    path: str
    query: str = ""
    protocol: str = "http"
    sni: str | None = None
    headers: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    port: int | None = None
    host_header: str | None = None

    @property
    def effective_port(self) -> int:
        """The Host header's port, else the protocol's default port."""
        if self.port is not None:
            return self.port
        return 443 if self.protocol == "https" else 80

    @classmethod
    def from_h11(
        cls,
        request: h11.Request,
        *,
        protocol: str,
        sni: str | None = None,
        header_names: frozenset[str] = frozenset(),
    ) -> RequestFacts:
        """Build the facts from an h11 request head that passed the guards.

        Args:
            request: the h11 ``Request`` (origin-form target).
            protocol: ``"http"`` or ``"https"``.
            sni: the TLS server name, if any.
            header_names: the header names routes match on
                (:attr:`Router.header_names`); only those are collected.

        Returns:
            The facts, with the path normalised.

        Raises:
            RequestRejected: the Host header is malformed.
        """
        return cls.from_head(
            request.method, request.target, request.headers,
            protocol=protocol, sni=sni, header_names=header_names,
        )

    @classmethod
    def from_head(
        cls,
        method: bytes,
        target: bytes,
        headers: Iterable[tuple[bytes, bytes]],
        *,
        protocol: str,
        sni: str | None = None,
        header_names: frozenset[str] = frozenset(),
    ) -> RequestFacts:
        """Build the facts from a request head of any HTTP version.

        The HTTP/1.1 driver passes h11's fields (:meth:`from_h11`); the HTTP/2
        driver the head :func:`trio_gw.http.h2_request.parse_h2_request` made
        from the pseudo-headers, whose ``host`` field carries ``:authority``.

        Args:
            method: the request method.
            target: the origin-form target (path and query).
            headers: lowercase ``(name, value)`` fields, ``host`` among them.
            protocol: ``"http"`` or ``"https"``.
            sni: the TLS server name, if any.
            header_names: the header names routes match on; only those are collected.

        Returns:
            The facts, with the path normalised.

        Raises:
            RequestRejected: the Host header is malformed.
        """
        raw_host = ""
        collected: dict[str, tuple[str, ...]] = {}
        for name, value in headers:
            if name == b"host":
                raw_host = value.decode("latin-1")
            elif header_names:
                key = name.decode("latin-1")
                if key in header_names:
                    collected[key] = collected.get(key, ()) + (value.decode("latin-1"),)
        host, port = parse_host_header(raw_host)
        path, _, query = target.decode("latin-1").partition("?")
        return cls(
            method=method.decode("latin-1"),
            host=host,
            path=normalize_path(path),
            query=query,
            protocol=protocol,
            sni=sni.lower().rstrip(".") if sni else None,
            headers=collected,
            port=port,
            host_header=raw_host,
        )


def body_framing(headers: Iterable[tuple[bytes, bytes]]) -> tuple[bool, int, bool]:
    """``(chunked, content_length, upgrade)`` of a request head the guards accepted.

    The guards refused Content-Length together with Transfer-Encoding, several
    lengths and any coding but ``chunked``, so one field decides the body (no
    body: ``(False, 0, ...)``).  ``upgrade`` says that a body-less head has an
    ``Upgrade`` field: the HTTP/1.1 driver then asks
    :func:`trio_gw.http.headers.websocket_requested` (a head with a body never
    switches protocols here).  The same pass over the fields finds all three.
    """
    chunked = upgrade = False
    length = 0
    for name, value in headers:
        if name == b"transfer-encoding":
            chunked = True
        elif name == b"content-length":
            length = int(value)
        elif name == b"upgrade":
            upgrade = True
    return chunked, length, upgrade and not chunked and not length


#: One string object per distinct value that every connection repeats (TLS version, cipher, ALPN, SNI).
_SHARED_TEXT: dict[str, str] = {}
#: Server names come from clients: past this many distinct values, new ones are not kept.
SHARED_TEXT_LIMIT = 4096


def shared_text(value: str | None) -> str | None:
    """``value``, as the one object already held for an equal string when there is one.

    ``ssl`` returns a new string for every connection's version, cipher and server
    name; an idle connection would keep ~250 bytes of copies of the same few words.
    """
    if value is None:
        return None
    held = _SHARED_TEXT.get(value)
    if held is None:
        if len(_SHARED_TEXT) >= SHARED_TEXT_LIMIT:
            return value
        held = _SHARED_TEXT[value] = value
    return held


@dataclass(slots=True)
class ConnectionFacts:
    """Facts about one client connection, fixed once its TLS handshake (if any) is done.

    The IO layer fills it (``trio_gw.net.connection``); routing, plugins, the access
    log and metrics read it.  ``is_trusted`` is worked out once per connection, and
    again only if a new configuration brings other ``trusted_ips``.
    """

    client_ip: str
    client_port: int
    server_port: int
    tls: bool = False
    tls_version: str | None = None
    cipher: str | None = None
    sni: str | None = None
    alpn: str | None = None
    peer_certificate_der: bytes | None = None
    #: The certificates the client sent after its leaf; empty on a resumed session (the leaf survives).
    peer_chain_der: tuple[bytes, ...] = ()
    #: The client certificate's SHA-256 fingerprint (lowercase hex of the DER) and RFC 4514 subject, worked
    #: out once per connection after the handshake, for the access log.
    client_cert_fingerprint: str | None = None
    client_cert_subject: str | None = None
    _trusted: bool = False
    _trusted_in: object = None

    @property
    def protocol(self) -> str:
        """``"https"`` or ``"http"``: the scheme the client used."""
        return "https" if self.tls else "http"

    def is_trusted(self, networks: TrustedPeers) -> bool:
        """Whether the client is in ``networks`` (cached for the networks object last asked)."""
        if self._trusted_in is not networks:
            self._trusted, self._trusted_in = networks.is_trusted(self.client_ip), networks
        return self._trusted


class TrustedPeers(Protocol):
    """What :meth:`ConnectionFacts.is_trusted` asks (``trio_gw.http.headers.TrustedNetworks``)."""

    def is_trusted(self, ip: str) -> bool: ...
