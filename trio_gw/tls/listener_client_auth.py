"""What a TLS listener asks of clients in the handshake (pure).

Theory of operation
-------------------
OpenSSL takes ``verify_mode``, verify flags and ticket keys from the listener's
*initial* context only, and the trust store from the context the SNI callback
swaps in (docs/tls-stack.md §1).  Per-route client-certificate policy therefore
cannot live in the handshake.  The rule (docs/architecture.md): when any route needs a
client certificate, the listener context asks for one with ``CERT_OPTIONAL``
and every certificate context trusts the *union* of the anchors those routes
name (plus allowlisted leaves, which need ``VERIFY_X509_PARTIAL_CHAIN``); each
route then checks the presented leaf against its own policy on every request.
When nothing needs a certificate, nothing is asked, so browsers are never
prompted.

Which hosts are asked.  The one thing a connection may still change in the SNI
callback, before the CertificateRequest is sent, is its own verify mode
(``SSL_set_verify``, as nginx does for a per-server ``ssl_verify_client``; the
IO layer does it through :mod:`trio_gw.net.openssl_shim`).  So the policy also
records :attr:`ListenerClientAuth.certificate_hosts`, the host patterns of the
routes that need a certificate (Kong's ``hosts`` forms: exact,
``*.example.com``, ``example.*``; a route's ``snis`` when it lists some), or
``None`` — *every host* — when such a route has neither (it matches any Host).
:meth:`ListenerClientAuth.asks_for` decides per handshake: a client whose SNI
cannot reach such a route is not asked.  It is asked when there is no SNI (an
IP address was dialled: the Host header could name anything), and always under
``ssl_verify_client optional``/``on``.  Patterns match as the router matches
Host headers (:class:`trio_gw.model.hosts.HostPattern`: case-insensitive,
a trailing dot ignored, ``*.example.com`` covering any labels before
``.example.com``, ports ignored — asking on every port is the safe side).

Not asking grants nothing: under ``CERT_OPTIONAL`` any client may already
decline to send a certificate, and every route needing one then answers as it
does for a declined request (401 ``no_cert``, or ``mtls-auth``'s ``anonymous``
consumer).  A client that does reach such a route with another SNI — a
connection reused for a second host — gets 421 ``sni_host_mismatch`` from
``mtls-auth`` and ``mtls-allowlist`` (Host must equal SNI), and a browser then
retries on a connection of its own, which is asked.  If the IO layer cannot
change the verify mode safely (the shim's layout check fails), every handshake
is asked, as before.

``generation`` digests everything that decides which certificates the handshake
accepts and which handshakes are asked for one; when it changes the listener
context is replaced, which also invalidates every outstanding session ticket —
a resumed session can never carry a client past a changed allowlist (notes
§10).

The node may also ask for client certificates on its own, with a server-level
truststore (nginx ``ssl_verify_client`` / ``ssl_client_certificate``, Gravitee
``http.ssl.clientAuth`` + truststore): :func:`with_server_verification`.
``optional`` asks every client (``CERT_OPTIONAL``); ``on`` requires a
certificate in every handshake (``CERT_REQUIRED``: without one, TLS 1.3 ends
with the ``certificate_required`` alert, TLS 1.2 with ``handshake_failure``).
Either way the handshake trusts the union of the server truststore and the
routes' anchors, and each route still applies its own plugins on every
request: a certificate the server truststore admits is refused by an
``mtls-auth`` route whose CAs did not issue it (401 ``unknown_ca``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field

from trio_gw.model.hosts import parse_host_pattern


@dataclass(frozen=True)
class ListenerClientAuth:
    """The handshake side of client-certificate authentication for every TLS listener."""

    request_certificate: bool = False
    #: Every handshake must carry a trusted certificate (``ssl_verify_client on``).
    require_certificate: bool = False
    anchors_pem: str = ""
    partial_chain: bool = False
    generation: str = ""
    #: CA certificates whose names are announced in the CertificateRequest
    #: (Kong's ``send_ca_dn``; Python's ssl announces none by default).
    announce_pem: tuple[str, ...] = ()
    #: Host patterns whose routes need a certificate, canonical (lowercase, no
    #: port, no trailing dot: ``api.example``, ``*.example.com``, ``example.*``);
    #: ``None``: every host is asked.  See :meth:`asks_for`.
    certificate_hosts: frozenset[str] | None = None
    # Derived from certificate_hosts for asks_for: the router's buckets (exact
    # names, ``.example.com`` suffixes, ``example.`` prefixes).
    _exact: frozenset[str] = field(init=False, repr=False, compare=False, default=frozenset())
    _suffixes: frozenset[str] = field(init=False, repr=False, compare=False, default=frozenset())
    _prefixes: frozenset[str] = field(init=False, repr=False, compare=False, default=frozenset())
    #: What a per-certificate context takes from this policy (the trust store and
    #: the announced CA names), digested: certificate contexts are keyed on it, not
    #: on ``generation``, so changing which hosts are asked replaces the listener
    #: contexts (new ticket keys) without rebuilding every certificate's context.
    trust_key: str = field(init=False, repr=False, compare=False, default="")

    def __post_init__(self) -> None:
        trust = f"{self.request_certificate}\0{self.anchors_pem}\0{''.join(self.announce_pem)}"
        object.__setattr__(self, "trust_key", hashlib.sha256(trust.encode()).hexdigest())
        hosts = self.certificate_hosts or ()
        object.__setattr__(self, "_exact", frozenset(h for h in hosts if not _is_wildcard(h)))
        object.__setattr__(self, "_suffixes", frozenset(h[1:] for h in hosts if h.startswith("*.")))
        object.__setattr__(self, "_prefixes", frozenset(h[:-1] for h in hosts if h.endswith(".*")))

    @classmethod
    def build(
        cls, anchors_pem: Iterable[str], *, partial_chain: bool, announce_pem: Iterable[str] = (),
        require_certificate: bool = False, hosts: Iterable[str] | None = None,
    ) -> ListenerClientAuth:
        """Ask for certificates trusted by ``anchors_pem`` (deduplicated, order-independent).

        Args:
            anchors_pem: PEM certificates the handshake trusts.
            partial_chain: set ``VERIFY_X509_PARTIAL_CHAIN``.
            announce_pem: CA certificates whose names the CertificateRequest announces.
            require_certificate: refuse handshakes without a certificate (then
                every host is asked, whatever ``hosts`` says).
            hosts: the host patterns of the routes needing a certificate, as
                routes' ``hosts`` write them (ports are dropped); ``None``:
                every host.

        Raises:
            ConfigError: a host pattern the router would refuse.
        """
        unique = sorted({p.strip() + "\n" for p in anchors_pem if p.strip()})
        announce = tuple(sorted({p.strip() + "\n" for p in announce_pem if p.strip()}))
        patterns = None if hosts is None or require_certificate else frozenset(map(canonical_host_pattern, hosts))
        text = "".join(unique)
        asked = "*every host*" if patterns is None else "\n".join(sorted(patterns))
        digest = hashlib.sha256(
            f"{partial_chain}\0{require_certificate}\0{text}\0{''.join(announce)}\0{asked}".encode()
        ).hexdigest()
        return cls(request_certificate=True, require_certificate=require_certificate, anchors_pem=text,
                   partial_chain=partial_chain, generation=digest, announce_pem=announce,
                   certificate_hosts=patterns)

    def asks_for(self, sni: str | None) -> bool:
        """Tell whether a handshake with this server name is asked for a certificate.

        Args:
            sni: the TLS server name the client sent (``None``: none sent).

        Returns:
            False when the listener asks for nothing; True when a certificate
            is required or every host is asked (``certificate_hosts`` is
            ``None``: ``ssl_verify_client``, a host-less route),
            when there is no SNI, or when the SNI matches a pattern the way the
            router matches a Host header; False otherwise.  Cheap: set lookups,
            one per dot of the name.
        """
        if not self.request_certificate:
            return False
        if self.require_certificate or self.certificate_hosts is None or not sni:
            return True
        host = sni.lower()
        if host.endswith(".") and len(host) > 1:
            host = host[:-1]
        if host in self._exact:
            return True
        suffixes, prefixes = self._suffixes, self._prefixes
        if suffixes or prefixes:
            # The walk of trio_gw.http.routing.Router._buckets: ".example.com"
            # keys need a non-empty label before them, "example." keys something after.
            dot = host.find(".", 1)
            while dot > 0:
                if host[dot:] in suffixes or (dot + 1 < len(host) and host[: dot + 1] in prefixes):
                    return True
                dot = host.find(".", dot + 1)
        return False


def canonical_host_pattern(text: str) -> str:
    """The canonical form of a route ``hosts`` entry, without its port.

    Args:
        text: ``Api.Example.``, ``*.example.com:8443``, ``example.*``...

    Returns:
        ``api.example``, ``*.example.com``, ``example.*``.

    Raises:
        ConfigError: not a form the router accepts.
    """
    pattern = parse_host_pattern(text)
    if pattern.kind == "suffix":
        return "*" + pattern.name
    if pattern.kind == "prefix":
        return pattern.name + "*"
    return pattern.name


def _is_wildcard(pattern: str) -> bool:
    return pattern.startswith("*.") or pattern.endswith(".*")


#: No route needs a client certificate: the handshake asks for none.
NO_CLIENT_AUTH = ListenerClientAuth()


#: Values of ``ssl_verify_client`` (nginx's names).
VERIFY_CLIENT_MODES = ("off", "optional", "on")


def with_server_verification(
    routes: ListenerClientAuth, mode: str, truststore_pem: Iterable[str]
) -> ListenerClientAuth:
    """Combine what the routes need with the node's ``ssl_verify_client`` / ``ssl_client_certificate``.

    Args:
        routes: what the routes' plugins need (``client_cert_requirements``).
        mode: ``off`` (only the routes decide), ``optional`` (ask every client)
            or ``on`` (require a certificate in every handshake).
        truststore_pem: the server truststore: PEM CA certificates, one per item.

    Returns:
        The listener policy: the union of the routes' anchors and the
        truststore, with the routes' partial-chain flag and CA announcements,
        asking on every host.
        With ``off`` the routes' policy unchanged (the truststore is not used).

    Raises:
        ValueError: an unknown ``mode``.
    """
    if mode not in VERIFY_CLIENT_MODES:
        raise ValueError(f"ssl_verify_client: expected one of {', '.join(VERIFY_CLIENT_MODES)}, got {mode!r}")
    if mode == "off":
        return routes
    anchors = [*_split_pem(routes.anchors_pem), *truststore_pem]
    # The node asks every client, whatever host the routes needing a certificate serve.
    return ListenerClientAuth.build(anchors, partial_chain=routes.partial_chain, announce_pem=routes.announce_pem,
                                    require_certificate=mode == "on", hosts=None)


def _split_pem(text: str) -> list[str]:
    end = "-----END CERTIFICATE-----"
    return [block + end for block in text.split(end) if block.strip()]
