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
from typing import Any, Final

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from trio_gw.net.acme_tls_alpn import offers_acme_tls
from trio_gw.net.contexts import load_pem_pair
from trio_gw.tls.acme import ACME_TLS_ALPN, build_tls_alpn01_certificate, http01_token

__all__ = ["MAX_WANTED", "ChallengeStore"]

#: Most names waiting for an issuance at once (a scan of random names cannot grow it without bound).
MAX_WANTED: Final = 64


class ChallengeStore:
    """Pending challenge answers (see the module docstring)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._http: Mapping[str, str] = {}
        self._tls: Mapping[str, ssl.SSLContext] = {}
        self._wanted: dict[str, None] = {}
        #: Called (on the loop) when a name is first wanted: the ACME task's wake-up.
        self.on_want: Callable[[], None] | None = None

    # -- the issuer (worker thread) -------------------------------------------------------

    def publish_http01(self, token: str, key_authorization: str) -> None:
        """Answer ``GET /.well-known/acme-challenge/<token>`` with ``key_authorization``."""
        with self._lock:
            self._http = {**self._http, token: key_authorization}

    def withdraw_http01(self, token: str) -> None:
        """Stop answering for ``token``."""
        with self._lock:
            self._http = {k: v for k, v in self._http.items() if k != token}

    def publish_tls_alpn01(self, domain: str, key_authorization: str, *, now: float | None = None) -> None:
        """Answer ``acme-tls/1`` handshakes for ``domain`` with its RFC 8737 certificate (blocking: builds a context)."""
        key = ec.generate_private_key(ec.SECP256R1())
        cert = build_tls_alpn01_certificate(domain, key_authorization, key, now=int(now or time.time()))
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.set_alpn_protocols([ACME_TLS_ALPN])
        key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
        load_pem_pair(ctx, cert.public_bytes(serialization.Encoding.PEM), key_pem)
        with self._lock:
            self._tls = {**self._tls, domain.lower(): ctx}

    def withdraw_tls_alpn01(self, domain: str) -> None:
        """Stop answering ``acme-tls/1`` for ``domain``."""
        with self._lock:
            self._tls = {k: v for k, v in self._tls.items() if k != domain.lower()}

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
