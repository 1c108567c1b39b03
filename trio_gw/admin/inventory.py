"""``GET /certificates/inventory``: every certificate the node depends on, as JSON, and the page that shows it.

Theory of operation
-------------------
The Admin API's entity listings show Certificate and CA certificate
*entities*; the inventory (``model.inventory``) also knows the certificates of
settings files, consumer credentials, the ssl plugin and ACME, in every role.
:func:`inventory_listing` presents it Kong style (``{"data": [...], "next":
null}``), filtered by ``role`` (``server,ca`` or repeated) and
``expiring_within`` (``30d``, ``12h``... as on ``/certificates``), sorted by
expiry, with:

* per certificate: role, key, id, source, subject, issuer, SANs, serial,
  SHA-256 fingerprint, key type and size, validity, ``days_to_expiry``,
  ``status`` (``expired`` / ``critical`` / ``warning`` / ``not_yet_valid`` /
  ``ok``), who uses it, and ``revocation`` when the node knows it (an OCSP
  answer or a CRL; the field is absent otherwise).  Never key material;
* ``timeline``: the next :data:`TIMELINE_DAYS` days in buckets of
  :data:`BUCKET_DAYS`, each with the keys of the certificates expiring in it,
  plus how many have expired already;
* ``counts`` by status and by role, and the thresholds used.

The page (``/ui/certificates``, its CSS and script) is package data under
``admin/ui/``, read once per process like ``tls/cipher_table.json``; it loads
this JSON from the same origin, with a Content-Security-Policy that allows
nothing else.  Time comes in as ``now``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any, Final

from trio_gw.admin import errors
from trio_gw.admin.listing import parse_duration
from trio_gw.model.inventory import CertificateFacts, Inventory, Role
from trio_gw.pki.info import SECONDS_PER_DAY

__all__ = [
    "BUCKET_DAYS",
    "CRITICAL_DAYS",
    "TIMELINE_DAYS",
    "UI_ASSETS",
    "CertificateView",
    "RevocationStatus",
    "inventory_listing",
    "ui_asset",
]

#: The timeline covers this many days from now, in buckets of :data:`BUCKET_DAYS`.
TIMELINE_DAYS: Final = 90
BUCKET_DAYS: Final = 7
#: Fewer days left than this is ``critical`` (the warning threshold is the monitor's).
CRITICAL_DAYS: Final = 7
#: Served paths → (package file, content type).
UI_ASSETS: Final = {
    "/ui/certificates": ("certificates.html", "text/html; charset=utf-8"),
    "/ui/certificates.css": ("certificates.css", "text/css; charset=utf-8"),
    "/ui/certificates.js": ("certificates.js", "text/javascript; charset=utf-8"),
    "/ui/certificates.svg": ("certificates.svg", "image/svg+xml"),
}
#: The page may load its own script, style and JSON, nothing else; it may not be framed.
UI_HEADERS: Final = (
    ("content-security-policy", "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
                                "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("cache-control", "no-cache"),
)


@dataclass(frozen=True)
class RevocationStatus:
    """What the node last learnt about a certificate's revocation (OCSP or CRL)."""

    status: str  # good | revoked | unknown
    source: str  # ocsp | crl
    checked_at: int
    next_update: int | None = None
    reason: str | None = None


@dataclass(frozen=True)
class CertificateView:
    """What the Admin API needs to show the inventory: filled from the live generation by its caller."""

    inventory: Inventory
    #: By SHA-256 fingerprint; a certificate missing here has no ``revocation`` field.
    revocation: Mapping[str, RevocationStatus] = field(default_factory=dict)
    #: The monitor's ``warning_threshold_days``: fewer days left is ``warning``.
    warning_days: int = 30


def inventory_listing(view: CertificateView, query: Mapping[str, Sequence[str]], *, now: int) -> dict[str, Any]:
    """The body of ``GET /certificates/inventory``.

    Args:
        view: the inventory and what is known about it.
        query: ``role`` (comma-separated, repeatable) and ``expiring_within``.
        now: Unix seconds.

    Returns:
        ``{"data": [...], "next": null, "timeline": ..., "counts": ..., "thresholds": ..., "generated_at": now}``.

    Raises:
        AdminError: 400 for an unknown role or a bad ``expiring_within``.
    """
    roles = _roles(query)
    window = query.get("expiring_within") or ()
    deadline = now + parse_duration(window[-1]) if window else None
    chosen = [f for f in view.inventory if (not roles or f.role in roles)
              and (deadline is None or f.info.not_after <= deadline)]
    chosen.sort(key=lambda f: (f.info.not_after, f.key))
    data = [_present(f, view, now) for f in chosen]
    counts: dict[str, Any] = {"total": len(data), "by_status": {}, "by_role": {}}
    for item in data:
        counts["by_status"][item["status"]] = counts["by_status"].get(item["status"], 0) + 1
        counts["by_role"][item["role"]] = counts["by_role"].get(item["role"], 0) + 1
    return {
        "data": data,
        "next": None,
        "generated_at": now,
        "thresholds": {"warning_days": view.warning_days, "critical_days": CRITICAL_DAYS},
        "counts": counts,
        "timeline": _timeline(chosen, now),
    }


def _roles(query: Mapping[str, Sequence[str]]) -> frozenset[Role]:
    names = [n for value in query.get("role") or () for n in value.split(",")]
    known = {r.value: r for r in Role}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise errors.invalid_option("role", f"unknown role {unknown[0]!r}; expected {', '.join(known)}")
    return frozenset(known[n] for n in names)


def _status(facts: CertificateFacts, now: int, warning_days: int) -> str:
    info = facts.info
    if info.is_expired(now):
        return "expired"
    if info.is_not_yet_valid(now):
        return "not_yet_valid"
    days = info.days_to_expiry(now)
    if days < CRITICAL_DAYS:
        return "critical"
    return "warning" if days < warning_days else "ok"


def _present(facts: CertificateFacts, view: CertificateView, now: int) -> dict[str, Any]:
    info = facts.info
    item: dict[str, Any] = {
        "key": facts.key,
        "id": facts.label_id,
        "entity_id": facts.entity_id,
        "role": facts.role.value,
        "source": facts.source,
        "subject": info.subject,
        "common_names": list(info.common_names),
        "issuer": info.issuer,
        "sans": {"dns": list(info.dns_names), "ip": list(info.ip_addresses), "uri": list(info.uris),
                 "email": list(info.emails)},
        "serial": info.serial_hex,
        "fingerprint": info.fingerprint_sha256,
        "key_type": info.key_type,
        "key_size": info.key_size,
        "is_ca": info.is_ca,
        "not_before": info.not_before,
        "not_after": info.not_after,
        "days_to_expiry": info.days_to_expiry(now),
        "expired": info.is_expired(now),
        "status": _status(facts, now, view.warning_days),
        "used_by": [{"kind": u.kind, "id": u.id, "name": u.name} for u in facts.used_by],
    }
    known = view.revocation.get(info.fingerprint_sha256)
    if known is not None:
        item["revocation"] = {"status": known.status, "source": known.source, "checked_at": known.checked_at,
                              "next_update": known.next_update, "reason": known.reason}
    return item


def _timeline(chosen: Sequence[CertificateFacts], now: int) -> dict[str, Any]:
    end = now + TIMELINE_DAYS * SECONDS_PER_DAY
    buckets = []
    for start in range(now, end, BUCKET_DAYS * SECONDS_PER_DAY):
        stop = min(start + BUCKET_DAYS * SECONDS_PER_DAY, end)
        keys = [f.key for f in chosen if start <= f.info.not_after < stop]
        buckets.append({"start": start, "end": stop, "count": len(keys), "keys": keys})
    return {
        "start": now,
        "end": end,
        "days": TIMELINE_DAYS,
        "bucket_days": BUCKET_DAYS,
        "buckets": buckets,
        "expired": sum(1 for f in chosen if f.info.is_expired(now)),
    }


def ui_asset(path: str) -> tuple[bytes, tuple[tuple[str, str], ...]] | None:
    """The page, stylesheet or script served at ``path``, with its headers; ``None`` for another path."""
    entry = UI_ASSETS.get(path)
    if entry is None:
        return None
    name, content_type = entry
    return _read_asset(name), (("content-type", content_type), *UI_HEADERS)


@cache
def _read_asset(name: str) -> bytes:
    """Package data, read once per process (like ``tls/cipher_table.json``): part of the code, not configuration."""
    return resources.files("trio_gw.admin").joinpath("ui", name).read_bytes()
