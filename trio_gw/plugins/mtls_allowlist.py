"""``mtls-allowlist``: Tyk's static client-certificate allowlist, per route or service.

Tyk's ``server.clientCertificates.allowlist`` (Classic ``client_certificates``)
as a plugin::

    plugins:
    - name: mtls-allowlist
      service: billing
      config:
        certificates:
        - sha256:4f1c...          # one client certificate, by fingerprint
        - 6f1d...-...             # a certificate entity (a leaf: exactly it)
        - 0b2e...-...             # a CA certificate entity: every certificate it issued

An entry is a ``sha256:`` fingerprint of a client certificate, the id of a
certificate entity (a leaf admits exactly itself; a CA certificate admits what
it issued) or the id of a CA certificate entity.  As in Tyk, a CA in the list
admits every certificate it verifies (an intermediate is an anchor by
itself).  The leaf is re-checked on every request, so removing an entry takes
effect on the next request even on a resumed TLS session.

It authenticates nobody (no consumer, no headers): combine it with an auth
plugin (``key-auth``, ``mtls-auth``) as Tyk combines the allowlist with any
authentication method.

Revocation is checked as in ``mtls-auth`` (Kong's ``revocation_check_mode``,
default ``IGNORE_CA_ERROR``): OCSP answers first, then CRLs; a listed leaf's
issuer is looked for among the certificates the client sent and the listed
CAs (:func:`trio_gw.plugins.client_cert.check_pinned_leaf`).

Refusals: a Host header naming another host than the TLS server name → 421
``sni_host_mismatch`` (as ``mtls-auth``: a route needing a client certificate
is not reached through a connection coalesced for another host); no
certificate → 401 ``no_cert``; a listed leaf or a CA-issued
certificate that is expired → 401 ``expired`` (``not_yet_valid``), revoked →
401 ``revoked`` (status unknown under ``STRICT`` → 401
``revocation_unknown``); anything else → 403 ``not_allowed``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from trio_gw.errors import ConfigError, Problem
from trio_gw.model.fields import Context, Fields
from trio_gw.model.identities import normal_fingerprint
from trio_gw.model.values import InvalidValue, check_uuid
from trio_gw.pki.info import describe_certificate
from trio_gw.pki.parse import parse_certificates, parse_der
from trio_gw.plugins.base import ALLOW, Decision, Deny, PluginSpec, PrepareEnv, RequestContext, register
from trio_gw.plugins.client_cert import check_pinned_leaf, fetched_crls
from trio_gw.plugins.mtls_auth import sni_host_mismatch
from trio_gw.tls.client_auth import ClientCertReason, ClientCertRejected, verify_client_certificate
from trio_gw.tls.client_policy import ClientCertPolicy
from trio_gw.tls.revocation import RevocationCheckMode

#: Runs before the auth plugins: an unlisted certificate is refused before any lookup.
PRIORITY = 1700


@dataclass(frozen=True)
class Allowlist:
    """The prepared list: exact leaves (fingerprint → PEM or ``None``) and the CA policy."""

    leaves: Mapping[str, str | None]
    policy: ClientCertPolicy | None
    ca_pems: tuple[str, ...] = ()
    revocation_mode: RevocationCheckMode = RevocationCheckMode.IGNORE_CA_ERROR
    cas: tuple[x509.Certificate, ...] = ()


def parse_config(raw: Mapping[str, Any], path: str) -> Mapping[str, Any]:
    """Check the config: ``certificates`` (required, non-empty), ``revocation_check_mode``."""
    ctx = Context(problems=[], now=0)
    f = Fields(raw, "", ctx)
    f.check_keys(("certificates", "revocation_check_mode"))
    mode = f.choice("revocation_check_mode", tuple(m.value for m in RevocationCheckMode), "IGNORE_CA_ERROR")
    entries = f.strings("certificates", _entry)
    if not entries and f.get("certificates") is None:
        f.report("certificates", "required field missing")
    elif not entries and not ctx.problems:
        f.report("certificates", "must list at least one certificate")
    if ctx.problems:
        raise ConfigError(ctx.problems)
    return {"certificates": list(entries), "revocation_check_mode": mode}


def _entry(value: str) -> str:
    fingerprint = normal_fingerprint(value)
    if fingerprint is not None:
        return f"sha256:{fingerprint}"
    try:
        return check_uuid(value)
    except InvalidValue as exc:
        raise InvalidValue("expected sha256:<fingerprint>, a certificate id or a CA certificate id") from exc


def prepare(config: Mapping[str, Any], env: PrepareEnv) -> Allowlist:
    """Resolve the entries against the certificate store.

    Raises:
        ConfigError: an id naming no certificate and no CA certificate.
    """
    leaves: dict[str, str | None] = {}
    cas: list[x509.Certificate] = []
    problems = []
    for i, entry in enumerate(config.get("certificates", ())):
        if entry.startswith("sha256:"):
            leaves[entry[7:]] = None
            continue
        stored = env.entities.ca_certificates.get(entry) or env.entities.certificates.get(entry)
        if stored is None:
            problems.append(Problem(f"certificates[{i}]", f"no certificate or CA certificate with id {entry!r}"))
            continue
        cert = parse_certificates(stored.cert)[0]
        info = describe_certificate(cert)
        if info.is_ca:
            cas.append(cert)
        else:
            leaves[info.fingerprint_sha256] = stored.cert
    if problems:
        raise ConfigError(problems)
    mode = RevocationCheckMode(config.get("revocation_check_mode", "IGNORE_CA_ERROR"))
    policy = ClientCertPolicy(trust_anchors=cas, allow_partial_chain=True, revocation_check_mode=mode) if cas else None
    ca_pems = tuple(c.public_bytes(Encoding.PEM).decode("ascii") for c in cas)
    return Allowlist(leaves, policy, ca_pems, mode, tuple(cas))


def decide(allowlist: Allowlist, request: RequestContext) -> Decision:
    """Admit a listed certificate or one issued by a listed CA."""
    mismatch = sni_host_mismatch(request)
    if mismatch is not None:
        return mismatch
    leaf = request.peer_certificate_der
    if not leaf:
        return Deny(401, "No required TLS certificate was sent", "no_cert")
    now = int(request.now)
    if hashlib.sha256(leaf).hexdigest() in allowlist.leaves:
        info = describe_certificate(parse_der(leaf))
        if info.is_expired(now):
            return Deny(401, "TLS certificate failed verification", "expired")
        if info.is_not_yet_valid(now):
            return Deny(401, "TLS certificate failed verification", "not_yet_valid")
        try:
            check_pinned_leaf(allowlist.revocation_mode, leaf, request.peer_chain_der, allowlist.cas, (), request)
        except ClientCertRejected as exc:
            return Deny(401, "TLS certificate failed verification", exc.reason.value)
        return ALLOW
    if allowlist.policy is not None:
        mode = allowlist.revocation_mode
        try:
            verify_client_certificate(leaf, request.peer_chain_der, allowlist.policy,
                                      now=datetime.fromtimestamp(request.now, timezone.utc),
                                      crls=fetched_crls(mode, leaf, request.peer_chain_der, request),
                                      ocsp=request.ocsp_source if mode is not RevocationCheckMode.SKIP else None)
            return ALLOW
        except ClientCertRejected as exc:
            if exc.reason in _REFUSED_AS_INVALID:
                return Deny(401, "TLS certificate failed verification", exc.reason.value)
    return Deny(403, "certificate not allowed", "not_allowed")

#: Failures of a certificate the list would admit: 401 with the reason, not 403 ``not_allowed``.
_REFUSED_AS_INVALID = frozenset({ClientCertReason.EXPIRED, ClientCertReason.NOT_YET_VALID, ClientCertReason.BAD_EKU,
                                 ClientCertReason.REVOKED, ClientCertReason.REVOCATION_UNKNOWN})


SPEC = register(PluginSpec(
    name="mtls-allowlist", priority=PRIORITY, parse_config=parse_config, decide=decide, prepare=prepare,
))
