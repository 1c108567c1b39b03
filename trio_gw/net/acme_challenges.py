"""Where ACME challenge answers wait for the CA: published by the issuer thread, read by listeners.

Theory of operation
-------------------
:class:`~trio_gw.net.acme_client.AcmeIssuer` runs in a worker thread and
publishes, for the seconds a validation lasts, what the CA will ask for:

* http-01: token -> key authorization; the plain-HTTP proxy listener answers
  ``GET /.well-known/acme-challenge/<token>`` with :meth:`ChallengeStore.http01_response`
  before routing;
* tls-alpn-01: name -> a server context holding the RFC 8737 certificate,
  ALPN ``acme-tls/1`` only; the SNI callback swaps it in through
  :meth:`ChallengeStore.select_context` only when the handshake offered
  ``acme-tls/1`` (:mod:`trio_gw.net.acme_tls_alpn`), so ordinary clients of
  the name keep getting its real certificate during a renewal.

Writers hold a lock and replace whole dicts; readers (the event loop, the SNI
callback) take one reference without locking, so they always see a complete
mapping.  Contexts are built by the writer, off the event loop.

In a cluster the CA's validation may reach any node (one load balancer in
front of them all), so answers are shared through the datastore, as Kong's
``kong`` storage shares them: with a :class:`ChallengeShare`, every publish
is also written there (and the issuer then waits
:attr:`ChallengeShare.propagation_delay` before asking the CA to validate),
every withdrawal deleted; each node's ACME task mirrors what the datastore
holds into its own store (:meth:`ChallengeStore.mirror`, off the loop: a
tls-alpn-01 answer needs a context built).

The SNI callback also notes names the ``acme`` plugin covers but no
certificate serves yet (:meth:`ChallengeStore.want_certificate`, bounded by
:data:`MAX_WANTED`); the node's ACME task takes them
(:meth:`ChallengeStore.take_wanted`) and issues in the background -- Kong's
"trigger asynchronous creation from proxy requests".  Both run on the event loop.
"""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Final, Protocol

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from trio_gw.net.acme_tls_alpn import offers_acme_tls
from trio_gw.net.contexts import load_pem_pair
from trio_gw.tls.acme import ACME_TLS_ALPN, build_tls_alpn01_certificate, http01_token

__all__ = ["HTTP_01", "MAX_WANTED", "TLS_ALPN_01", "ChallengeShare", "ChallengeStore"]

#: Most names waiting for an issuance at once (a scan of random names cannot grow it without bound).
MAX_WANTED: Final = 64
#: The kinds of shared answers (``<kind>:<token or name>`` in :meth:`ChallengeStore.mirror`).
HTTP_01: Final = "http-01"
TLS_ALPN_01: Final = "tls-alpn-01"


class ChallengeShare(Protocol):
    """Where published answers are shared with the other nodes (blocking: the issuer's thread)."""

    @property
    def propagation_delay(self) -> float:
        """Seconds the issuer waits after publishing, so every node mirrored the answer before the CA asks."""
        ...

    def share(self, name: str, key_authorization: str) -> None:
        """Make ``<kind>:<token or name>`` known to every node."""
        ...

    def unshare(self, name: str) -> None:
        """Forget it everywhere."""
        ...


class ChallengeStore:
    """Pending challenge answers (see the module docstring)."""

    def __init__(self, share: ChallengeShare | None = None) -> None:
        self._lock = threading.Lock()
        #: Shares published answers with the other nodes (``None``: this node only).
        self.share = share
        self._http: Mapping[str, str] = {}
        self._tls: Mapping[str, ssl.SSLContext] = {}
        self._tls_answers: Mapping[str, str] = {}  # name -> key authorization (what mirror compares)
        self._revision = 0  # bumped by every local publish and withdrawal (a mirror read before it is stale)
        self._wanted: dict[str, None] = {}
        #: Called (on the loop) when a name is first wanted: the ACME task's wake-up.
        self.on_want: Callable[[], None] | None = None

    # -- the issuer (worker thread) -------------------------------------------------------

    def publish_http01(self, token: str, key_authorization: str) -> None:
        """Answer ``GET /.well-known/acme-challenge/<token>`` with ``key_authorization`` (shared: blocking)."""
        self._answer_http01(token, key_authorization)
        self._shared(f"{HTTP_01}:{token}", key_authorization)

    def withdraw_http01(self, token: str) -> None:
        """Stop answering for ``token``."""
        with self._lock:
            self._http = {k: v for k, v in self._http.items() if k != token}
            self._revision += 1
        if self.share is not None:
            self.share.unshare(f"{HTTP_01}:{token}")
            self._bump()

    def publish_tls_alpn01(self, domain: str, key_authorization: str, *, now: float | None = None) -> None:
        """Answer ``acme-tls/1`` handshakes for ``domain`` with its RFC 8737 certificate (blocking: builds a context)."""
        self._answer_tls_alpn01(domain, key_authorization, now=now)
        self._shared(f"{TLS_ALPN_01}:{domain.lower()}", key_authorization)

    def withdraw_tls_alpn01(self, domain: str) -> None:
        """Stop answering ``acme-tls/1`` for ``domain``."""
        with self._lock:
            self._tls = {k: v for k, v in self._tls.items() if k != domain.lower()}
            self._tls_answers = {k: v for k, v in self._tls_answers.items() if k != domain.lower()}
            self._revision += 1
        if self.share is not None:
            self.share.unshare(f"{TLS_ALPN_01}:{domain.lower()}")
            self._bump()

    @property
    def revision(self) -> int:
        """Changes so far by this node's issuer (take it before reading the datastore for :meth:`mirror`)."""
        return self._revision

    def mirror(self, shared: Mapping[str, str], *, revision: int, now: float | None = None) -> bool:
        """Answer exactly what the datastore holds (this node's answers are there too; blocking: builds contexts).

        Args:
            shared: ``<kind>:<token or name>`` -> key authorization, as read from the datastore.
            revision: :attr:`revision` taken before that read; if the issuer changed anything since,
                the read may predate it and nothing is applied (the next mirror will).
            now: Unix seconds (the tls-alpn-01 certificates' validity).

        Returns:
            Whether the read was applied.
        """
        http = {k.split(":", 1)[1]: v for k, v in shared.items() if k.startswith(HTTP_01 + ":")}
        tls = {k.split(":", 1)[1]: v for k, v in shared.items() if k.startswith(TLS_ALPN_01 + ":")}
        with self._lock:
            if revision != self._revision:
                return False
            self._http = dict(http)
            self._tls = {k: v for k, v in self._tls.items() if k in tls}
            self._tls_answers = {k: v for k, v in self._tls_answers.items() if k in tls}
            missing = {k: v for k, v in tls.items() if self._tls_answers.get(k) != v}
        for domain, key_authorization in missing.items():
            self._answer_tls_alpn01(domain, key_authorization, now=now, local=False)
        return True

    def _shared(self, name: str, key_authorization: str) -> None:
        if self.share is not None:
            self.share.share(name, key_authorization)
            self._bump()  # a mirror that read before the write is stale
            time.sleep(self.share.propagation_delay)  # the issuer's thread: every node mirrors it first

    def _bump(self) -> None:
        with self._lock:
            self._revision += 1

    def _answer_http01(self, token: str, key_authorization: str) -> None:
        with self._lock:
            self._http = {**self._http, token: key_authorization}
            self._revision += 1

    def _answer_tls_alpn01(self, domain: str, key_authorization: str, *, now: float | None = None,
                           local: bool = True) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = build_tls_alpn01_certificate(domain, key_authorization, key, now=int(now or time.time()))
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.set_alpn_protocols([ACME_TLS_ALPN])
        key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
        load_pem_pair(ctx, cert.public_bytes(serialization.Encoding.PEM), key_pem)
        with self._lock:
            self._tls = {**self._tls, domain.lower(): ctx}
            self._tls_answers = {**self._tls_answers, domain.lower(): key_authorization}
            self._revision += local

    # -- the listeners (event loop, SNI callback) --------------------------------------------

    def http01_response(self, target: str) -> bytes | None:
        """The body for an http-01 request target, or ``None`` (not a challenge path, or unknown token)."""
        token = http01_token(target)
        answer = self._http.get(token) if token is not None else None
        return answer.encode("ascii") if answer is not None else None

    def select_context(self, sslobj: Any, server_name: str | None) -> ssl.SSLContext | None:
        """In the SNI callback: the challenge context when this is a validation handshake, else ``None``."""
        if not server_name or not self._tls:
            return None
        ctx = self._tls.get(server_name.lower().rstrip("."))
        return ctx if ctx is not None and offers_acme_tls(sslobj) else None

    def want_certificate(self, host: str) -> None:
        """Note that a handshake asked for ``host``, which no certificate serves (the SNI callback, on the loop)."""
        host = host.lower().rstrip(".")
        if host in self._wanted or len(self._wanted) >= MAX_WANTED:
            return
        self._wanted[host] = None
        if self.on_want is not None:
            self.on_want()

    def take_wanted(self) -> tuple[str, ...]:
        """The names noted since the last call, oldest first (the ACME task, on the loop)."""
        wanted, self._wanted = tuple(self._wanted), {}
        return wanted

    def pending(self) -> tuple[int, int]:
        """How many http-01 tokens and tls-alpn-01 names are published (tests, status)."""
        return len(self._http), len(self._tls)
