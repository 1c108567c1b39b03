"""The TLS server side of a generation: listener contexts, certificate contexts, the SNI callback.

Theory of operation
-------------------
* One *listener context* per ALPN offer carries what OpenSSL only takes from
  the initial context (versions, options, ticket keys, verify mode).  A new
  generation reuses the previous one's listener contexts while the downstream
  policy and the client-certificate policy are unchanged, so session tickets
  survive ordinary configuration changes; when either policy changes they are
  replaced — new ticket keys, so no session resumed from an old ticket skips
  the new policy (docs/tls-stack.md §10).
* One *certificate context* per certificate entity and ALPN offer (RSA and
  ECDSA pair loaded together, so OpenSSL picks by the client's signature
  algorithms).  :class:`ServerTlsBuilder` builds them while a generation is
  built, off the event loop, cached by content so a reload reuses unchanged
  ones; beyond :data:`PREWARM_LIMIT` certificates, the rest are built on first
  use by the SNI callback on the event loop, into the generation's own lazy
  map (only the loop touches it; the builder receives a copy of it, taken on
  the loop, when the next generation is built).
* The listener context's SNI callback is the same for every generation: the
  connection carries the :class:`ServerContexts` of the generation current at
  accept (the :class:`~trio_gw.net.tls_stream.TlsStream`'s ``handshake_tag``,
  set by the listener before the handshake; the stream is the connection's
  owner, so the callback receives it).  The callback asks the pure
  :mod:`trio_gw.tls.sni` index of *that* generation which certificate to
  serve, swaps the stream's ``context``, and
  with no answer returns the ``unrecognized_name`` alert.
* Client certificates per host: the listener context asks (``CERT_OPTIONAL``)
  when any route needs a certificate; when the policy's pure
  :meth:`~trio_gw.tls.listener_client_auth.ListenerClientAuth.asks_for` says no
  route the client's SNI can reach needs one, the callback sets the
  connection's mode to ``SSL_VERIFY_NONE`` (:func:`set_verify_none`, nginx's
  per-server ``ssl_verify_client``): no CertificateRequest, no browser prompt.
  Where the shim cannot prove the connection's ``SSL*`` (checked once per
  process off the loop, and per call), every client is asked, as before.
* Shared session tickets: with :attr:`ServerTlsBuilder.ticket_keys` set, each
  listener context with tickets on encrypts them under the process's shared
  ring, scoped by the listener's policy (``tls/ticket_policy.py``), so a
  ticket resumes on every worker and node with the same policy, and on none
  once the policy changed.
* The ALPN list comes from the *swapped* context (docs/tls-stack.md §1), so each
  ALPN offer in use has its own listener and certificate contexts.
* OCSP stapling (``ssl_stapling``): every certificate context gets the status
  callback of :mod:`trio_gw.net.ocsp_stapling`, reading the answer its
  certificate's key files in the node's stapling cache (filled by the event
  loop's refresher only; the builder installs the reader, never writes).
  Under ``strict``/``must_staple`` the SNI callback also refuses a certificate
  the plan says must not be served (:meth:`~trio_gw.tls.stapling_plan.StaplingPlan.refusal`).
* ACME tls-alpn-01: with an ``acme`` plugin validating by ``tls-alpn-01``, the
  listener contexts carry the ClientHello probe (:mod:`trio_gw.net.acme_tls_alpn`)
  and the SNI callback first hands a validation handshake (ALPN ``acme-tls/1``)
  the challenge context the issuer published; every other client of the name
  keeps its certificate.  A name the ``acme`` plugin covers but no certificate
  serves is noted for the ACME task (Kong: issuance triggered by a request).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import ssl
import sys
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from trio_gw.errors import CertificateError
from trio_gw.http.facts import shared_text
from trio_gw.model.entities import Certificate
from trio_gw.net.acme_challenges import ChallengeStore
from trio_gw.net.acme_tls_alpn import install_alpn_probe
from trio_gw.net.contexts import ALPN_HTTP11, load_dh_params, load_pem_pair, new_server_context
from trio_gw.net.ocsp_stapling import install_plan
from trio_gw.net.openssl_shim import add_client_ca, connection_shim_available, set_verify_none
from trio_gw.net.ticket_keys import TicketKeys, install_ticket_keys
from trio_gw.net.tls_stream import TlsStream
from trio_gw.plugins.ocsp_cache import OcspCache
from trio_gw.snapshot import Snapshot
from trio_gw.tls.acme import wants_certificate
from trio_gw.tls.dhparams import key_may_use_dhe
from trio_gw.tls.session import ListenerPolicyKey, listener_context_change_reasons, needs_new_listener_context
from trio_gw.tls.sni import select_certificate
from trio_gw.tls.stapling import StaplingPolicy
from trio_gw.tls.ticket_policy import listener_scope

log = logging.getLogger("trio_gw.tls")

#: Certificate contexts built on first use and kept per generation; each costs ~20 KiB (docs/tls-stack.md §1).
LAZY_CONTEXT_LIMIT = 20_000
#: Certificate contexts built with the generation (~0.75 ms each, in a worker thread).
PREWARM_LIMIT = 2_000

Alpn = tuple[str, ...]
CertKey = tuple[str, Alpn]  # (certificate id, ALPN offer)


def _context_salt(snapshot: Snapshot) -> str:
    """What a certificate context depends on beyond its certificate: the trust store, the stapling plan, and
    the DH parameters (the swapped context's own serve the DHE suites; a reload may read a new file)."""
    dh = snapshot.downstream_tls.dh_params
    dh_key = hashlib.sha256(dh.pem).hexdigest() if dh is not None else "-"
    return f"{snapshot.client_auth.trust_key}|{snapshot.stapling.digest}|{dh_key}"


def _content_key(cert: Certificate, trust_key: str, alpn: Alpn) -> str:
    h = hashlib.sha256()
    for part in (cert.cert, cert.key, cert.cert_alt or "", cert.key_alt or "", trust_key, ",".join(alpn)):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()


class ServerContexts:
    """The server contexts of one generation (see the module docstring)."""

    def __init__(
        self,
        snapshot: Snapshot,
        listener: Mapping[Alpn, ssl.SSLContext],
        prebuilt: Mapping[CertKey, ssl.SSLContext],
        policy: ListenerPolicyKey,
        *,
        staples: OcspCache | None = None,
        challenges: ChallengeStore | None = None,
        alpn_probe: bool = False,
    ) -> None:
        self.snapshot = snapshot
        self.listener = listener
        self.prebuilt = prebuilt
        #: The policy the listener contexts carry (compared by the next build).
        self.policy = policy
        #: The node's stapling cache (``None``: stapling off); read by the status callbacks and the SNI callback.
        self.staples = staples if snapshot.stapling.enabled else None
        #: Refuse certificates in the SNI callback (``strict``/``must_staple``).
        self.strict_stapling = self.staples is not None and snapshot.stapling.policy is not StaplingPolicy.LENIENT
        #: Published tls-alpn-01 answers (``None``: not validating by tls-alpn-01).
        self.challenges = challenges if alpn_probe else None
        #: Whether the listener contexts carry the ClientHello probe (compared by the next build).
        self.alpn_probe = alpn_probe
        #: Names to issue a certificate for (``None``: no ACME).
        self.acme_demand = challenges if snapshot.acme is not None else None
        self._lazy: OrderedDict[CertKey, ssl.SSLContext] = OrderedDict()

    def listener_context(self, alpn: Alpn) -> ssl.SSLContext:
        """The listener context offering ``alpn``."""
        return self.listener[alpn]

    def certificate_context(self, cert: Certificate, alpn: Alpn) -> ssl.SSLContext:
        """The context serving ``cert`` with ALPN offer ``alpn`` (on the loop: built on first use past the prewarm).

        Raises:
            CertificateError: the certificate cannot be loaded by OpenSSL.
        """
        key = (cert.id, alpn)
        ctx = self.prebuilt.get(key)
        if ctx is not None:
            return ctx
        ctx = self._lazy.get(key)
        if ctx is not None:
            self._lazy.move_to_end(key)
            return ctx
        ctx = certificate_context(self.snapshot, cert, alpn, self.staples)
        self._lazy[key] = ctx
        if len(self._lazy) > LAZY_CONTEXT_LIMIT:
            self._lazy.popitem(last=False)
        return ctx

    def lazy_contexts(self) -> dict[CertKey, ssl.SSLContext]:
        """A copy of the contexts built on first use (call on the loop; hand it to the next build)."""
        return dict(self._lazy)

    def staple_refusal(self, certificate_id: str) -> str | None:
        """Why ``strict``/``must_staple`` forbids serving the certificate now, or ``None`` (on the loop)."""
        if self.staples is None:
            return None
        return self.snapshot.stapling.refusal(certificate_id, self.staples.current, now=time.time())


def certificate_context(
    snapshot: Snapshot, cert: Certificate, alpn: Alpn, staples: OcspCache | None = None
) -> ssl.SSLContext:
    """Build the context serving ``cert`` (slow: ~0.75 ms), with its OCSP status callback when stapling.

    Raises:
        CertificateError: the certificate or key cannot be loaded.
    """
    ctx = _new_context(snapshot, alpn, dh_params=False)
    load_pem_pair(ctx, cert.cert, cert.key)
    if cert.cert_alt and cert.key_alt:
        load_pem_pair(ctx, cert.cert_alt, cert.key_alt)
    if key_may_use_dhe(cert.key) or (cert.key_alt is not None and key_may_use_dhe(cert.key_alt)):
        load_dh_params(ctx, snapshot.downstream_tls)  # an ECDSA-only context can never serve DHE-RSA
    if staples is not None and snapshot.stapling.enabled:
        install_plan(ctx, snapshot.stapling, cert.id, staples)
    return ctx


def _new_context(snapshot: Snapshot, alpn: Alpn, *, dh_params: bool = True) -> ssl.SSLContext:
    ctx = new_server_context(snapshot.downstream_tls, alpn=alpn, dh_params=dh_params)
    auth = snapshot.client_auth
    if auth.request_certificate and auth.anchors_pem:
        # The swapped (per-certificate) context supplies the trust store and the
        # announced CA names (docs/tls-stack.md §1, §3).
        ctx.load_verify_locations(cadata=auth.anchors_pem)
        for pem in auth.announce_pem:
            add_client_ca(ctx, ssl.PEM_cert_to_DER_cert(pem))
    return ctx


class ServerTlsBuilder:
    """Builds each generation's :class:`ServerContexts`, reusing what the previous one compiled.

    Used from the generation builder's worker thread only (builds are serialised).

    Args:
        alpn_offers: the ALPN lists the node's ssl listeners offer (one context family each).
    """

    def __init__(
        self, alpn_offers: Iterable[Alpn] = (ALPN_HTTP11,), *, staples: OcspCache | None = None,
        challenges: ChallengeStore | None = None,
    ) -> None:
        self.offers: tuple[Alpn, ...] = tuple(dict.fromkeys(alpn_offers)) or (ALPN_HTTP11,)
        #: The node's stapling cache: only read here (the status callbacks close over it).
        self.staples = staples
        #: Where the ACME issuer publishes tls-alpn-01 answers (``None``: no ACME on this node).
        self.challenges = challenges
        self._by_content: dict[str, ssl.SSLContext] = {}
        self._shim_checked = False
        #: The process's shared session-ticket keys, installed on every listener context with tickets on
        #: (scoped by its policy); ``None``: OpenSSL's own keys per context.
        self.ticket_keys: TicketKeys | None = None

    def build(
        self, snapshot: Snapshot, previous: ServerContexts | None,
        lazy: Mapping[CertKey, ssl.SSLContext] = {},
    ) -> ServerContexts:
        """The server contexts of a new generation (blocking).

        Args:
            snapshot: the new generation's snapshot.
            previous: the current generation's contexts (their listener contexts are
                reused when the policy is unchanged).
            lazy: the current generation's contexts built on first use (a copy).

        Raises:
            CertificateError: a certificate cannot be loaded.
        """
        auth = snapshot.client_auth
        policy = snapshot.downstream_tls.listener_key(requests_client_cert=auth.request_certificate,
                                                      client_auth_generation=auth.generation)
        old = previous.policy if previous is not None else None
        probe = self._wants_alpn_probe(snapshot)
        if previous is not None and not needs_new_listener_context(old, policy) and (
                previous.alpn_probe or not probe):
            listener = previous.listener
            probe = previous.alpn_probe
        else:
            if previous is not None:
                reasons = listener_context_change_reasons(old, policy) or ["ACME tls-alpn-01 validation"]
                log.info("listener TLS contexts replaced (%s): sessions resumed from earlier tickets do a full "
                         "handshake", ", ".join(reasons))
            self._check_shim(snapshot)
            # A changed policy gets new listener contexts: new ticket keys, so no
            # session resumed from an old ticket skips the new policy (docs/tls-stack.md §10).
            listener = {alpn: self._listener_context(snapshot, alpn, policy) for alpn in self.offers}
            probe = probe and all(install_alpn_probe(ctx) for ctx in listener.values())
            if self._wants_alpn_probe(snapshot) and not probe:
                log.warning("ACME tls-alpn-01 validations cannot be answered: this Python's ssl module cannot "
                            "be extended safely (use challenge: http-01)")
        reusable = dict(self._by_content)
        if previous is not None:
            previous_salt = _context_salt(previous.snapshot)  # once: it hashes the DH parameters
            for (cid, alpn), ctx in lazy.items():
                served = previous.snapshot.certificates.get(cid)
                if served is not None:
                    reusable.setdefault(_content_key(served, previous_salt, alpn), ctx)
        trust = _context_salt(snapshot)
        prebuilt: dict[CertKey, ssl.SSLContext] = {}
        by_content: dict[str, ssl.SSLContext] = {}
        for i, cert in enumerate(snapshot.certificates.values()):
            if i >= PREWARM_LIMIT and cert.id not in snapshot.default_certificate_ids:
                continue  # built on first use by the SNI callback
            for alpn in self.offers:
                key = _content_key(cert, trust, alpn)
                ctx = reusable.get(key) or certificate_context(snapshot, cert, alpn, self.staples)
                prebuilt[(cert.id, alpn)] = by_content[key] = ctx
        self._by_content = by_content  # contexts no certificate uses any more are released
        return ServerContexts(snapshot, listener, prebuilt, policy, staples=self.staples,
                              challenges=self.challenges, alpn_probe=probe)

    def _wants_alpn_probe(self, snapshot: Snapshot) -> bool:
        acme = snapshot.acme
        return self.challenges is not None and acme is not None and acme.challenge == "tls-alpn-01"

    def _check_shim(self, snapshot: Snapshot) -> None:
        auth = snapshot.client_auth
        # The layout proof runs here, off the loop, not in the first handshake.
        if auth.request_certificate and auth.certificate_hosts is not None and not self._shim_checked:
            self._shim_checked = True
            if not connection_shim_available():
                log.warning("the ssl module's layout cannot be proven for SSL_set_verify: every TLS client is "
                            "asked for a certificate, not only those of hosts whose routes need one")

    def _listener_context(self, snapshot: Snapshot, alpn: Alpn, policy: ListenerPolicyKey) -> ssl.SSLContext:
        ctx = _new_context(snapshot, alpn)
        auth = snapshot.client_auth
        if auth.request_certificate:
            ctx.verify_mode = ssl.CERT_REQUIRED if auth.require_certificate else ssl.CERT_OPTIONAL
            if auth.partial_chain:
                ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
        ctx.sni_callback = functools.partial(sni_callback, alpn)
        if self.ticket_keys is not None and snapshot.downstream_tls.session.tickets:
            # Every worker and node derives the same keys for the same policy (tls/ticket_policy.py).
            install_ticket_keys(ctx, self.ticket_keys, scope=listener_scope(policy))
        return ctx


def sni_callback(alpn: Alpn, conn: TlsStream, server_name: str | None, initial: ssl.SSLContext) -> int | None:
    """Pick the certificate for ``server_name`` from the connection's generation (synchronous, every handshake).

    ``conn`` is the connection's stream (its owner: OpenSSL's callbacks receive it).
    Never raises (an exception here would end the handshake with ``internal_error``
    and a traceback on stderr): a bug is logged and refused with an alert.

    Returns:
        ``None`` to go on, or the TLS alert to send.
    """
    try:
        return _select(alpn, conn, server_name, initial)
    except Exception:
        log.exception("the SNI callback failed for server name %r", server_name)
        conn.refusal = "internal_error"
        return ssl.ALERT_DESCRIPTION_INTERNAL_ERROR


def _select(alpn: Alpn, conn: TlsStream, server_name: str | None, initial: ssl.SSLContext) -> int | None:
    tls: ServerContexts = conn.handshake_tag
    snapshot = tls.snapshot
    conn.sni = shared_text(server_name)  # kept as long as the connection
    if tls.challenges is not None:
        challenge = tls.challenges.select_context(conn, server_name)
        if challenge is not None:  # an ACME tls-alpn-01 validation (ALPN acme-tls/1 offered)
            conn.context = challenge
            return None
    selection = select_certificate(snapshot.sni_index, server_name)
    cert = snapshot.certificates.get(selection.certificate_id) if selection is not None else None
    if tls.acme_demand is not None and server_name and (selection is None or selection.matched is None):
        acme = snapshot.acme
        if acme is not None and wants_certificate(acme, server_name):
            tls.acme_demand.want_certificate(server_name)  # issued in the background; served from then on
    if cert is None:
        # OpenSSL reports only CALLBACK_FAILED to the server: say why for the logs and metrics
        conn.refusal = "unrecognized_name"
        return ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME
    if tls.strict_stapling:
        refusal = tls.staple_refusal(cert.id)
        if refusal is not None:  # Envoy's strict stapling: never serve a revoked or unknown certificate
            conn.refusal = f"ocsp_{refusal}"
            return ssl.ALERT_DESCRIPTION_HANDSHAKE_FAILURE
    try:
        conn.context = tls.certificate_context(cert, alpn)
    except CertificateError as exc:
        log.error("certificate %s cannot be served: %s", cert.id, exc)
        conn.refusal = "certificate_unusable"
        return ssl.ALERT_DESCRIPTION_INTERNAL_ERROR
    auth = snapshot.client_auth
    if auth.request_certificate and not auth.asks_for(server_name):
        # No route this SNI can reach needs a certificate: do not ask (no
        # browser prompt).  If the shim declines, the listener's mode stands.
        set_verify_none(conn, initial)
    return None


class ServerNameGuard:
    """Turns the traceback of a non-ASCII TLS server name into one log line per interval.

    CPython decodes the server name as ASCII before the SNI callback runs; a
    client sending UTF-8 (RFC 6066 wants A-labels, ``xn--``) makes that decoding
    fail, the handshake ends with ``internal_error``, and the default
    ``sys.unraisablehook`` prints a traceback for every such handshake — a scan
    could flood stderr.  :meth:`install` wraps the hook: exactly that case is
    counted and logged at most once per ``interval``; everything else goes to
    the previous hook.
    """

    def __init__(self, interval: float = 60.0) -> None:
        self.interval = interval
        self.refused = 0
        self._since_log = 0
        self._last_log = -math.inf
        self._previous: Callable[[Any], object] | None = None

    def install(self) -> None:
        if self._previous is None:
            self._previous = sys.unraisablehook
            sys.unraisablehook = self._hook

    def uninstall(self) -> None:
        if self._previous is not None:
            sys.unraisablehook = self._previous
            self._previous = None

    def _hook(self, unraisable: Any) -> None:
        if isinstance(unraisable.exc_value, UnicodeDecodeError) and isinstance(unraisable.object, bytes):
            self.refused += 1
            self._since_log += 1
            now = time.monotonic()
            if now - self._last_log >= self.interval:
                log.warning("refused %d TLS handshake(s) whose server name is not ASCII (%r ...): a server name "
                            "must be sent as A-labels (xn--)", self._since_log, unraisable.object[:64])
                self._last_log, self._since_log = now, 0
            return
        assert self._previous is not None
        self._previous(unraisable)
