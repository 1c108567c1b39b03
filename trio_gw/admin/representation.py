"""Entities as the Admin API shows them, and as PATCH edits them.

:func:`present` gives Kong's JSON shape of an entity: every field, references
as ``{"id": ...}`` (or ``null``), lists as arrays.  Certificates and CA
certificates never show a private key (:func:`~trio_gw.model.certificates.redact_certificate`)
and carry read-only facts derived from the certificate (:data:`CERTIFICATE_FACTS`):
fingerprint, subject, issuer, SANs, key, validity and ``days_to_expiry`` from
``now``.  A certificate also shows the names of its SNIs in ``snis``.

:func:`editable_fields` is the inverse for PATCH: the fields of a stored entity
in the form its field rules read, so a patch merges into them and the whole
entity is validated again.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any, Final

from trio_gw.model.certificates import redact_certificate
from trio_gw.model.entities import (
    SNI,
    CACertificate,
    Certificate,
    Consumer,
    Entities,
    Plugin,
    Route,
    Service,
)
from trio_gw.pki.info import describe_certificate
from trio_gw.pki.parse import parse_certificates
from trio_gw.plugins.base import public_config

#: Read-only fields derived from a certificate, shown on GET and refused on writes.
CERTIFICATE_FACTS: Final = (
    "fingerprint", "subject", "issuer", "sans", "key_type", "key_size",
    "not_before", "not_after", "days_to_expiry", "expired",
)  # fmt: skip
_COMMON_FIELDS: Final = frozenset({"id", "tags", "created_at", "updated_at"})
#: Other read-only fields shown by the Admin API.
READ_ONLY: Final = frozenset({*CERTIFICATE_FACTS, "has_key_alt"})


def certificate_facts(pem: str, now: int) -> dict[str, Any]:
    """Describe a stored certificate's leaf for the Admin API.

    Args:
        pem: the stored (validated) PEM chain.
        now: current Unix time, for ``days_to_expiry`` and ``expired``.

    Returns:
        The :data:`CERTIFICATE_FACTS` fields.
    """
    info = describe_certificate(parse_certificates(pem)[0])
    return {
        "fingerprint": info.fingerprint_sha256,
        "subject": info.subject,
        "issuer": info.issuer,
        "sans": {"dns": list(info.dns_names), "ip": list(info.ip_addresses)},
        "key_type": info.key_type,
        "key_size": info.key_size,
        "not_before": info.not_before,
        "not_after": info.not_after,
        "days_to_expiry": info.days_to_expiry(now),
        "expired": info.is_expired(now),
    }


def not_after(pem: str) -> int:
    """The leaf's expiry (Unix seconds), for ``expiring_within``."""
    return describe_certificate(parse_certificates(pem)[0]).not_after


def _ref(value: str | None) -> dict[str, str] | None:
    return None if value is None else {"id": value}


def _common(entity: Any) -> dict[str, Any]:
    return {"id": entity.id, "tags": list(entity.tags), "created_at": entity.created_at, "updated_at": entity.updated_at}


def present(kind: str, entity: Any, entities: Entities, *, now: int) -> dict[str, Any]:
    """Give an entity in the Admin API's JSON shape.

    Args:
        kind: its collection (``services``, ...).
        entity: the entity.
        entities: the configuration (a certificate lists its SNIs).
        now: current Unix time (certificate facts).

    Returns:
        A JSON-ready dict, without private keys.
    """
    if isinstance(entity, Certificate):
        out = redact_certificate(entity)
        out["snis"] = sorted(s.name for s in entities.snis.values() if s.certificate == entity.id)
        return {**out, **certificate_facts(entity.cert, now)}
    if isinstance(entity, CACertificate):
        return {**_common(entity), "cert": entity.cert, "cert_digest": entity.cert_digest, "crls": list(entity.crls),
                **certificate_facts(entity.cert, now)}
    if isinstance(entity, Plugin):  # no private key either (the ssl plugin's config.key)
        return {**_common(entity), **_plain(entity), "config": public_config(entity.name, entity.config)}
    return {**_common(entity), **_plain(entity)}


def _plain(entity: Any) -> dict[str, Any]:
    if isinstance(entity, Service):
        return _service(entity)
    if isinstance(entity, Route):
        return {**_route_fields(entity), "service": _ref(entity.service)}
    if isinstance(entity, SNI):
        return {"name": entity.name, "certificate": {"id": entity.certificate}}
    if isinstance(entity, Consumer):
        return {"username": entity.username, "custom_id": entity.custom_id}
    if isinstance(entity, Plugin):
        return {
            "name": entity.name, "config": copy.deepcopy(dict(entity.config)), "enabled": entity.enabled,
            "protocols": list(entity.protocols), "service": _ref(entity.service), "route": _ref(entity.route),
            "consumer": _ref(entity.consumer),
        }  # fmt: skip
    raise TypeError(f"not an entity: {type(entity).__name__}")


def _service(service: Service) -> dict[str, Any]:
    """Every field of the dataclass (so fields added later are shown too), ids as Kong shows them."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(service):
        if f.name in _COMMON_FIELDS:
            continue
        value = getattr(service, f.name)
        out[f.name] = list(value) if isinstance(value, tuple) else value
    out["client_certificate"] = _ref(service.client_certificate)
    if service.proxy_url is not None:
        out["proxy_url"] = redact_url_password(service.proxy_url)
    return out


def redact_url_password(url: str) -> str:
    """Hide the password of ``scheme://user:password@host`` (a forward proxy's credentials).

    Args:
        url: the URL as stored.

    Returns:
        The URL with the password replaced by ``***`` (unchanged when it has none).
    """
    scheme, sep, rest = url.partition("://")
    userinfo, at, host = rest.rpartition("@")
    if not sep or not at or ":" not in userinfo:
        return url
    return f"{scheme}://{userinfo.split(':', 1)[0]}:***@{host}"


def _route_fields(route: Route) -> dict[str, Any]:
    return {
        "name": route.name, "protocols": list(route.protocols), "methods": list(route.methods),
        "hosts": list(route.hosts), "paths": list(route.paths),
        "headers": {name: list(values) for name, values in route.headers.items()}, "snis": list(route.snis),
        "https_redirect_status_code": route.https_redirect_status_code, "regex_priority": route.regex_priority,
        "strip_path": route.strip_path, "preserve_host": route.preserve_host, "path_handling": route.path_handling,
    }  # fmt: skip


def editable_fields(entity: Any) -> dict[str, Any]:
    """Give a stored entity's fields as its field rules read them (for PATCH).

    Args:
        entity: the entity.

    Returns:
        The writable fields (not ``id`` nor timestamps; references as ids;
        a certificate's private keys included: this never leaves the process).
    """
    if isinstance(entity, Certificate):
        pem = {"cert": entity.cert, "key": entity.key, "cert_alt": entity.cert_alt, "key_alt": entity.key_alt}
        return {**pem, "tags": list(entity.tags)}
    if isinstance(entity, CACertificate):
        return {"cert": entity.cert, "crls": list(entity.crls), "tags": list(entity.tags)}
    out = _plain(entity)
    out["tags"] = list(entity.tags)
    for key in ("service", "route", "consumer", "certificate", "client_certificate"):
        if isinstance(out.get(key), dict):
            out[key] = out[key]["id"]
    if isinstance(entity, Service):
        return _editable_service(entity)
    return out


def _editable_service(service: Service) -> dict[str, Any]:
    out: dict[str, Any] = {"tags": list(service.tags)}
    for f in dataclasses.fields(service):
        if f.name in _COMMON_FIELDS or f.name in ("client_certificate", "client_certificate_alternates"):
            continue
        value = getattr(service, f.name)
        # empty lists are "unset": TLS lists are refused on an http service even when empty
        out[f.name] = (list(value) or None) if isinstance(value, tuple) else value
    if service.client_certificate_alternates:
        out["certificates"] = [service.client_certificate, *service.client_certificate_alternates]
    else:
        out["client_certificate"] = service.client_certificate
    return out
