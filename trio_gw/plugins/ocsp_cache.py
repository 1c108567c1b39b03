"""A pure OCSP answer cache: handshakes and plugins read it, the IO layer fills it.

Theory of operation
-------------------
OCSP answers are needed where nothing may block -- inside a handshake (the
stapling callback) and in ``decide`` (client revocation) -- so, like CRLs in
:mod:`trio_gw.plugins.crl_cache`, they are fetched off the request path and
met in a cache keyed by :func:`~trio_gw.tls.ocsp.ocsp_key` (issuer key +
serial):

* **client certificates** are asked for on demand: :meth:`OcspCache.answer_for`
  (the :class:`~trio_gw.tls.client_revocation.OcspAnswers` protocol) returns a
  verified answer fetched less than ``ttl`` seconds ago (Kong's
  ``cert_cache_ttl``) that is still fresh, or ``None`` and notes the
  certificate as wanted (at most :data:`MAX_TARGETS` at once, so a client
  cannot make the gateway fetch without bound);
* **server certificates** to staple are :meth:`OcspCache.track` ed when a
  generation is built and refreshed on :func:`~trio_gw.tls.ocsp.plan_next_fetch`'s
  schedule (before ``nextUpdate``, backing off after failures);
  :meth:`OcspCache.current` gives the stapling source the latest verified
  answer (:func:`~trio_gw.tls.stapling.decide_staple` judges its freshness).
  ``ssl_stapling_file`` responses go in once through :meth:`OcspCache.load_static`.

The IO loop takes :meth:`OcspCache.due` targets (URL list and DER request
included), fetches, and reports :meth:`OcspCache.store` (which verifies the
response against the target's certificate and issuer, raising
:class:`~trio_gw.tls.ocsp.OcspError` when it proves nothing) or
:meth:`OcspCache.failed`.  Only verified answers are ever kept.

The cache mutates (dicts assigned from the Trio loop only), decides nothing,
and does no IO; time is a parameter.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Final

from cryptography import x509

from trio_gw.tls.ocsp import (
    OcspAnswer,
    build_ocsp_request,
    is_fresh,
    ocsp_key,
    ocsp_responder_urls,
    plan_next_fetch,
    verify_ocsp_response,
)
from trio_gw.tls.stapling_plan import StapleTarget

__all__ = ["DEFAULT_OCSP_TTL", "MAX_TARGETS", "OcspCache", "OcspTarget"]

#: Kong's ``cert_cache_ttl`` default (60000 ms): how long a client certificate's answer is reused.
DEFAULT_OCSP_TTL: Final = 60.0
#: Most certificates asked about at once (tracked server certificates not counted).
MAX_TARGETS: Final = 1024


@dataclass(frozen=True)
class OcspTarget:
    """One certificate whose status is wanted: where to ask and what to send."""

    key: str
    leaf: x509.Certificate
    issuer: x509.Certificate
    urls: tuple[str, ...]
    request_der: bytes


@dataclass(frozen=True)
class _State:
    answer: OcspAnswer | None = None
    fetched_at: float | None = None
    failures: int = 0
    next_fetch: float = 0.0


class OcspCache:
    """Verified OCSP answers by certificate (see the module docstring).

    Args:
        ttl: seconds an on-demand answer is reused (``cert_cache_ttl``).
        responder: a URL used instead of the certificates' AIA
            (``ssl_stapling_responder``).
        check_signer: verify signers (``ssl_stapling_verify``; always on for
            client revocation).
    """

    def __init__(self, ttl: float = DEFAULT_OCSP_TTL, *, responder: str | None = None,
                 check_signer: bool = True) -> None:
        self.ttl = ttl
        self.responder = responder
        self.check_signer = check_signer
        self._targets: dict[str, OcspTarget] = {}
        self._states: dict[str, _State] = {}
        self._tracked: set[str] = set()
        self._wanted: dict[str, None] = {}

    # -- readers (handshake, decide) -----------------------------------------------------

    def answer_for(self, cert: x509.Certificate, issuer: x509.Certificate, now: float) -> OcspAnswer | None:
        """A recent, fresh answer about ``cert``, or ``None`` (then it is wanted)."""
        key = ocsp_key(cert, issuer)
        state = self._states.get(key)
        if (state is not None and state.answer is not None and state.fetched_at is not None
                and now <= state.fetched_at + self.ttl and is_fresh(state.answer, now)):
            return state.answer
        if key not in self._wanted and len(self._wanted) < MAX_TARGETS:
            target = self._target(cert, issuer, key)
            if target is not None:
                self._targets.setdefault(key, target)
                self._wanted[key] = None
        return None

    def current(self, key: str) -> OcspAnswer | None:
        """The latest verified answer for a tracked key, however old (stapling judges it)."""
        state = self._states.get(key)
        return state.answer if state is not None else None

    # -- the generation builder ---------------------------------------------------------------

    def track(self, cert: x509.Certificate, issuer: x509.Certificate) -> str | None:
        """Keep ``cert``'s status refreshed (a server certificate to staple).

        Returns:
            The key to read with :meth:`current`; ``None`` when no responder is
            known (no AIA OCSP URL and no ``responder``).
        """
        key = ocsp_key(cert, issuer)
        target = self._target(cert, issuer, key)
        if target is None:
            return None
        self._targets[key] = target
        self._tracked.add(key)
        return key

    def follow(self, targets: Iterable[StapleTarget]) -> None:
        """Track exactly ``targets``: the stapled certificates of the generation just installed (on the loop).

        The targets were planned while the generation was built
        (:class:`~trio_gw.tls.stapling_plan.StaplingPlan`), so this only assigns:
        new ones are due at once, ones no longer served are dropped, the others
        keep their answers and schedule.
        """
        keys = set()
        for target in targets:
            keys.add(target.key)
            if target.key not in self._tracked:
                self._targets[target.key] = OcspTarget(target.key, target.leaf, target.issuer, target.urls,
                                                       target.request_der)
                self._tracked.add(target.key)
        self.retain_only(keys)

    def tracked(self) -> frozenset[str]:
        """The keys of the server certificates kept refreshed (tests, metrics)."""
        return frozenset(self._tracked)

    def retain_only(self, keys: set[str]) -> None:
        """Stop tracking every server certificate not in ``keys`` (one no longer served)."""
        for key in self._tracked - keys:
            self._tracked.discard(key)
            if key not in self._wanted:
                self._targets.pop(key, None)
                self._states.pop(key, None)

    def load_static(self, cert: x509.Certificate, issuer: x509.Certificate, der: bytes, now: float) -> str:
        """Use a response read from ``ssl_stapling_file`` (never refetched).

        Raises:
            OcspError: the response proves nothing about ``cert``.
        """
        key = ocsp_key(cert, issuer)
        answer = verify_ocsp_response(der, cert, issuer, now=now, check_signer=self.check_signer)
        self._states[key] = _State(answer, now, 0, float("inf"))
        return key

    # -- the IO loop -------------------------------------------------------------------------

    def due(self, now: float) -> tuple[OcspTarget, ...]:
        """Targets to fetch now: tracked ones on schedule, wanted ones past their backoff."""
        found = []
        for key in (*self._tracked, *(k for k in self._wanted if k not in self._tracked)):
            state = self._states.get(key, _State())
            if state.next_fetch <= now and key in self._targets:
                found.append(self._targets[key])
        return tuple(found)

    def store(self, key: str, der: bytes, now: float) -> OcspAnswer:
        """Keep the response fetched for ``key`` once it is verified.

        Raises:
            KeyError: ``key`` is not a target.
            OcspError: the response proves nothing (the caller then calls :meth:`failed`).
        """
        target = self._targets[key]
        answer = verify_ocsp_response(der, target.leaf, target.issuer, now=now, check_signer=self.check_signer)
        next_fetch = plan_next_fetch(answer, now=now) if key in self._tracked else now  # on demand: when asked
        self._states[key] = _State(answer, now, 0, next_fetch)
        self._wanted.pop(key, None)
        return answer

    def failed(self, key: str, now: float) -> None:
        """Record a failed fetch: the next try backs off (a held answer is kept while fresh)."""
        if key not in self._targets:  # no longer wanted nor tracked (a new generation dropped it)
            return
        state = self._states.get(key, _State())
        failures = state.failures + 1
        self._states[key] = replace(state, failures=failures,
                                    next_fetch=plan_next_fetch(state.answer, now=now, failures=failures))

    def failures(self, key: str) -> int:
        """Consecutive failed fetches for ``key`` (metrics, tests)."""
        state = self._states.get(key)
        return state.failures if state is not None else 0

    def _target(self, cert: x509.Certificate, issuer: x509.Certificate, key: str) -> OcspTarget | None:
        urls = (self.responder,) if self.responder else ocsp_responder_urls(cert)
        if not urls:
            return None
        return OcspTarget(key, cert, issuer, urls, build_ocsp_request(cert, issuer))
