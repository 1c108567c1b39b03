"""The TLS server side: listener contexts and the SNI callback.

Theory of operation
-------------------
* One *listener context* per TLS listener carries what OpenSSL only takes from
  the initial context (versions, options, ticket keys, verify mode).  It is
  rebuilt — and so every outstanding session ticket invalidated — whenever the
  downstream policy changes (tls-stack-notes §10).
* One *certificate context* per certificate entity (RSA and ECDSA pair loaded
  together, so OpenSSL picks by the client's signature algorithms) is built
  lazily on first use and cached by content; a reload reuses unchanged ones.
* The SNI callback only asks the snapshot's pure :mod:`trio_gw.tls.sni` index
  which certificate to serve and swaps ``ssl_object.context``; with no answer it
  returns the ``unrecognized_name`` alert.
* Client certificates per host: the listener context asks (``CERT_OPTIONAL``)
  when any route needs a certificate, but the verify mode is the one thing a
  connection can still change in the SNI callback.  When the policy's pure
  :meth:`~trio_gw.tls.listener_client_auth.ListenerClientAuth.asks_for` says
  no route the client's SNI can reach needs one, the callback sets the
  connection's mode to ``SSL_VERIFY_NONE`` (:func:`trio_gw.net.openssl_shim.set_verify_none`,
  nginx's per-server ``ssl_verify_client``): no CertificateRequest, no browser
  prompt.  A set lookup and a few ctypes calls per handshake.  Where the shim
  cannot prove the connection's ``SSL*`` (checked once per process off the
  loop, and per call), nothing changes and every client is asked, as before.
* The ALPN list comes from the *swapped* context (tls-stack-notes §1), so every
  ALPN offer in use (``http/1.1`` alone, or ``h2, http/1.1`` on listeners with
  the ``http2`` flag) has its own listener context and its own certificate
  contexts, and each listener context's SNI callback swaps in contexts of its
  own offer.  A node with only one kind of ssl listener builds one family.
"""

from __future__ import annotations

import hashlib
import logging
import ssl
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from trio_gw.errors import CertificateError
from trio_gw.model.entities import Certificate
from trio_gw.net.contexts import ALPN_HTTP11, load_pem_pair, new_server_context
from trio_gw.net.openssl_shim import add_client_ca, connection_shim_available, set_verify_none
from trio_gw.tls.sni import select_certificate

if TYPE_CHECKING:
    from trio_gw.snapshot import Snapshot

log = logging.getLogger("trio_gw.tls")

#: Certificate contexts kept warm; each costs ~20 KiB (notes §1).
CERT_CONTEXT_CACHE_SIZE = 20_000
#: Contexts built ahead of time when a snapshot is installed (~0.75 ms each, in a thread).
PREWARM_LIMIT = 2_000


def _content_key(cert: Certificate) -> str:
    h = hashlib.sha256()
    for part in (cert.cert, cert.key, cert.cert_alt or "", cert.key_alt or ""):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()


Alpn = tuple[str, ...]


class ServerTls:
    """Listener contexts and per-certificate contexts for one snapshot generation.

    Args:
        alpn_offers: the ALPN lists the node's ssl listeners offer (one context
            family each); the first is the default of :meth:`listener_context`.
    """

    def __init__(self, alpn_offers: Iterable[Alpn] = (ALPN_HTTP11,)) -> None:
        self._offers: tuple[Alpn, ...] = tuple(dict.fromkeys(alpn_offers)) or (ALPN_HTTP11,)
        self._snapshot: Snapshot | None = None
        self._listener_ctx: dict[Alpn, ssl.SSLContext] = {}
        self._policy_key: object = None
        self._cache: OrderedDict[str, ssl.SSLContext] = OrderedDict()

    # --- called off the event loop when a snapshot is installed -----------------

    def prepare(self, snapshot: Snapshot) -> None:
        """Build what ``snapshot`` needs before it goes live (runs in a worker thread).

        Raises:
            CertificateError: a default certificate cannot be loaded.
        """
        policy = (snapshot.downstream_tls, snapshot.client_auth)
        listener_ctx = self._listener_ctx
        if not listener_ctx or policy != self._policy_key:
            auth = snapshot.client_auth
            # The layout proof runs here, off the loop, not in the first handshake.
            if auth.request_certificate and auth.certificate_hosts is not None and not connection_shim_available():
                log.warning("the ssl module's layout cannot be proven for SSL_set_verify: every TLS client is "
                            "asked for a certificate, not only those of hosts whose routes need one")
            # A changed policy gets new listener contexts: new ticket keys, so no
            # session resumed from an old ticket skips the new policy (notes §10).
            listener_ctx = {alpn: self._new_listener_context(snapshot, alpn) for alpn in self._offers}
        # Warm the cache off the loop so first handshakes do not build contexts
        # inside the (synchronous) SNI callback; beyond the limit, build on first use.
        for i, cert in enumerate(snapshot.certificates.values()):
            if i >= PREWARM_LIMIT and cert.id not in snapshot.default_certificate_ids:
                continue
            for alpn in self._offers:
                self.context_for(cert, snapshot, alpn)
        self._pending = (snapshot, listener_ctx, policy)

    def activate(self) -> None:
        """Make the prepared snapshot live (one reference swap each; runs on the loop)."""
        snapshot, listener_ctx, policy = self._pending
        self._snapshot, self._listener_ctx, self._policy_key = snapshot, listener_ctx, policy

    def listener_context(self, alpn: Alpn | None = None) -> ssl.SSLContext:
        """The listener context offering ``alpn`` (default: the first offer)."""
        assert self._listener_ctx, "ServerTls used before a snapshot was activated"
        return self._listener_ctx[alpn or self._offers[0]]

    def source(self, alpn: Alpn) -> _ListenerSource:
        """What a listener offering ``alpn`` wraps its connections with (``server.ContextSource``).

        Raises:
            ValueError: ``alpn`` is not one of the offers given at construction.
        """
        if alpn not in self._offers:
            raise ValueError(f"ALPN offer {alpn!r} was not prepared (offers: {self._offers!r})")
        return _ListenerSource(self, alpn)

    # --- contexts ---------------------------------------------------------------

    def _new_listener_context(self, snapshot: Snapshot, alpn: Alpn) -> ssl.SSLContext:
        ctx = self._new_context(snapshot, alpn)
        auth = snapshot.client_auth
        if auth.request_certificate:
            ctx.verify_mode = ssl.CERT_REQUIRED if auth.require_certificate else ssl.CERT_OPTIONAL
            if auth.partial_chain:
                ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
        ctx.sni_callback = self._sni_callback_for(alpn)
        return ctx

    def _new_context(self, snapshot: Snapshot, alpn: Alpn) -> ssl.SSLContext:
        ctx = new_server_context(snapshot.downstream_tls, alpn=alpn)
        auth = snapshot.client_auth
        if auth.request_certificate and auth.anchors_pem:
            # The swapped (per-certificate) context supplies the trust store and the
            # announced CA names (notes §1, §3).
            ctx.load_verify_locations(cadata=auth.anchors_pem)
            for pem in auth.announce_pem:
                add_client_ca(ctx, ssl.PEM_cert_to_DER_cert(pem))
        return ctx

    def context_for(self, cert: Certificate, snapshot: Snapshot, alpn: Alpn = ALPN_HTTP11) -> ssl.SSLContext:
        """The cached context serving ``cert`` with ALPN offer ``alpn``, built on first use."""
        key = _content_key(cert) + snapshot.client_auth.trust_key + ",".join(alpn)
        ctx = self._cache.get(key)
        if ctx is not None:
            self._cache.move_to_end(key)
            return ctx
        ctx = self._new_context(snapshot, alpn)
        load_pem_pair(ctx, cert.cert, cert.key)
        if cert.cert_alt and cert.key_alt:
            load_pem_pair(ctx, cert.cert_alt, cert.key_alt)
        self._cache[key] = ctx
        if len(self._cache) > CERT_CONTEXT_CACHE_SIZE:
            self._cache.popitem(last=False)
        return ctx

    # --- the SNI callback (synchronous, on the event loop, every handshake) -----

    def _sni_callback_for(self, alpn: Alpn) -> Callable[[Any, str | None, ssl.SSLContext], int | None]:
        def callback(sslobj: Any, server_name: str | None, initial: ssl.SSLContext) -> int | None:
            return self._sni_callback(sslobj, server_name, alpn, initial)

        return callback

    def _sni_callback(self, sslobj: Any, server_name: str | None, alpn: Alpn, initial: ssl.SSLContext) -> int | None:
        snapshot = self._snapshot
        assert snapshot is not None
        sslobj.trio_gw_sni = server_name
        selection = select_certificate(snapshot.sni_index, server_name)
        if selection is None:
            return ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME
        cert = snapshot.certificates.get(selection.certificate_id)
        if cert is None:
            return ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME
        try:
            sslobj.context = self.context_for(cert, snapshot, alpn)
        except CertificateError as exc:
            log.error("certificate %s cannot be served: %s", cert.id, exc)
            return ssl.ALERT_DESCRIPTION_INTERNAL_ERROR
        sslobj.trio_gw_certificate = selection
        auth = snapshot.client_auth
        if auth.request_certificate and not auth.asks_for(server_name):
            # No route this SNI can reach needs a certificate: do not ask (no
            # browser prompt).  If the shim declines, the listener's mode stands.
            set_verify_none(sslobj, initial)
        return None


class _ListenerSource:
    """One ALPN family of a :class:`ServerTls`, as a listener's context source."""

    __slots__ = ("tls", "alpn")

    def __init__(self, tls: ServerTls, alpn: Alpn) -> None:
        self.tls = tls
        self.alpn = alpn

    def listener_context(self) -> ssl.SSLContext:
        return self.tls.listener_context(self.alpn)
