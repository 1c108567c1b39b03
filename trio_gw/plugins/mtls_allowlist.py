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

Refusals: a Host header naming another host than the TLS server name → 421
``sni_host_mismatch`` (as ``mtls-auth``: a route needing a client certificate
is not reached through a connection coalesced for another host); no
certificate → 401 ``no_cert``; a listed leaf or a CA-issued
certificate that is expired → 401 ``expired`` (``not_yet_valid``); anything
else → 403 ``not_allowed``.
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
from trio_gw.plugins.mtls_auth import sni_host_mismatch
from trio_gw.tls.client_auth import ClientCertReason, ClientCertRejected, verify_client_certificate
from trio_gw.tls.client_policy import ClientCertPolicy

#: Runs before the auth plugins: an unlisted certificate is refused before any lookup.
PRIORITY = 1700


@dataclass(frozen=True)
class Allowlist:
    """The prepared list: exact leaves (fingerprint → PEM or ``None``) and the CA policy."""

    leaves: Mapping[str, str | None]
    policy: ClientCertPolicy | None
    ca_pems: tuple[str, ...] = ()


def parse_config(raw: Mapping[str, Any], path: str) -> Mapping[str, Any]:
    """Check the config: ``certificates`` (required, non-empty)."""
    ctx = Context(problems=[], now=0)
    f = Fields(raw, "", ctx)
    f.check_keys(("certificates",))
    entries = f.strings("certificates", _entry)
    if not entries and f.get("certificates") is None:
        f.report("certificates", "required field missing")
    elif not entries and not ctx.problems:
        f.report("certificates", "must list at least one certificate")
    if ctx.problems:
        raise ConfigError(ctx.problems)
    return {"certificates": list(entries)}


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
    policy = ClientCertPolicy(trust_anchors=cas, allow_partial_chain=True) if cas else None
    ca_pems = tuple(c.public_bytes(Encoding.PEM).decode("ascii") for c in cas)
    return Allowlist(leaves, policy, ca_pems)


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
        return ALLOW
    if allowlist.policy is not None:
        try:
            verify_client_certificate(leaf, request.peer_chain_der, allowlist.policy,
                                      now=datetime.fromtimestamp(request.now, timezone.utc))
            return ALLOW
        except ClientCertRejected as exc:
            if exc.reason in (ClientCertReason.EXPIRED, ClientCertReason.NOT_YET_VALID,
                              ClientCertReason.BAD_EKU, ClientCertReason.REVOKED):
                return Deny(401, "TLS certificate failed verification", exc.reason.value)
    return Deny(403, "certificate not allowed", "not_allowed")

SPEC = register(PluginSpec(
    name="mtls-allowlist", priority=PRIORITY, parse_config=parse_config, decide=decide, prepare=prepare,
))
