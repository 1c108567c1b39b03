"""Tyk's certificate expiry monitor, as pure decisions over the inventory.

Theory of operation
-------------------
Tyk fires ``CertificateExpiringSoon`` and ``CertificateExpired`` events
(``security.certificate_expiry_monitor``: warn ``warning_threshold_days`` = 30
days ahead, check every ``check_cooldown_seconds`` = 3600, at most one event
per certificate every ``event_cooldown_seconds`` = 86400).  trio-gw does the
same for every fact of the inventory, whatever its role (Tyk watches only
certificates seen in requests or named by APIs), with these rules:

* the condition is evaluated per fact at each check: **expired** once ``now >
  not_after`` (``not_after`` itself is still valid, RFC 5280); **expiring
  soon** while ``not_after - now <= warning_threshold_days`` days;
* an event of one kind for one certificate fires when the condition holds and
  no event of that kind fired for it within ``event_cooldown_seconds``.  The
  record is keyed by ``(fact key, fingerprint, kind)``: a renewed certificate
  (same key, new fingerprint) is a new certificate, and an ``expired`` event is
  not held back by an ``expiring soon`` event of the same day (Tyk keys its
  cooldown by certificate only);
* the caller keeps the record (:class:`ExpiryCheck.fired`) between checks;
  entries that can no longer hold anything back are dropped, so it stays
  bounded by the inventory's size.

Time is a parameter (Unix seconds); nothing here reads a clock, logs or sends.
The IO shell runs :func:`check_expiry` at load and every
``check_cooldown_seconds``, logs :attr:`ExpiryEvent.log_line` and hands each
event to the webhooks (``model.event_handlers``).
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from trio_gw.errors import ConfigError, Problem
from trio_gw.model.inventory import CertificateFacts, Inventory, Role, expiry_notes
from trio_gw.pki.info import SECONDS_PER_DAY, format_timestamp

__all__ = [
    "CERTIFICATE_EXPIRED",
    "CERTIFICATE_EXPIRING_SOON",
    "EVENT_KINDS",
    "ExpiryCheck",
    "ExpiryEvent",
    "ExpiryMonitorPolicy",
    "FiredRecord",
    "check_expiry",
    "expiry_warnings",
    "parse_expiry_monitor",
]

#: Tyk's event names.
CERTIFICATE_EXPIRING_SOON: Final = "CertificateExpiringSoon"
CERTIFICATE_EXPIRED: Final = "CertificateExpired"
EVENT_KINDS: Final = (CERTIFICATE_EXPIRING_SOON, CERTIFICATE_EXPIRED)
#: Tyk's defaults (``config.DefaultWarningThresholdDays`` etc.).
DEFAULT_WARNING_THRESHOLD_DAYS: Final = 30
DEFAULT_CHECK_COOLDOWN_SECONDS: Final = 3600
DEFAULT_EVENT_COOLDOWN_SECONDS: Final = 86_400
#: The keys of Tyk's ``security.certificate_expiry_monitor`` block that trio-gw reads.
MONITOR_KEYS: Final = ("warning_threshold_days", "check_cooldown_seconds", "event_cooldown_seconds")
#: Tyk's ``cert_role`` words for trio-gw's roles (an ACME certificate is a server certificate).
TYK_CERT_ROLES: Final = {
    Role.SERVER: "server", Role.ACME: "server", Role.CA: "ca", Role.CONSUMER: "client",
    Role.UPSTREAM_CLIENT: "upstream",
}

#: ``(fact key, fingerprint, event kind)`` → when that event last fired.
FiredRecord = Mapping[tuple[str, str, str], int]


@dataclass(frozen=True)
class ExpiryMonitorPolicy:
    """Tyk's ``security.certificate_expiry_monitor``, validated."""

    warning_threshold_days: int = DEFAULT_WARNING_THRESHOLD_DAYS
    check_cooldown_seconds: int = DEFAULT_CHECK_COOLDOWN_SECONDS
    event_cooldown_seconds: int = DEFAULT_EVENT_COOLDOWN_SECONDS

    def __post_init__(self) -> None:
        problems = [Problem(f"certificate_expiry_monitor.{name}", "expected a positive integer")
                    for name in MONITOR_KEYS
                    if isinstance(getattr(self, name), bool) or not isinstance(getattr(self, name), int)
                    or getattr(self, name) < 1]
        if problems:
            raise ConfigError(problems)


def parse_expiry_monitor(raw: object, *, warning_days: int | None = None) -> ExpiryMonitorPolicy:
    """Read the ``certificate_expiry_monitor`` setting (Tyk's block, same keys).

    Args:
        raw: a mapping, a JSON object in a string (environment variables), or
            ``None`` for Tyk's defaults.
        warning_days: ``certificate_expiry_warning_days`` when it was set
            explicitly (``None`` when left at its default); it is the same
            threshold under trio-gw's older name.

    Returns:
        The policy.

    Raises:
        ConfigError: not a mapping, an unknown key (with the closest known
            one), a value that is not a positive integer, or both threshold
            settings given with different values.
    """
    where = "certificate_expiry_monitor"
    if isinstance(raw, str):
        try:
            raw = json.loads(raw) if raw.strip() else None
        except ValueError as exc:
            raise ConfigError(f"expected a mapping or a JSON object: {exc}", where) from None
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"expected a mapping of {', '.join(MONITOR_KEYS)}", where)
    problems = []
    for key in raw:
        if key not in MONITOR_KEYS:
            close = difflib.get_close_matches(str(key), MONITOR_KEYS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            problems.append(Problem(f"{where}.{key}", f"unknown key{hint}; known: {', '.join(MONITOR_KEYS)}"))
    if problems:
        raise ConfigError(problems)
    values = {k: raw[k] for k in MONITOR_KEYS if k in raw}
    if warning_days is not None:
        given = values.setdefault("warning_threshold_days", warning_days)
        if given != warning_days:
            raise ConfigError(f"certificate_expiry_warning_days is {warning_days} but "
                              f"certificate_expiry_monitor.warning_threshold_days is {given}: they are the same "
                              "threshold; set one of them", "certificate_expiry_warning_days")
    return ExpiryMonitorPolicy(**values)


@dataclass(frozen=True)
class ExpiryEvent:
    """One Tyk certificate event about one fact of the inventory."""

    kind: str
    facts: CertificateFacts
    #: When the check that fired it ran (Unix seconds).
    at: int

    @property
    def name(self) -> str:
        """Tyk's ``cert_name``: the first CN, else the subject, else the first SAN."""
        info = self.facts.info
        if info.common_names:
            return info.common_names[0]
        return info.subject or next(iter((*info.dns_names, *info.ip_addresses, *info.uris)), "")

    @property
    def message(self) -> str:
        """Tyk's wording: ``Certificate api.example is expiring in 5 days and 3 hours``."""
        left = self.facts.info.not_after - self.at
        if self.kind == CERTIFICATE_EXPIRED:
            return f"Certificate {self.name} is expired since {_days_and_hours(-left)}"
        return f"Certificate {self.name} is expiring in {_days_and_hours(left)}"

    def metadata(self) -> dict[str, Any]:
        """The event's metadata, JSON-ready: Tyk's fields, then trio-gw's.

        Tyk: ``message``, ``cert_id``, ``cert_name``, ``cert_role`` and
        ``expires_at``/``days_remaining`` (ExpiringSoon) or
        ``expired_at``/``days_since_expiry`` (Expired).  trio-gw adds both
        pairs to every event, ``role`` (its own word), ``subject``, ``issuer``,
        ``fingerprint``, ``source`` and ``used_by``.  Never key material.
        """
        info, days = self.facts.info, self.facts.info.days_to_expiry(self.at)
        return {
            "event": self.kind,
            "message": self.message,
            "cert_id": self.facts.label_id,
            "cert_name": self.name,
            "cert_role": TYK_CERT_ROLES[self.facts.role],
            "expires_at": format_timestamp(info.not_after),
            "days_remaining": days,
            **({"expired_at": format_timestamp(info.not_after),
                "days_since_expiry": (self.at - info.not_after) // SECONDS_PER_DAY}
               if self.kind == CERTIFICATE_EXPIRED else {}),
            "role": self.facts.role.value,
            "key": self.facts.key,
            "subject": info.subject,
            "issuer": info.issuer,
            "fingerprint": info.fingerprint_sha256,
            "source": self.facts.source,
            "used_by": [{"kind": u.kind, "id": u.id, "name": u.name} for u in self.facts.used_by],
            "fired_at": format_timestamp(self.at),
        }

    @property
    def log_line(self) -> str:
        """One log line: the event name, its message and who is affected."""
        users = ", ".join(f"{u.kind} {u.name or u.id}" for u in self.facts.used_by) or "no user"
        return (f"{self.kind}: {self.message} (certificate {self.facts.label_id}, role {self.facts.role.value}, "
                f"{self.facts.source}; used by {users}; not after {format_timestamp(self.facts.info.not_after)})")


@dataclass(frozen=True)
class ExpiryCheck:
    """The outcome of one check: events to fire, the record to keep, when to check next."""

    events: tuple[ExpiryEvent, ...]
    fired: FiredRecord = field(default_factory=dict)
    next_check_at: int = 0


def check_expiry(inventory: Inventory, *, now: int, fired: FiredRecord,
                 policy: ExpiryMonitorPolicy = ExpiryMonitorPolicy()) -> ExpiryCheck:
    """Decide which events one check fires (rules: module docstring).

    Args:
        inventory: every certificate of the live configuration.
        now: the check's time (Unix seconds).
        fired: the record returned by the previous check (``{}`` at first).
        policy: thresholds and cooldowns.

    Returns:
        The events, in inventory order, and the record for the next check.
    """
    cooldown = policy.event_cooldown_seconds
    present = {(f.key, f.info.fingerprint_sha256) for f in inventory}
    record = {k: t for k, t in fired.items() if now - t < cooldown and (k[0], k[1]) in present}
    events: list[ExpiryEvent] = []
    for facts in inventory:
        kind = _condition(facts, now, policy)
        if kind is None:
            continue
        key = (facts.key, facts.info.fingerprint_sha256, kind)
        if key in record:
            continue
        record[key] = now
        events.append(ExpiryEvent(kind, facts, now))
    return ExpiryCheck(tuple(events), record, now + policy.check_cooldown_seconds)


def _condition(facts: CertificateFacts, now: int, policy: ExpiryMonitorPolicy) -> str | None:
    info = facts.info
    if info.is_expired(now):
        return CERTIFICATE_EXPIRED
    if info.not_after - now <= policy.warning_threshold_days * SECONDS_PER_DAY:
        return CERTIFICATE_EXPIRING_SOON
    return None


def expiry_warnings(inventory: Inventory, *, now: int, warn_days: int) -> tuple[str, ...]:
    """The warning lines of every certificate that is expired, expiring soon or not valid yet.

    Logged at load (every new configuration) and daily, independent of the
    events' cooldown: an operator reading the log sees every role.

    Args:
        inventory: the configuration's certificates.
        now: Unix seconds.
        warn_days: warn when fewer whole days than this remain.

    Returns:
        ``"server certificate c1 (CN=api.example; certificate entity; used by sni api.example): expires in 5
        days (2025-01-13T00:00:00Z)"``... one per fact and note.
    """
    lines = []
    for facts in inventory:
        for note in expiry_notes(facts.info, now=now, warn_days=warn_days):
            users = ", ".join(f"{u.kind} {u.name or u.id}" for u in facts.used_by) or "no user"
            lines.append(f"{facts.role.value} certificate {facts.label_id} ({facts.info.subject}; "
                         f"{facts.source}; used by {users}): {note}")
    return tuple(lines)


def _days_and_hours(seconds: int) -> str:
    days, hours = seconds // SECONDS_PER_DAY, seconds % SECONDS_PER_DAY // 3600
    if days and hours:
        return f"{days} days and {hours} hours"
    if days:
        return f"{days} days"
    return f"{hours} hours"
