"""Client-certificate authentication shared by ``mtls-auth`` and ``header-cert-auth``.

Theory of operation
-------------------
:func:`parse_client_auth_config` reads Kong's options common to both plugins;
:func:`prepare_client_auth` turns them, once per snapshot, into a frozen
:class:`ClientAuth`: the :class:`~trio_gw.tls.client_policy.ClientCertPolicy`
(the plugin's CA certificates, parsed), and the consumers and ``mtls_auth``
credentials indexed by certificate fingerprint, by subject name, by
``username`` and by ``custom_id``.  :func:`authenticate` is the per-request
decision:

1. no certificate → ``no_cert`` (401);
2. a leaf pinned by a credential's ``certificate`` (PEM) is its own anchor
   (Tyk/Gravitee: a registered certificate needs no CA): only its dates are
   checked, and its revocation with the issuer found among the certificates
   sent and the CAs; any other leaf is verified against the CAs
   (:func:`~trio_gw.tls.client_auth.verify_client_certificate`, with OCSP
   answers from ``RequestContext.ocsp_source`` first, then CRLs from
   ``RequestContext.crl_source``) → ``unknown_ca``, ``expired``,
   ``revoked``, ``revocation_unknown`` (``STRICT``), ``bad_eku`` ... (401);
3. the consumer (Kong's order): a credential for the leaf's fingerprint, then
   a credential whose ``subject_name`` equals a SAN value, then the CN
   (restricted to chains through its ``ca_certificate``), then ``consumer_by``
   (``username``/``custom_id`` against SAN values, then CN), then
   ``default_consumer``.  Matching credentials that are revoked or outside
   their validity window refuse the request (``revoked``, ``expired``,
   ``not_yet_valid``): a revoked certificate never falls through to a
   weaker rule.  Nothing matching → ``not_allowed`` (403);
4. with ``require_subscription``, the consumer needs an active subscription
   to the route's service → ``no_subscription`` (403).

Every failure before 4 lets the request through as the ``anonymous``
consumer when one is configured (Kong).  The allowed request carries the
identity headers of :mod:`trio_gw.plugins.identity`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any, Final

from cryptography import x509

from trio_gw.errors import CertificateError, ConfigError, Problem
from trio_gw.model.credentials import Credential
from trio_gw.model.entities import Consumer, Entities, Route
from trio_gw.model.fields import Context, Fields
from trio_gw.model.values import InvalidValue, check_uuid
from trio_gw.pki.info import CertificateInfo, describe_certificate
from trio_gw.pki.parse import parse_certificates, parse_der
from trio_gw.plugins.base import Allow, Decision, Deny, PrepareEnv, RequestContext
from trio_gw.plugins.identity import FORWARD_FORMATS, IDENTITY_HEADERS, certificate_headers, consumer_headers
from trio_gw.tls.client_auth import ClientCertReason, ClientCertRejected, verify_client_certificate
from trio_gw.tls.client_policy import ClientCertPolicy
from trio_gw.tls.client_revocation import check_pinned_revocation, revocation_refusal
from trio_gw.tls.revocation import RevocationCheckMode, crl_distribution_urls, parse_crl

__all__ = [
    "CLIENT_AUTH_FIELDS",
    "ClientAuth",
    "authenticate",
    "check_pinned_leaf",
    "fetched_crls",
    "parse_client_auth_config",
    "prepare_client_auth",
]

#: Options common to mtls-auth and header-cert-auth (Kong's names), with defaults.
CLIENT_AUTH_DEFAULTS: Final[Mapping[str, Any]] = {
    "ca_certificates": [],
    "skip_consumer_lookup": False,
    "consumer_by": ["username", "custom_id"],
    "authenticated_group_by": "CN",
    "default_consumer": None,
    "anonymous": None,
    "allow_partial_chain": False,
    "revocation_check_mode": "IGNORE_CA_ERROR",
    "cert_cache_ttl": 60000,
    "http_timeout": 30000,
    "send_ca_dn": False,
    # trio-gw
    "forward_client_cert": "none",
    "require_subscription": False,
}
CLIENT_AUTH_FIELDS: Final = tuple(CLIENT_AUTH_DEFAULTS)
_MESSAGES: Final = {
    "no_cert": (401, "No required TLS certificate was sent"),
    "not_allowed": (403, "certificate not allowed"),
    "no_subscription": (403, "no active subscription to this API"),
    "revoked_credential": (401, "TLS certificate failed verification: its credential is revoked"),
    "expired_credential": (401, "TLS certificate failed verification: its credential has expired"),
    "not_yet_valid_credential": (401, "TLS certificate failed verification: its credential is not valid yet"),
}
_VERIFY_FAILED: Final = (401, "TLS certificate failed verification")
_MAX_MS: Final = 24 * 3600 * 1000


def parse_client_auth_config(raw: Mapping[str, Any], ctx: Context, extra: Sequence[str] = ()) -> dict[str, Any]:
    """Read the common options (problems to ``ctx``); ``extra`` names the plugin's own keys.

    Returns:
        The options with defaults filled in (JSON values: parsed configs are stored).
    """
    f = Fields(raw, "", ctx)
    f.check_keys((*CLIENT_AUTH_FIELDS, *extra))
    d = CLIENT_AUTH_DEFAULTS
    consumer_by = f.strings("consumer_by", _consumer_by, tuple(d["consumer_by"]))
    return {
        "ca_certificates": list(f.strings("ca_certificates", check_uuid)),
        "skip_consumer_lookup": f.boolean("skip_consumer_lookup", False),
        "consumer_by": list(consumer_by),
        "authenticated_group_by": f.choice("authenticated_group_by", ("CN", "DN"), "CN"),
        "default_consumer": f.string("default_consumer"),
        "anonymous": f.string("anonymous"),
        "allow_partial_chain": f.boolean("allow_partial_chain", False),
        "revocation_check_mode": f.choice("revocation_check_mode", tuple(m.value for m in RevocationCheckMode),
                                          "IGNORE_CA_ERROR"),
        "cert_cache_ttl": f.integer("cert_cache_ttl", 0, _MAX_MS, 60000),
        "http_timeout": f.integer("http_timeout", 1, _MAX_MS, 30000),
        "send_ca_dn": f.boolean("send_ca_dn", False),
        "forward_client_cert": f.choice("forward_client_cert", FORWARD_FORMATS, "none"),
        "require_subscription": f.boolean("require_subscription", False),
    }


def _consumer_by(value: str) -> str:
    if value not in ("username", "custom_id"):
        raise InvalidValue("expected 'username' or 'custom_id'")
    return value


@dataclass(frozen=True)
class ClientAuth:
    """A client-auth plugin prepared against one configuration (see the module docstring)."""

    config: Mapping[str, Any]
    policy: ClientCertPolicy | None
    self_anchored: frozenset[str]
    by_fingerprint: Mapping[str, tuple[Credential, ...]]
    by_subject: Mapping[str, tuple[Credential, ...]]
    ca_fingerprints: Mapping[str, str]
    consumers: Mapping[str, Consumer]
    by_username: Mapping[str, Consumer]
    by_custom_id: Mapping[str, Consumer]
    default_consumer: Consumer | None
    anonymous: Consumer | None
    subscriptions: Mapping[tuple[str, str], tuple[Credential, ...]]
    strip: frozenset[bytes] = IDENTITY_HEADERS
    service: str | None = field(default=None)

    @property
    def revocation_mode(self) -> RevocationCheckMode:
        """The configured ``revocation_check_mode``."""
        return RevocationCheckMode(self.config["revocation_check_mode"])


def prepare_client_auth(config: Mapping[str, Any], env: PrepareEnv, strip: frozenset[bytes] = frozenset()) -> ClientAuth:
    """Index what :func:`authenticate` needs (once per snapshot).

    Raises:
        ConfigError: a CA certificate, ``default_consumer`` or ``anonymous``
            that does not exist.
    """
    entities = env.entities
    problems: list[Problem] = []
    anchors = []
    ca_fingerprints: dict[str, str] = {}
    for i, ca_id in enumerate(config.get("ca_certificates", ())):
        ca = entities.ca_certificates.get(ca_id)
        if ca is None:
            problems.append(Problem(f"ca_certificates[{i}]", f"no CA certificate with id {ca_id!r}"))
            continue
        anchors.append(parse_certificates(ca.cert)[0])
    for ca in entities.ca_certificates.values():
        ca_fingerprints[ca.id] = describe_certificate(parse_certificates(ca.cert)[0]).fingerprint_sha256
    default = _consumer(entities, config.get("default_consumer"), "default_consumer", problems)
    anonymous = _consumer(entities, config.get("anonymous"), "anonymous", problems)
    policy = _policy(config, anchors, entities, problems)
    if problems:
        raise ConfigError(problems)
    creds = [c for c in entities.credentials.values() if c.kind == "mtls_auth"]
    return ClientAuth(
        config=dict(config),
        policy=policy,
        self_anchored=frozenset(c.fingerprint for c in creds if c.certificate and c.fingerprint),
        by_fingerprint=_group(creds, lambda c: _credential_fingerprint(entities, c)),
        by_subject=_group(creds, lambda c: c.subject_name),
        ca_fingerprints=ca_fingerprints,
        consumers=entities.consumers,
        by_username={c.username: c for c in entities.consumers.values() if c.username is not None},
        by_custom_id={c.custom_id: c for c in entities.consumers.values() if c.custom_id is not None},
        default_consumer=default,
        anonymous=anonymous,
        subscriptions=_group(
            [c for c in entities.credentials.values() if c.kind == "subscription"],
            lambda c: (c.consumer, c.service or ""),
        ),
        strip=IDENTITY_HEADERS | strip,
    )


def for_route(prepared: ClientAuth, route: Route) -> ClientAuth:
    """Bind the route's service (subscriptions are per service)."""
    if not prepared.config.get("require_subscription"):
        return prepared
    return replace(prepared, service=route.service)


def _policy(
    config: Mapping[str, Any], anchors: list[x509.Certificate], entities: Entities, problems: list[Problem]
) -> ClientCertPolicy | None:
    if not anchors:
        return None
    crls = [crl for ca_id in config.get("ca_certificates", ()) for crl in _attached_crls(entities, ca_id)]
    try:
        return ClientCertPolicy(
            trust_anchors=anchors,
            allow_partial_chain=bool(config.get("allow_partial_chain")),
            revocation_check_mode=str(config.get("revocation_check_mode", "IGNORE_CA_ERROR")),
            crls=crls,
        )
    except ConfigError as exc:
        problems.extend(exc.problems)
        return None


def _attached_crls(entities: Entities, ca_id: str) -> list[x509.CertificateRevocationList]:
    """CRLs attached to a CA certificate entity, when the entity has a ``crls`` field (PEM/DER texts).

    ``CACertificate`` has no such field yet; this reads it as soon as it does.
    """
    ca = entities.ca_certificates.get(ca_id)
    texts: Sequence[str] = getattr(ca, "crls", ()) or ()
    return [parse_crl(t) for t in texts]


def _consumer(entities: Entities, ref: str | None, name: str, problems: list[Problem]) -> Consumer | None:
    if ref is None:
        return None
    found = entities.consumers.get(ref.lower()) or next(
        (c for c in entities.consumers.values() if ref in (c.username, c.custom_id)), None
    )
    if found is None:
        problems.append(Problem(name, f"no consumer with id or username {ref!r}"))
    return found


def _group(creds: Sequence[Credential], key: Any) -> dict[Any, tuple[Credential, ...]]:
    out: dict[Any, tuple[Credential, ...]] = {}
    for cred in sorted(creds, key=lambda c: c.created_at):
        k = key(cred)
        if k is not None:
            out[k] = (*out.get(k, ()), cred)
    return out


def _credential_fingerprint(entities: Entities, cred: Credential) -> str | None:
    if cred.fingerprint is not None or cred.certificate_id is None:
        return cred.fingerprint
    target = entities.certificates.get(cred.certificate_id)
    return describe_certificate(parse_certificates(target.cert)[0]).fingerprint_sha256 if target else None


# -- per request ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Verified:
    info: CertificateInfo
    chain_fingerprints: frozenset[str]


def authenticate(
    auth: ClientAuth, leaf_der: bytes | None, chain_der: Sequence[bytes], request: RequestContext,
    *, strip: frozenset[bytes] = frozenset(),
) -> Decision:
    """Authenticate a request by its client certificate (see the module docstring).

    Args:
        auth: the prepared plugin.
        leaf_der: the client certificate (DER), ``None`` when absent.
        chain_der: the certificates sent after it.
        request: the request (time, CRL source).
        strip: further headers to remove from the client's request.

    Returns:
        :class:`Allow` with the identity headers, or :class:`Deny`.
    """
    strip = auth.strip | strip
    if not leaf_der:
        return _fail(auth, "no_cert", strip)
    try:
        verified = _verify(auth, leaf_der, chain_der, request)
    except ClientCertRejected as exc:
        return _fail(auth, exc.reason.value, strip)
    consumer, credential, refusal = _find_consumer(auth, verified, request.now)
    if refusal is not None:
        return _fail(auth, refusal, strip)
    if consumer is None and not auth.config.get("skip_consumer_lookup"):
        return _fail(auth, "not_allowed", strip)
    if auth.config.get("require_subscription") and not _subscribed(auth, consumer, request.now):
        status, message = _MESSAGES["no_subscription"]
        return Deny(status, message, "no_subscription")
    groups = verified.info.subject if auth.config.get("authenticated_group_by") == "DN" else (
        verified.info.common_names[0] if verified.info.common_names else None
    )
    headers = consumer_headers(consumer, credential=credential, groups=groups)
    headers += certificate_headers(str(auth.config.get("forward_client_cert", "none")), leaf_der, chain_der)
    return Allow(headers, consumer, strip, credential)


def _fail(auth: ClientAuth, reason: str, strip: frozenset[bytes]) -> Decision:
    if auth.anonymous is not None:
        return Allow(consumer_headers(auth.anonymous, anonymous=True), auth.anonymous, strip)
    if reason in ("revoked_credential", "expired_credential", "not_yet_valid_credential"):
        code, message = _MESSAGES[reason]
        return Deny(code, message, reason.rsplit("_credential", 1)[0])
    code, message = _MESSAGES.get(reason, _VERIFY_FAILED)
    return Deny(code, message, reason)


def _verify(auth: ClientAuth, leaf_der: bytes, chain_der: Sequence[bytes], request: RequestContext) -> _Verified:
    fingerprint = hashlib.sha256(leaf_der).hexdigest()
    mode = auth.revocation_mode
    if fingerprint in auth.self_anchored:
        info = _describe(leaf_der)
        if info.is_expired(int(request.now)):
            raise ClientCertRejected(ClientCertReason.EXPIRED, "certificate has expired")
        if info.is_not_yet_valid(int(request.now)):
            raise ClientCertRejected(ClientCertReason.NOT_YET_VALID, "certificate is not valid yet")
        policy = auth.policy
        check_pinned_leaf(mode, leaf_der, chain_der, policy.anchors if policy else (),
                          policy.crls if policy else (), request)
        return _Verified(info, frozenset())
    if auth.policy is None:
        raise ClientCertRejected(ClientCertReason.UNKNOWN_CA, "no CA certificate configured for this route")
    now = datetime.fromtimestamp(request.now, timezone.utc)
    crls = fetched_crls(mode, leaf_der, chain_der, request)
    ocsp = request.ocsp_source if mode is not RevocationCheckMode.SKIP else None
    result = verify_client_certificate(leaf_der, chain_der, auth.policy, now=now, crls=crls, ocsp=ocsp)
    chain = frozenset(hashlib.sha256(der).hexdigest() for der in result.chain_der[1:])
    return _Verified(result.info, chain)


def _describe(leaf_der: bytes) -> CertificateInfo:
    try:
        return describe_certificate(parse_der(leaf_der))
    except CertificateError as exc:
        raise ClientCertRejected(ClientCertReason.BAD_CERTIFICATE, str(exc)) from exc


def fetched_crls(
    mode: RevocationCheckMode, leaf_der: bytes, chain_der: Sequence[bytes], request: RequestContext
) -> list[x509.CertificateRevocationList]:
    """The cached CRLs the client's certificates name (misses are noted for the IO layer to fetch).

    Args:
        mode: the plugin's ``revocation_check_mode`` (``SKIP``: none are looked up).
        leaf_der, chain_der: what the client sent.
        request: the request (its ``crl_source`` and time).

    Returns:
        The CRLs at hand, possibly none.
    """
    source = request.crl_source
    if source is None or mode is RevocationCheckMode.SKIP:
        return []
    found = []
    for der in (leaf_der, *chain_der):
        try:
            urls = crl_distribution_urls(parse_der(der))
        except CertificateError:
            continue  # verification reports the unparsable certificate
        for url in urls:
            crl = source.crl_for(url, request.now)
            if crl is not None:
                found.append(crl)
    return found


def check_pinned_leaf(
    mode: RevocationCheckMode,
    leaf_der: bytes,
    chain_der: Sequence[bytes],
    anchors: Sequence[x509.Certificate],
    static_crls: Sequence[x509.CertificateRevocationList],
    request: RequestContext,
) -> None:
    """Revocation of a leaf trusted by pinning (no built chain): the same check as a verified chain's.

    Args:
        mode: the plugin's ``revocation_check_mode``.
        leaf_der: the pinned leaf (already parsed once, so it parses).
        chain_der: the certificates the client sent after it (issuer candidates).
        anchors: configured CAs (issuer candidates too).
        static_crls: CRLs attached to the configured CAs.
        request: the request (OCSP and CRL caches, time).

    Raises:
        ClientCertRejected: ``revoked``, or ``revocation_unknown`` under ``STRICT``.
    """
    if mode is RevocationCheckMode.SKIP:
        return
    leaf = parse_der(leaf_der)
    candidates = list(anchors)
    for der in chain_der:
        try:
            candidates.append(parse_der(der))
        except CertificateError:
            continue
    now = datetime.fromtimestamp(request.now, timezone.utc)
    crls = [*static_crls, *fetched_crls(mode, leaf_der, chain_der, request)]
    checks = check_pinned_revocation(leaf, candidates, crls=crls, ocsp=request.ocsp_source, now=now)
    refusal = revocation_refusal(checks, mode)
    if refusal is not None:
        raise ClientCertRejected(ClientCertReason(refusal[0]), refusal[1])


def _find_consumer(
    auth: ClientAuth, verified: _Verified, now: float
) -> tuple[Consumer | None, str | None, str | None]:
    """(consumer, credential id, refusal reason) — see step 3 of the module docstring."""
    info = verified.info
    names = (*info.dns_names, *info.emails, *info.uris, *info.ip_addresses, *info.common_names)
    matches = list(auth.by_fingerprint.get(info.fingerprint_sha256, ()))
    if not matches:
        for name in names:
            matches = [c for c in auth.by_subject.get(name, ()) if _issued_by(auth, c, verified)]
            if matches:
                break
    if matches:
        usable = [c for c in matches if c.refusal(now) is None]
        if not usable:
            return None, None, f"{matches[-1].refusal(now)}_credential"
        return auth.consumers.get(usable[0].consumer), usable[0].id, None
    if auth.config.get("skip_consumer_lookup"):
        return None, None, None
    for how in auth.config.get("consumer_by", ()):
        index = auth.by_username if how == "username" else auth.by_custom_id
        for name in names:
            if name in index:
                return index[name], None, None
    return auth.default_consumer, None, None


def _issued_by(auth: ClientAuth, cred: Credential, verified: _Verified) -> bool:
    if cred.ca_certificate is None:
        return True
    return auth.ca_fingerprints.get(cred.ca_certificate) in verified.chain_fingerprints


def _subscribed(auth: ClientAuth, consumer: Consumer | None, now: float) -> bool:
    if consumer is None or auth.service is None:
        return False
    return any(s.refusal(now) is None for s in auth.subscriptions.get((consumer.id, auth.service), ()))
