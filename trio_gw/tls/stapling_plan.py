"""What a generation staples: for each served certificate, which OCSP status to ask about and how to judge it.

Theory of operation
-------------------
:func:`build_stapling_plan` runs once per generation, while it is built (off
the event loop), over every certificate the generation serves.  For each
certificate -- and its ``cert_alt``, the second key type of the same
context -- it finds the issuer (the served chain first, then the configured
CA certificates, as nginx looks in the chain and then
``ssl_trusted_certificate``), the responder URLs (``ssl_stapling_responder``,
else the AIA OCSP URLs), the DER request, whether the certificate carries the
TLS Feature must-staple extension, and the key the node's stapling cache files
the answer under.  That is a :class:`StapleTarget`; nothing in it changes
until the certificate does.

``ssl_stapling_file`` holds one DER response.  It is verified here, against
each target in turn (CertID, signer unless ``ssl_stapling_verify`` is off,
freshness); the target it is about keeps it as a *static* answer, never
refetched.  A response about no served certificate is reported, not fatal
(nginx serves the file whatever it says; trio-gw staples only what it
verified).

The plan decides nothing per handshake by itself: the context's status
callback (:mod:`trio_gw.net.ocsp_stapling`) and the SNI callback ask
:func:`~trio_gw.tls.stapling.decide_staple` with the answer at hand -- the
static one, or the latest one the background refresher stored.  Under
``strict`` and ``must_staple``, :meth:`StaplingPlan.refusal` tells the SNI
callback that a certificate must not be served at all, whatever the client
asks (Envoy: a certificate whose status is revoked or unknown is not used).

Problems found here (no issuer, no responder, a stapling file that matches
nothing) are warnings: the certificate is served, without a staple, as nginx
does.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from trio_gw.errors import CertificateError
from trio_gw.model.entities import Certificate
from trio_gw.pki.parse import parse_certificates
from trio_gw.tls.ocsp import (
    OcspAnswer,
    OcspError,
    OcspFailure,
    build_ocsp_request,
    is_must_staple,
    ocsp_key,
    ocsp_responder_urls,
    verify_ocsp_response,
)
from trio_gw.tls.stapling import (
    StapleAction,
    StaplingPolicy,
    StaplingSettings,
    decide_staple,
    select_stapling_issuer,
)

__all__ = ["StapleTarget", "StaplingPlan", "build_stapling_plan"]


@dataclass(frozen=True)
class StapleTarget:
    """One served certificate whose OCSP status is stapled (see the module docstring).

    ``urls`` is empty when no responder is known (then only a static answer
    can be stapled); ``fingerprint`` is the SHA-256 (hex) of the leaf's DER,
    which the status callback of a two-certificate context matches against.
    """

    key: str
    fingerprint: str
    leaf: x509.Certificate = field(repr=False)
    issuer: x509.Certificate = field(repr=False)
    urls: tuple[str, ...]
    request_der: bytes = field(repr=False)
    must_staple: bool


@dataclass(frozen=True)
class StaplingPlan:
    """The stapling of one generation: settings, targets by certificate id, static answers, warnings."""

    settings: StaplingSettings = StaplingSettings()
    targets: Mapping[str, tuple[StapleTarget, ...]] = field(default_factory=dict)
    #: Verified ``ssl_stapling_file`` answers, by target key.
    static: Mapping[str, OcspAnswer] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    #: Digest of what the status callbacks depend on beyond the certificate (policy, static answers):
    #: part of the key certificate contexts are reused under.
    digest: str = ""

    @property
    def enabled(self) -> bool:
        """``ssl_stapling`` is on."""
        return self.settings.ssl_stapling

    @property
    def policy(self) -> StaplingPolicy:
        """``ocsp_staple_policy``."""
        return self.settings.ocsp_staple_policy

    def fetched(self) -> tuple[StapleTarget, ...]:
        """The targets the background refresher keeps current: a responder is known, no static answer."""
        found: dict[str, StapleTarget] = {}
        for targets in self.targets.values():
            for target in targets:
                if target.urls and target.key not in self.static:
                    found.setdefault(target.key, target)
        return tuple(found.values())

    def answer(self, target: StapleTarget, current: Callable[[str], OcspAnswer | None]) -> OcspAnswer | None:
        """The answer to judge for ``target``: its static one, else what ``current`` (the cache) holds."""
        static = self.static.get(target.key)
        return static if static is not None else current(target.key)

    def refusal(
        self, certificate_id: str, current: Callable[[str], OcspAnswer | None], *, now: float
    ) -> str | None:
        """Why the certificate must not be served now (``strict``/``must_staple``), or ``None``.

        Args:
            certificate_id: the certificate the SNI callback selected.
            current: the stapling cache's latest answer by key.
            now: Unix seconds.

        Returns:
            ``None`` to serve it; else the stable reason of the first of its
            certificates :func:`decide_staple` refuses (``revoked``, ``unknown``,
            ``stale``, ``must_staple_without_response``).
        """
        if not self.enabled or self.policy is StaplingPolicy.LENIENT:
            return None
        for target in self.targets.get(certificate_id, ()):
            decision = decide_staple(self.policy, self.answer(target, current), must_staple=target.must_staple,
                                     now=now)
            if decision.action is StapleAction.REFUSE:
                return decision.reason
        return None


def build_stapling_plan(
    settings: StaplingSettings,
    certificates: Iterable[Certificate],
    *,
    trusted: Sequence[x509.Certificate] = (),
    static_response: bytes | None = None,
    now: float,
) -> StaplingPlan:
    """The stapling plan of a generation (see the module docstring).

    Args:
        settings: the node's stapling settings.
        certificates: every certificate the generation serves.
        trusted: CA certificates that may have issued them (the configured CA certificates).
        static_response: the contents of ``ssl_stapling_file``, if set.
        now: the build time, Unix seconds (the static response must be fresh now).

    Returns:
        The plan; with ``ssl_stapling`` off, an empty one.
    """
    if not settings.ssl_stapling:
        return StaplingPlan(settings)
    targets: dict[str, tuple[StapleTarget, ...]] = {}
    warnings: list[str] = []
    for cert in certificates:
        found = []
        for pem in (cert.cert, cert.cert_alt):
            if pem:
                target = _target(cert.id, pem, settings, trusted, warnings)
                if target is not None:
                    found.append(target)
        if found:
            targets[cert.id] = tuple(found)
    static: dict[str, OcspAnswer] = {}
    if static_response is not None:
        static = _static_answers(static_response, targets, settings, now, warnings)
    return StaplingPlan(settings, targets, static, tuple(warnings), _digest(settings, static_response))


def _target(
    certificate_id: str, pem: str, settings: StaplingSettings, trusted: Sequence[x509.Certificate],
    warnings: list[str],
) -> StapleTarget | None:
    try:
        chain = parse_certificates(pem)
    except CertificateError:  # refused when the certificate was loaded; nothing to staple here
        return None
    leaf = chain[0]
    issuer = select_stapling_issuer(chain, trusted)
    if issuer is None:
        warnings.append(f"ssl_stapling: certificate {certificate_id} ({leaf.subject.rfc4514_string()}) is served "
                        "without stapling: its issuer is neither in its chain nor among the CA certificates")
        return None
    urls = (settings.ssl_stapling_responder,) if settings.ssl_stapling_responder else ocsp_responder_urls(leaf)
    if not urls and settings.ssl_stapling_file is None:
        warnings.append(f"ssl_stapling: certificate {certificate_id} ({leaf.subject.rfc4514_string()}) names no "
                        "OCSP responder (AIA) and ssl_stapling_responder is not set: served without stapling")
    der = leaf.public_bytes(serialization.Encoding.DER)
    return StapleTarget(ocsp_key(leaf, issuer), hashlib.sha256(der).hexdigest(), leaf, issuer, tuple(urls),
                        build_ocsp_request(leaf, issuer), is_must_staple(leaf))


def _static_answers(
    response: bytes, targets: Mapping[str, tuple[StapleTarget, ...]], settings: StaplingSettings, now: float,
    warnings: list[str],
) -> dict[str, OcspAnswer]:
    """Verify ``ssl_stapling_file`` against every target; keep it for the ones it is about."""
    found: dict[str, OcspAnswer] = {}
    problems: list[str] = []
    for certificate_id, items in targets.items():
        for target in items:
            try:
                answer = verify_ocsp_response(response, target.leaf, target.issuer, now=now,
                                              check_signer=settings.ssl_stapling_verify)
            except OcspError as exc:
                if exc.reason is not OcspFailure.NO_MATCHING_RESPONSE:
                    problems.append(f"certificate {certificate_id}: {exc}")
                continue
            found[target.key] = answer
    if not found:
        detail = "; ".join(problems) if problems else "it is about none of the served certificates"
        warnings.append(f"ssl_stapling_file {settings.ssl_stapling_file}: not stapled: {detail}")
    return found


def _digest(settings: StaplingSettings, static_response: bytes | None) -> str:
    h = hashlib.sha256()
    h.update(repr((settings.ssl_stapling, settings.ssl_stapling_verify, settings.ocsp_staple_policy.value,
                   settings.ssl_stapling_responder)).encode())
    h.update(static_response or b"")
    return h.hexdigest()[:16]
