"""The Admin API's ``/acme`` endpoints as pure functions (Kong's acme plugin API).

Theory of operation
-------------------
``POST /acme`` (body ``{"host": "...", "test_http_challenge_flow": false}``)
issues or renews the certificate of one host; ``GET /acme/certificates``
lists the certificates ACME manages.  The IO (asking the CA, writing the
datastore) belongs to the runtime; what is decided here is pure:

* :func:`parse_acme_create` reads the body with Kong's messages (``host must
  be provided and containing a single domain``, ``port is not allowed in
  host``);
* :func:`acme_create_refusal` turns :func:`trio_gw.tls.acme.plan_certificate`'s
  plan into a refusal -- 400 for a host the plugin does not cover, 429 while
  the domain backs off after a failure (with when and why) -- or ``None``:
  an explicit request issues or renews whatever the expiry;
* :func:`acme_certificate_document` is the Certificate entity (with its SNIs
  and the :data:`ACME_TAG` tag) to write through the ordinary certificate
  write path, so the key is sealed like any other, every node and worker
  serves it, and expiry monitoring sees it;
* :func:`acme_certificate_request` is that write as the Admin API's own
  ``PUT /certificates/{id}`` (create, or replace with its SNIs on renewal), to
  run through :func:`trio_gw.admin.api.handle_admin_request` inside the node's
  compare-and-swap write;
* :func:`acme_created_body` / :func:`acme_failed_body` are the answers;
* :func:`list_acme_certificates` is Kong's listing, from the configuration
  (ACME-managed certificates are those carrying :data:`ACME_TAG`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Final
from urllib.parse import parse_qsl

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from trio_gw.admin.api import AdminRequest
from trio_gw.admin.errors import AdminError, bad_body
from trio_gw.model.entities import Entities
from trio_gw.model.inventory import ACME_TAG as INVENTORY_ACME_TAG
from trio_gw.pki.info import describe_certificate
from trio_gw.pki.parse import parse_certificates
from trio_gw.tls.acme import AcmeAction, AcmePlan

__all__ = [
    "ACME_TAG",
    "AcmeEndpoint",
    "match_acme_path",
    "AcmeCreate",
    "acme_certificate_document",
    "acme_certificate_request",
    "acme_create_refusal",
    "acme_created_body",
    "acme_failed_body",
    "acme_managed_hosts",
    "list_acme_certificates",
    "parse_acme_create",
    "show_acme_certificate",
]

#: The tag that marks a Certificate entity as issued and renewed by ACME (the inventory's role ``acme``).
ACME_TAG: Final = INVENTORY_ACME_TAG


@dataclass(frozen=True)
class AcmeCreate:
    """A ``POST /acme`` request: the host, and Kong's dry-run flag (check the http-01 route only)."""

    host: str
    test_http_challenge_flow: bool = False


@dataclass(frozen=True)
class AcmeEndpoint:
    """Which ``/acme`` endpoint a request is for: ``create`` (POST /acme), ``renew`` (PATCH /acme),
    ``list`` (GET /acme/certificates) or ``show`` (GET /acme/certificates/{host})."""

    action: str
    host: str | None = None


_ACME_METHODS: Final = {"/acme": {"POST": "create", "PATCH": "renew"}, "/acme/certificates": {"GET": "list"}}


def match_acme_path(method: str, path: str) -> AcmeEndpoint | None:
    """The ``/acme`` endpoint of a request (Kong's acme plugin API), or ``None`` for any other path.

    Raises:
        AdminError: 405 for a method the endpoint does not have.
    """
    path = path.rstrip("/") or "/"
    method = method.upper()
    if path.startswith("/acme/certificates/") and path.count("/") == 3:
        host = path.rsplit("/", 1)[1].lower()
        methods = {"GET": "show"}
    elif path in _ACME_METHODS:
        host, methods = None, _ACME_METHODS[path]
    else:
        return None
    action = methods.get("GET" if method == "HEAD" else method)
    if action is None:
        raise AdminError(405, {"message": "Method not allowed"}, (("allow", ", ".join(methods)),))
    return AcmeEndpoint(action, host)


def parse_acme_create(body: bytes, content_type: str = "application/json") -> AcmeCreate:
    """Read a ``POST /acme`` body: JSON, or a form as ``curl -d host=...`` sends (Kong's examples).

    Args:
        body: the request body.
        content_type: its ``Content-Type`` (``application/x-www-form-urlencoded`` reads a form,
            where ``test_http_challenge_flow=true`` is the boolean, as Kong's lapis reads it).

    Raises:
        AdminError: 400 with Kong's message.
    """
    data: object
    if content_type.split(";", 1)[0].strip().lower() == "application/x-www-form-urlencoded":
        form = dict(parse_qsl(body.decode("latin-1"), keep_blank_values=True))
        data = {k: {"true": True, "false": False}.get(v, v) if k == "test_http_challenge_flow" else v
                for k, v in form.items()}
    else:
        try:
            data = json.loads(body or b"{}")
        except ValueError:
            raise bad_body("Cannot parse JSON body") from None
    host = data.get("host") if isinstance(data, dict) else None
    if not isinstance(host, str) or not host.strip() or "," in host or " " in host.strip():
        raise AdminError(400, {"message": "host must be provided and containing a single domain"})
    if ":" in host:
        raise AdminError(400, {"message": "port is not allowed in host"})
    flag = data.get("test_http_challenge_flow", False) if isinstance(data, dict) else False
    if not isinstance(flag, bool):
        raise AdminError(400, {"message": "test_http_challenge_flow must be a boolean"})
    return AcmeCreate(host.strip().lower().rstrip("."), flag)


def acme_create_refusal(plan: AcmePlan, host: str) -> tuple[int, dict[str, Any]] | None:
    """Whether an explicit ``POST /acme`` for ``host`` must be refused, given its plan.

    Returns:
        ``(status, body)`` for a refusal; ``None`` to go ahead (issue or renew).
    """
    if plan.action is AcmeAction.REFUSE:
        return 400, {"message": f"host {host} is not covered by the acme plugin (domains, allow_any_domain)",
                     "reason": plan.reason}
    if plan.action is AcmeAction.WAIT:
        return 429, {"message": f"the last attempt for {host} failed; backing off until {_stamp(plan.check_at)}",
                     "reason": plan.reason, "retry_at": plan.check_at}
    return None


def acme_created_body(host: str) -> dict[str, str]:
    """The 201 body (Kong's words)."""
    return {"message": f"certificate for host {host} is created"}


def acme_failed_body(host: str, reason: str, detail: str) -> dict[str, str]:
    """The 502 body of an issuance the CA did not complete (stable reason, the CA's words)."""
    return {"message": f"failed to update certificate for host {host}: {detail}", "reason": reason}


def acme_certificate_document(
    cert_pem: str, key_pem: str, domains: Sequence[str], *, certificate_id: str | None = None
) -> dict[str, Any]:
    """The Certificate entity, decK-shaped, for an issued certificate (written like any certificate).

    Args:
        cert_pem: the full chain chosen (leaf first).
        key_pem: its private key (sealed by the write path, never returned).
        domains: the names it was issued for (one SNI each).
        certificate_id: the id of the certificate it replaces (renewal), if any.

    Returns:
        ``{"cert", "key", "tags", "snis"[, "id"]}``.
    """
    document: dict[str, Any] = {"cert": cert_pem, "key": key_pem, "tags": [ACME_TAG],
                                "snis": [{"name": d} for d in domains]}
    if certificate_id is not None:
        document["id"] = certificate_id
    return document


def acme_certificate_request(document: Mapping[str, Any], certificate_id: str) -> AdminRequest:
    """The Admin API request that stores ``document`` as certificate ``certificate_id`` (created or replaced).

    Args:
        document: from :func:`acme_certificate_document`.
        certificate_id: the id to create, or of the certificate a renewal replaces.
    """
    body = {k: v for k, v in document.items() if k != "id"}
    return AdminRequest("PUT", f"/certificates/{certificate_id}", {}, {"content-type": "application/json"},
                        json.dumps(body).encode("ascii"))


def list_acme_certificates(entities: Entities, *, now: int, invalid_only: bool = False) -> dict[str, Any]:
    """``GET /acme/certificates``: one row per host served by an ACME-managed certificate.

    Args:
        entities: the configuration.
        now: Unix seconds (``valid``).
        invalid_only: Kong's ``?invalid_only``: only rows whose certificate is not valid now.

    Returns:
        ``{"data": [{"host", "certificate_id", "digest", "issuer_cn", "serial_number", "pubkey_type",
        "not_before", "not_after", "valid"}, ...]}`` sorted by host; dates as Kong
        shows them (``YYYY-MM-DD HH:MM:SS``, UTC), ``digest`` as Kong's (SHA-1, ``AB:CD:...``).
    """
    rows = []
    names: Mapping[str, list[str]] = _names_by_certificate(entities)
    for cert in entities.certificates.values():
        if ACME_TAG not in cert.tags:
            continue
        leaf = parse_certificates(cert.cert)[0]
        info = describe_certificate(leaf)
        cns = leaf.issuer.get_attributes_for_oid(NameOID.COMMON_NAME)
        issuer_cn = str(cns[0].value) if cns else None
        digest = ":".join(f"{b:02X}" for b in hashlib.sha1(_der(leaf), usedforsecurity=False).digest())
        for host in names.get(cert.id, []) or list(info.dns_names):
            rows.append({
                "host": host, "certificate_id": cert.id, "digest": digest, "issuer_cn": issuer_cn,
                "serial_number": info.serial_hex,
                "pubkey_type": info.key_type, "not_before": _stamp(info.not_before),
                "not_after": _stamp(info.not_after), "valid": info.not_before <= now <= info.not_after,
            })
    if invalid_only:
        rows = [r for r in rows if not r["valid"]]
    return {"data": sorted(rows, key=lambda r: (r["host"], r["certificate_id"]))}


def show_acme_certificate(entities: Entities, host: str, *, now: int) -> tuple[int, dict[str, Any]]:
    """``GET /acme/certificates/{host}``: the certificate ACME keeps for ``host`` (200), or 404 (Kong's message)."""
    rows = [r for r in list_acme_certificates(entities, now=now)["data"] if r["host"] == host]
    if not rows:
        return 404, {"message": f"Certificate for host {host} not found in storage"}
    return 200, {"data": rows[-1]}


def acme_managed_hosts(entities: Entities) -> dict[str, tuple[str, int]]:
    """The hosts ACME keeps certificates for: host -> (certificate id, not_after), for the renewal task.

    A host served by several ACME-managed certificates is renewed from the one expiring last.
    """
    names = _names_by_certificate(entities)
    found: dict[str, tuple[str, int]] = {}
    for cert in sorted(entities.certificates.values(), key=lambda c: c.id):
        if ACME_TAG not in cert.tags:
            continue
        info = describe_certificate(parse_certificates(cert.cert)[0])
        for host in names.get(cert.id, []) or list(info.dns_names):
            if host not in found or found[host][1] < info.not_after:
                found[host] = (cert.id, info.not_after)
    return found


def _names_by_certificate(entities: Entities) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for sni in sorted(entities.snis.values(), key=lambda s: s.name):
        found.setdefault(sni.certificate, []).append(sni.name)
    return found


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def _stamp(seconds: int | None) -> str:
    if seconds is None:
        return ""
    return datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
