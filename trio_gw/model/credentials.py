"""Consumer credentials: client certificates, API keys and subscriptions.

Theory of operation
-------------------
A :class:`Credential` belongs to one consumer and has one ``kind``:

``mtls_auth`` (Kong ``mtls_auth_credentials``; Tyk Certificate Auth, the
"dynamic allowlist"; Gravitee application certificates)
    binds a client certificate to the consumer, by ``certificate`` (PEM; the
    leaf is then also a trust anchor: a self-signed client certificate needs
    no CA), ``certificate_id`` (a certificate entity), ``fingerprint``
    (SHA-256 of the DER; the certificate must chain to the plugin's CAs) or
    ``subject_name`` (matched against the SAN values, then the CN), optionally
    constrained to certificates issued by ``ca_certificate``.
``key_auth`` (Kong ``keyauth_credentials``)
    an API key; ``bound_certificates`` (fingerprints) bind it to client
    certificates (Tyk 5.12 certificate-token binding).
``subscription`` (Gravitee)
    the consumer may call ``service`` (plugins with ``require_subscription``).

Every credential has a ``status`` (``active``, ``scheduled``, ``revoked``) and
an optional validity window ``valid_from``/``valid_until`` (Unix seconds,
inclusive): a client rotates by adding its next certificate as ``scheduled``
with ``valid_from`` at the switch-over, then letting the old one reach
``valid_until`` — no maintenance window.  :meth:`Credential.refusal` says why
a credential does not count at a given time.

Reading (:func:`read_credential`) checks one credential's fields;
:func:`credential_problems` checks a whole configuration (references resolve,
a certificate belongs to one consumer only, an API key is unique).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Final

from cryptography.hazmat.primitives.serialization import Encoding

from trio_gw.errors import CertificateError, Problem
from trio_gw.model.fields import Context, Fields, describe, join_path
from trio_gw.model.identities import canonical, generated_id, normal_fingerprint
from trio_gw.model.values import InvalidValue, check_uuid
from trio_gw.pki.parse import parse_certificates

if TYPE_CHECKING:  # entities.py imports Credential from here
    from trio_gw.model.entities import Entities

__all__ = [
    "CREDENTIAL_FIELDS",
    "DECLARATIVE_KEYS",
    "KINDS",
    "STATUSES",
    "Credential",
    "credential_problems",
    "parse_fingerprint",
    "read_credential",
    "resolve_references",
]

#: Credential kinds.
KINDS: Final = ("mtls_auth", "key_auth", "subscription")
#: Credential statuses (Gravitee's rotation states; ``revoked`` never counts).
STATUSES: Final = ("active", "scheduled", "revoked")
#: Declarative key under a consumer (decK spelling) → kind.
DECLARATIVE_KEYS: Final = {
    "mtls_auth_credentials": "mtls_auth",
    "keyauth_credentials": "key_auth",
    "subscriptions": "subscription",
}
_COMMON: Final = ("id", "consumer", "status", "valid_from", "valid_until", "tags", "created_at", "updated_at")
#: Fields accepted per kind (``certificate`` also accepts a certificate entity id).
CREDENTIAL_FIELDS: Final[Mapping[str, tuple[str, ...]]] = {
    "mtls_auth": (*_COMMON, "subject_name", "ca_certificate", "certificate", "fingerprint"),
    "key_auth": (*_COMMON, "key", "bound_certificates"),
    "subscription": (*_COMMON, "service"),
}
_MAX_TIME: Final = 2**31 - 1
_MAX_KEY: Final = 1024


@dataclass(frozen=True)
class Credential:
    """One consumer credential (see the module docstring for each kind's fields).

    ``fingerprint`` is lowercase SHA-256 hex (derived from ``certificate``
    when that is given); ``bound_certificates`` are fingerprints too.
    """

    id: str
    kind: str
    consumer: str
    subject_name: str | None = None
    ca_certificate: str | None = None
    certificate: str | None = None
    certificate_id: str | None = None
    fingerprint: str | None = None
    key: str | None = None
    bound_certificates: tuple[str, ...] = ()
    service: str | None = None
    status: str = "active"
    valid_from: int | None = None
    valid_until: int | None = None
    tags: tuple[str, ...] = ()
    created_at: int = 0
    updated_at: int = 0

    def refusal(self, now: float) -> str | None:
        """Why the credential does not count at ``now``, or ``None`` when it does.

        Args:
            now: Unix seconds.

        Returns:
            ``"revoked"``, ``"not_yet_valid"`` (before ``valid_from``, or
            ``scheduled`` without a start), ``"expired"`` (after
            ``valid_until``) or ``None``.
        """
        if self.status == "revoked":
            return "revoked"
        if self.valid_until is not None and now > self.valid_until:
            return "expired"
        if self.valid_from is not None and now < self.valid_from:
            return "not_yet_valid"
        if self.status == "scheduled" and self.valid_from is None:
            return "not_yet_valid"
        return None

    def to_json(self) -> dict[str, Any]:
        """The Admin API / declarative representation (unset fields omitted, key shown)."""
        out: dict[str, Any] = {"id": self.id, "consumer": {"id": self.consumer}}
        for name in CREDENTIAL_FIELDS[self.kind]:
            if name in ("id", "consumer"):
                continue
            value = getattr(self, name)
            if name == "certificate" and value is None:
                value = self.certificate_id
            if value is not None and value != ():
                out[name] = list(value) if isinstance(value, tuple) else value
        return out


def parse_fingerprint(value: str) -> str:
    """Read a certificate fingerprint: ``sha256:<hex>`` or 64 hex digits (colons allowed).

    Args:
        value: the fingerprint as written.

    Returns:
        64 lowercase hex digits.

    Raises:
        InvalidValue: not a SHA-256 fingerprint.
    """
    found = normal_fingerprint(value if value.lower().startswith("sha256:") else f"sha256:{value}")
    if found is None:
        raise InvalidValue("expected a SHA-256 fingerprint (sha256:<64 hex digits>)")
    return found


def read_credential(
    kind: str, raw: Mapping[Any, Any], path: str, consumer: str, ctx: Context
) -> Credential | None:
    """Read one credential of ``consumer``; problems go to ``ctx.problems``.

    Args:
        kind: one of :data:`KINDS`.
        raw: the credential's fields (``consumer`` may be given; it must then
            name the owner's id).
        path: where it was found, for problems.
        consumer: the owning consumer's id.
        ctx: the load context (``now`` is the default ``created_at``).

    Returns:
        The credential, or ``None`` when a problem was recorded.
    """
    if not isinstance(raw, Mapping):
        ctx.problems.append(Problem(path, f"expected a mapping, got {describe(raw)}"))
        return None
    before = len(ctx.problems)
    f = Fields(raw, path, ctx)
    f.check_keys(CREDENTIAL_FIELDS[kind])
    values: dict[str, Any] = {
        "status": f.choice("status", STATUSES, "active"),
        "valid_from": f.integer("valid_from", 0, _MAX_TIME, None),
        "valid_until": f.integer("valid_until", 0, _MAX_TIME, None),
        "tags": f.tags(),
        **f.timestamps(),
    }
    _check_owner(f, consumer)
    window = (values["valid_from"], values["valid_until"])
    if None not in window and window[0] > window[1]:
        f.report("valid_until", "must not be before valid_from")
    values.update(_KIND_READERS[kind](f))
    if len(ctx.problems) > before:
        return None
    given = f.identity()
    content = {k: v for k, v in raw.items() if k not in ("id", "created_at", "updated_at")}
    cred_id = given or generated_id(f"credentials:{kind}:{consumer}:{canonical(content)}")
    return Credential(id=cred_id, kind=kind, consumer=consumer, **values)


def _check_owner(f: Fields, consumer: str) -> None:
    owner = f.get("consumer")
    if isinstance(owner, Mapping):
        owner = owner.get("id")
    if owner is not None and owner != consumer:
        f.report("consumer", "must be the consumer the credential is listed under (or left out)")


def _read_mtls(f: Fields) -> dict[str, Any]:
    out: dict[str, Any] = {
        "subject_name": f.string("subject_name"),
        "ca_certificate": f.string("ca_certificate", _reference),
        "fingerprint": f.string("fingerprint", parse_fingerprint),
    }
    cert = f.get("certificate")
    if isinstance(cert, str) and _is_uuid(cert):
        out["certificate_id"] = cert.lower()
    elif cert is not None:
        pem, fingerprint = _read_certificate(f, cert)
        if out["fingerprint"] is not None and fingerprint is not None and fingerprint != out["fingerprint"]:
            f.report("fingerprint", "does not match the certificate given")
        out.update(certificate=pem, fingerprint=fingerprint or out["fingerprint"])
    if cert is None and not any(out.get(k) for k in ("subject_name", "fingerprint")):
        f.report(None, "give one of subject_name, certificate or fingerprint")
    elif out["subject_name"] and (cert is not None or f.get("fingerprint") is not None):
        f.report("subject_name", "give either subject_name or a certificate/fingerprint, not both")
    return out


def _read_certificate(f: Fields, value: object) -> tuple[str | None, str | None]:
    if not isinstance(value, str):
        f.report("certificate", f"expected a PEM certificate or a certificate id, got {describe(value)}")
        return None, None
    try:
        leaf = parse_certificates(value)[0]
    except CertificateError as exc:
        f.report("certificate", str(exc))
        return None, None
    der = leaf.public_bytes(Encoding.DER)
    return leaf.public_bytes(Encoding.PEM).decode("ascii"), hashlib.sha256(der).hexdigest()


def _read_key_auth(f: Fields) -> dict[str, Any]:
    key = f.string("key", required=True)
    if key is not None and (len(key) > _MAX_KEY or not key.isprintable() or key.strip() != key):
        f.report("key", f"expected printable text without surrounding spaces, at most {_MAX_KEY} characters")
    return {"key": key, "bound_certificates": f.strings("bound_certificates", _bound_certificate)}


def _bound_certificate(value: str) -> str:
    if "-----BEGIN" in value:
        try:
            der = parse_certificates(value)[0].public_bytes(Encoding.DER)
        except CertificateError as exc:
            raise InvalidValue(str(exc)) from exc
        return hashlib.sha256(der).hexdigest()
    return parse_fingerprint(value)


def _read_subscription(f: Fields) -> dict[str, Any]:
    return {"service": f.string("service", required=True)}


def _reference(value: str) -> str:
    return value.lower() if _is_uuid(value) else value


def _is_uuid(value: str) -> bool:
    try:
        check_uuid(value)
    except InvalidValue:
        return False
    return True


_KIND_READERS: Final = {"mtls_auth": _read_mtls, "key_auth": _read_key_auth, "subscription": _read_subscription}


def resolve_references(entities: Entities, credential: Credential) -> Credential:
    """Turn a subscription's service name and a CA fingerprint into ids, when they resolve.

    Args:
        entities: the configuration the credential belongs to.
        credential: the credential as read.

    Returns:
        The credential with ids where names or fingerprints were written
        (unresolvable references are left for :func:`credential_problems`).
    """
    changes: dict[str, Any] = {}
    if credential.service is not None and credential.service not in entities.services:
        named = [s.id for s in entities.services.values() if s.name == credential.service]
        if named:
            changes["service"] = named[0]
    ca = credential.ca_certificate
    if ca is not None and ca not in entities.ca_certificates:
        digest = normal_fingerprint(ca)
        found = [c.id for c in entities.ca_certificates.values() if digest and c.cert_digest == digest]
        if found:
            changes["ca_certificate"] = found[0]
    if not changes:
        return credential
    return replace(credential, **changes)


def credential_problems(entities: Entities) -> list[Problem]:
    """Check every credential against the configuration.

    Rules: the consumer exists; ``ca_certificate``, ``certificate_id`` and
    ``service`` name existing entities; a certificate (fingerprint) is bound
    to one consumer only (Gravitee); an API key is unique (Kong).

    Args:
        entities: the configuration.

    Returns:
        Problems at ``credentials[<id>].<field>`` (empty when consistent).
    """
    return list(_problems(entities))


def _problems(entities: Entities) -> Iterator[Problem]:
    owners: dict[str, tuple[str, str]] = {}
    keys: dict[str, str] = {}
    for cred in sorted(entities.credentials.values(), key=lambda c: c.created_at):
        at = f"credentials[{cred.id}]"
        yield from _reference_problems(entities, cred, at)
        fingerprint = _fingerprint_of(entities, cred)
        if cred.kind == "mtls_auth" and fingerprint is not None:
            owner = owners.setdefault(fingerprint, (cred.consumer, cred.id))
            if owner[0] != cred.consumer:
                yield Problem(join_path(at, "certificate"),
                              f"certificate sha256:{fingerprint} already belongs to consumer {owner[0]} "
                              f"(credential {owner[1]})")
        if cred.kind == "key_auth" and cred.key is not None:
            other = keys.setdefault(cred.key, cred.id)
            if other != cred.id:
                yield Problem(join_path(at, "key"), f"key already used by credential {other}")


def _reference_problems(entities: Entities, cred: Credential, at: str) -> Iterator[Problem]:
    if cred.consumer not in entities.consumers:
        yield Problem(join_path(at, "consumer"), f"no consumer with id {cred.consumer!r}")
    checks = (
        ("ca_certificate", cred.ca_certificate, entities.ca_certificates, "CA certificate"),
        ("certificate", cred.certificate_id, entities.certificates, "certificate"),
        ("service", cred.service, entities.services, "service"),
    )
    for name, value, targets, what in checks:
        if value is not None and value not in targets:
            yield Problem(join_path(at, name), f"no {what} with id {value!r}")


def _fingerprint_of(entities: Entities, cred: Credential) -> str | None:
    if cred.fingerprint is not None or cred.certificate_id is None:
        return cred.fingerprint
    target = entities.certificates.get(cred.certificate_id)
    if target is None:
        return None
    der = parse_certificates(target.cert)[0].public_bytes(Encoding.DER)
    return hashlib.sha256(der).hexdigest()
