"""Header rewriting between the client and the upstream, both directions.

Theory of operation
-------------------
Headers are h11's lists of ``(name, value)`` bytes pairs with lowercase names.
Each direction is one pass over the incoming list:

* **Hop-by-hop** fields (:data:`HOP_BY_HOP`) and every field named in
  ``Connection`` are dropped (RFC 9110 §7.6.1).  Framing fields a client could
  try to drop by naming them in ``Connection`` (``content-length``, ``host``)
  and the fields the gateway sets itself are never dropped that way: naming
  ``content-length`` must not turn a request with a body into one without
  (a desync), and naming ``x-forwarded-for`` must not remove what the gateway
  adds.
* **Framing**: ``transfer-encoding`` is hop-by-hop and is dropped; a message
  that had it never keeps ``content-length`` either.  Re-framing is the
  driver's: for a chunked client body it appends ``transfer-encoding:
  chunked`` to the upstream request (h11 as a client does not chunk on its
  own); h11 as a server chunks a response that has no length by itself.
* **Forwarding facts** (Kong's): ``X-Forwarded-For/-Proto/-Host/-Port/-Path/
  -Prefix`` and ``X-Real-IP`` are built from the connection.  Incoming values
  are honoured only when the peer is in ``trusted_ips``
  (:class:`TrustedNetworks`); from anyone else they are replaced.  Unlike
  nginx's ``$proxy_add_x_forwarded_for`` (which Kong uses), an untrusted
  client's ``X-Forwarded-For`` is discarded, not appended to, so upstreams can
  trust the whole list.
* ``Via: 1.1 trio-gw`` is appended in both directions (RFC 9110 §7.6.3).
* ``strip`` names headers always removed (forwarded client-certificate headers
  from untrusted peers, ...).

The per-route parts (Host value) are computed once by the router; the rest is
per request but allocates one output list and no intermediate strings for the
common case (no ``Connection`` header, no incoming ``X-Forwarded-*``).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from trio_gw.errors import ConfigError, Problem
from trio_gw.http.routing import RequestFacts, RouteMatch

Header = tuple[bytes, bytes]

#: Fields that describe one connection, never forwarded (RFC 9110 §7.6.1, plus
#: the de-facto ``keep-alive`` and ``proxy-connection``).
HOP_BY_HOP: frozenset[bytes] = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"proxy-authenticate",
        b"proxy-authorization",
    }
)
#: Fields the gateway sets on the upstream request itself.
FORWARDING: frozenset[bytes] = frozenset(
    {
        b"host",
        b"x-forwarded-for",
        b"x-forwarded-proto",
        b"x-forwarded-host",
        b"x-forwarded-port",
        b"x-forwarded-path",
        b"x-forwarded-prefix",
        b"x-real-ip",
        b"via",
    }
)
#: Fields that ``Connection`` cannot remove (framing, and what the gateway sets).
PROTECTED: frozenset[bytes] = FORWARDING | {b"content-length"}
VIA = b"1.1 trio-gw"


@dataclass(frozen=True, slots=True)
class TrustedNetworks:
    """The peers whose forwarding headers are believed (Kong's ``trusted_ips``)."""

    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()

    @classmethod
    def parse(cls, values: Iterable[str], path: str = "trusted_ips") -> TrustedNetworks:
        """Parse CIDRs and single addresses (``10.0.0.0/8``, ``::1``, ``0.0.0.0/0``).

        Args:
            values: the configured entries.
            path: where they came from, for error messages.

        Returns:
            The networks.

        Raises:
            ConfigError: one problem per unusable entry, at ``path[i]``.
        """
        networks = []
        problems = []
        for i, value in enumerate(values):
            try:
                networks.append(ipaddress.ip_network(value.strip(), strict=False))
            except ValueError as exc:
                problems.append(Problem(f"{path}[{i}]", f"not an IP address or CIDR: {exc}"))
        if problems:
            raise ConfigError(problems)
        return cls(tuple(networks))

    def is_trusted(self, ip: str) -> bool:
        """Whether ``ip`` is in one of the networks.

        Args:
            ip: the peer address (IPv4, IPv6, IPv4-mapped IPv6; a zone suffix is
                ignored).

        Returns:
            ``True`` when trusted; ``False`` for anything unparsable.
        """
        if not self.networks:
            return False
        try:
            addr = ipaddress.ip_address(ip.partition("%")[0])
        except ValueError:
            return False
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        return any(addr in net for net in self.networks)


def connection_tokens(headers: Iterable[Header]) -> frozenset[bytes]:
    """The lowercase field names listed in all ``Connection`` headers.

    Args:
        headers: h11 headers.

    Returns:
        The names (``close``/``keep-alive`` included, harmlessly).
    """
    tokens: set[bytes] = set()
    for name, value in headers:
        if name == b"connection":
            tokens.update(t.strip().lower() for t in value.split(b","))
    tokens.discard(b"")
    return frozenset(tokens)


def websocket_requested(headers: Iterable[Header]) -> bool:
    """Whether a request asks to switch its connection to WebSocket (RFC 6455 §4.1).

    ``Upgrade`` names ``websocket`` (any case, among other protocols too) and
    ``Connection`` names ``upgrade``: the switch the gateway relays, as Kong's
    nginx template does (its ``$upstream_upgrade`` map passes only
    ``websocket``); other upgrades (``h2c``...) are dropped with the other
    hop-by-hop fields and the request is served as a plain one.
    """
    upgrade = b""
    for name, value in headers:
        if name == b"upgrade":
            upgrade += b"," + value
    if not upgrade:
        return False
    protocols = {token.strip().lower() for token in upgrade.split(b",")}
    return b"websocket" in protocols and b"upgrade" in connection_tokens(headers)


def upstream_request_headers(
    headers: Iterable[Header],
    match: RouteMatch,
    facts: RequestFacts,
    *,
    client_ip: str,
    server_port: int,
    trusted: bool | TrustedNetworks,
    strip: frozenset[bytes] = frozenset(),
    upgrade: bool = False,
) -> list[Header]:
    """Build the upstream request's headers from the client's.

    Args:
        headers: the client request's h11 headers.
        match: the route match (gives Host and the stripped prefix).
        facts: the request facts (host, path, protocol).
        client_ip: the peer address of the downstream connection.
        server_port: the port the gateway accepted the connection on.
        trusted: ``TrustedNetworks.is_trusted(client_ip)`` computed once per
            connection (cheapest), or the ``TrustedNetworks`` to ask now.
        strip: lowercase names always removed.
        upgrade: forward ``Upgrade`` with ``Connection: upgrade`` (the driver
            decided to relay a protocol switch such as WebSocket).

    Returns:
        The new header list, ``host`` first, without ``transfer-encoding``
        (the driver appends ``transfer-encoding: chunked`` for a chunked body).
    """
    if isinstance(trusted, TrustedNetworks):
        trusted = trusted.is_trusted(client_ip)
    out: list[Header] = [(b"host", match.upstream_host_header.encode("latin-1"))]
    incoming: dict[bytes, bytes] = {}
    tokens: frozenset[bytes] = frozenset()
    chunked = False
    upgrade_value = b""
    for name, value in headers:
        if name in HOP_BY_HOP:
            if name == b"connection":
                tokens = tokens | connection_tokens(((name, value),))
            elif name == b"transfer-encoding":
                chunked = True
            elif name == b"upgrade":
                upgrade_value = value
        elif name in FORWARDING:
            if name in incoming:
                incoming[name] += b", " + value
            else:
                incoming[name] = value
        elif name not in strip:
            out.append((name, value))
    if tokens or chunked:
        drop = (tokens - PROTECTED) | ({b"content-length"} if chunked else set())
        out = [h for h in out if h[0] not in drop]
    if upgrade and upgrade_value:
        out.append((b"connection", b"upgrade"))
        out.append((b"upgrade", upgrade_value))
    out.extend(_forwarding(incoming if trusted else {}, match, facts, client_ip, server_port))
    return out


def _forwarding(
    incoming: dict[bytes, bytes],
    match: RouteMatch,
    facts: RequestFacts,
    client_ip: str,
    server_port: int,
) -> list[Header]:
    ip = client_ip.encode("latin-1")
    xff = incoming.get(b"x-forwarded-for")
    via = incoming.get(b"via")
    prefix = incoming.get(b"x-forwarded-prefix")
    if prefix is None and match.stripped_prefix is not None:
        prefix = match.stripped_prefix.encode("latin-1")
    out = [
        (b"x-forwarded-for", xff + b", " + ip if xff else ip),
        (b"x-forwarded-proto", incoming.get(b"x-forwarded-proto") or facts.protocol.encode("latin-1")),
        (b"x-forwarded-host", incoming.get(b"x-forwarded-host") or facts.host.encode("latin-1")),
        (b"x-forwarded-port", incoming.get(b"x-forwarded-port") or str(server_port).encode("latin-1")),
        (b"x-forwarded-path", incoming.get(b"x-forwarded-path") or facts.path.encode("latin-1")),
        (b"x-real-ip", incoming.get(b"x-real-ip") or ip),
        (b"via", via + b", " + VIA if via else VIA),
    ]
    if prefix:
        out.insert(5, (b"x-forwarded-prefix", prefix))
    return out


def downstream_response_headers(
    headers: Sequence[Header],
    *,
    strip: frozenset[bytes] = frozenset(),
    upgrade: bool = False,
    via: bytes | None = VIA,
    no_content: bool = False,
) -> list[Header]:
    """Build the client response's headers from the upstream's.

    Args:
        headers: the upstream response's h11 headers.
        strip: lowercase names always removed.
        upgrade: keep ``Upgrade`` (with ``Connection: upgrade``) for a 101.
        via: the ``Via`` entry to append, or ``None`` for none.
        no_content: the status is 204: ``Content-Length`` is dropped too, as
            nginx drops it (RFC 9110 §8.6: a server MUST NOT send it with a 204;
            an upstream that does may be followed by bytes no client must read).

    Returns:
        The new header list (h11 frames the body: it keeps ``content-length``
        or chunks for HTTP/1.1 clients).
    """
    out: list[Header] = []
    tokens: frozenset[bytes] = frozenset()
    chunked = False
    upgrade_value = b""
    upstream_via = b""
    for name, value in headers:
        if name in HOP_BY_HOP:
            if name == b"connection":
                tokens = tokens | connection_tokens(((name, value),))
            elif name == b"transfer-encoding":
                chunked = True
            elif name == b"upgrade":
                upgrade_value = value
        elif name == b"via":
            upstream_via = upstream_via + b", " + value if upstream_via else value
        elif name not in strip:
            out.append((name, value))
    if tokens or chunked or no_content:
        drop = (tokens - {b"content-length"}) | ({b"content-length"} if chunked or no_content else set())
        out = [h for h in out if h[0] not in drop]
    if upgrade and upgrade_value:
        out.append((b"connection", b"upgrade"))
        out.append((b"upgrade", upgrade_value))
    if via is not None:
        out.append((b"via", upstream_via + b", " + via if upstream_via else via))
    elif upstream_via:
        out.append((b"via", upstream_via))
    return out
