"""Tyk's gateway ``event_handlers`` for the certificate events: webhooks and log prefixes.

Theory of operation
-------------------
Tyk registers handlers per event in ``tyk.conf``'s ``event_handlers`` (the
Classic shape, also used in API definitions)::

    event_handlers:
      events:
        CertificateExpiringSoon:
          - handler_name: eh_web_hook_handler
            handler_meta:
              method: POST
              target_path: https://hooks.example/certs
              header_map: {X-Team: platform}
              event_timeout: 60
          - handler_name: eh_log_handler
            handler_meta: {prefix: CERTS}

trio-gw reads that shape for the two events it fires
(``model.expiry_monitor``).  ``eh_web_hook_handler`` POSTs (or PUTs/PATCHes)
the event's metadata as JSON — Tyk's Go body templates (``template_path``) are
not supported and are refused by name, as is a method that sends no body.
``event_timeout`` (Tyk's per-webhook cooldown) is accepted when it is not
longer than ``event_cooldown_seconds``, which already holds back every repeat
of an event for longer; a longer one is refused.  ``eh_log_handler`` adds its
``prefix`` to the event's log line (every event is logged anyway).

Delivery (``net.webhooks``) follows :func:`retry_delays` and
:func:`is_retryable_status`: connection failures, timeouts, 429 and 5xx are
retried with exponential backoff; any other status is final.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import urlsplit

from trio_gw.errors import ConfigError, Problem
from trio_gw.model.expiry_monitor import EVENT_KINDS, ExpiryEvent

__all__ = [
    "EventHandlers",
    "WebhookDelivery",
    "WebhookTarget",
    "is_retryable_status",
    "parse_event_handlers",
    "retry_delays",
    "webhook_body",
]

WEBHOOK_HANDLER: Final = "eh_web_hook_handler"
LOG_HANDLER: Final = "eh_log_handler"
#: Methods that carry the event as a body (Tyk also allows GET and DELETE, which send none).
BODY_METHODS: Final = ("POST", "PUT", "PATCH")
#: Headers the gateway sets itself; a ``header_map`` may not replace them.
RESERVED_HEADERS: Final = frozenset({"host", "content-length", "content-type", "transfer-encoding", "connection"})
_TOKEN: Final = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


@dataclass(frozen=True)
class WebhookTarget:
    """Where and how one event is delivered."""

    url: str
    method: str = "POST"
    headers: tuple[tuple[str, str], ...] = ()
    #: For logs: ``event_handlers.events.CertificateExpired[0]``.
    where: str = field(default="", compare=False)


@dataclass(frozen=True)
class EventHandlers:
    """The handlers of each certificate event."""

    webhooks: Mapping[str, tuple[WebhookTarget, ...]] = field(default_factory=dict)
    log_prefixes: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def webhooks_for(self, kind: str) -> tuple[WebhookTarget, ...]:
        """The webhooks registered for ``kind`` (none by default)."""
        return self.webhooks.get(kind, ())

    def log_line(self, event: ExpiryEvent) -> str:
        """The event's log line, with the ``eh_log_handler`` prefixes when any."""
        prefixes = self.log_prefixes.get(event.kind, ())
        return " ".join((*prefixes, event.log_line)) if prefixes else event.log_line


def parse_event_handlers(raw: object, *, event_cooldown_seconds: int) -> EventHandlers:
    """Read the ``event_handlers`` setting (Tyk's Classic shape; module docstring).

    Args:
        raw: a mapping with ``events``, a JSON object in a string, or ``None``.
        event_cooldown_seconds: the monitor's cooldown, the ceiling of ``event_timeout``.

    Returns:
        The handlers.

    Raises:
        ConfigError: every problem, each under ``event_handlers.events.<Event>[i]...``.
    """
    root = "event_handlers"
    raw = _mapping(raw, root)
    unknown = [k for k in raw if k != "events"]
    if unknown:
        raise ConfigError(f"unknown key {unknown[0]!r}; expected only 'events'", root)
    events = _mapping(raw.get("events"), f"{root}.events")
    problems: list[Problem] = []
    webhooks: dict[str, tuple[WebhookTarget, ...]] = {}
    prefixes: dict[str, tuple[str, ...]] = {}
    for kind, handlers in events.items():
        where = f"{root}.events.{kind}"
        if kind not in EVENT_KINDS:
            problems.append(Problem(where, f"trio-gw fires no such event; known: {', '.join(EVENT_KINDS)}"))
            continue
        if not isinstance(handlers, Sequence) or isinstance(handlers, str):
            problems.append(Problem(where, "expected a list of handlers"))
            continue
        found = [_handler(h, f"{where}[{i}]", event_cooldown_seconds, problems) for i, h in enumerate(handlers)]
        webhooks[kind] = tuple(h for h in found if isinstance(h, WebhookTarget))
        prefixes[kind] = tuple(h for h in found if isinstance(h, str))
    if problems:
        raise ConfigError(problems)
    return EventHandlers(webhooks, prefixes)


def _mapping(raw: object, where: str) -> Mapping[str, Any]:
    if isinstance(raw, str):
        try:
            raw = json.loads(raw) if raw.strip() else None
        except ValueError as exc:
            raise ConfigError(f"expected a mapping or a JSON object: {exc}", where) from None
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ConfigError("expected a mapping", where)
    return raw


def _handler(raw: object, where: str, cooldown: int, problems: list[Problem]) -> WebhookTarget | str | None:
    if not isinstance(raw, Mapping):
        problems.append(Problem(where, "expected a mapping with handler_name and handler_meta"))
        return None
    name, meta = raw.get("handler_name"), raw.get("handler_meta") or {}
    extra = [k for k in raw if k not in ("handler_name", "handler_meta")]
    if extra:
        problems.append(Problem(f"{where}.{extra[0]}", "unknown key; expected handler_name and handler_meta"))
    if not isinstance(meta, Mapping):
        problems.append(Problem(f"{where}.handler_meta", "expected a mapping"))
        return None
    if name == WEBHOOK_HANDLER:
        return _webhook(meta, f"{where}.handler_meta", cooldown, problems)
    if name == LOG_HANDLER:
        prefix = meta.get("prefix", "")
        if not isinstance(prefix, str) or not prefix.isprintable():
            problems.append(Problem(f"{where}.handler_meta.prefix", "expected printable text"))
            return None
        return prefix
    problems.append(Problem(f"{where}.handler_name",
                            f"expected {WEBHOOK_HANDLER!r} or {LOG_HANDLER!r}, got {name!r}"))
    return None


def _webhook(meta: Mapping[str, Any], where: str, cooldown: int, problems: list[Problem]) -> WebhookTarget | None:
    before = len(problems)
    known = ("method", "target_path", "header_map", "event_timeout", "template_path")
    for key in meta:
        if key not in known:
            problems.append(Problem(f"{where}.{key}", f"unknown key; known: {', '.join(known[:4])}"))
    if "template_path" in meta:
        problems.append(Problem(f"{where}.template_path", "body templates are not supported: trio-gw sends the "
                                "event's metadata as JSON; remove template_path"))
    method = str(meta.get("method", "POST")).upper()
    if method not in BODY_METHODS:
        problems.append(Problem(f"{where}.method", f"expected one of {', '.join(BODY_METHODS)} (a method that "
                                f"carries the event), got {meta.get('method')!r}"))
    url = meta.get("target_path")
    if not _is_absolute_http_url(url):
        problems.append(Problem(f"{where}.target_path", f"expected an absolute http(s) URL, got {url!r}"))
    headers = _headers(meta.get("header_map") or {}, f"{where}.header_map", problems)
    timeout = meta.get("event_timeout", 0)
    if isinstance(timeout, bool) or not isinstance(timeout, int) or timeout < 0:
        problems.append(Problem(f"{where}.event_timeout", "expected a non-negative number of seconds"))
    elif timeout > cooldown:
        problems.append(Problem(f"{where}.event_timeout", f"{timeout}s is longer than "
                                f"certificate_expiry_monitor.event_cooldown_seconds ({cooldown}s), which already "
                                "holds back repeats: raise event_cooldown_seconds instead"))
    if len(problems) > before:
        return None
    return WebhookTarget(str(url), method, headers, where.rsplit(".", 1)[0])


def _headers(raw: object, where: str, problems: list[Problem]) -> tuple[tuple[str, str], ...]:
    if not isinstance(raw, Mapping):
        problems.append(Problem(where, "expected a mapping of header names to values"))
        return ()
    out = []
    for name, value in raw.items():
        if not isinstance(name, str) or not _TOKEN.match(name) or name.lower() in RESERVED_HEADERS:
            problems.append(Problem(f"{where}.{name}", "not a header name the webhook may set"))
        elif not isinstance(value, str) or not all(c == "\t" or " " <= c <= "~" for c in value):
            problems.append(Problem(f"{where}.{name}", "expected a printable ASCII value"))
        else:
            out.append((name, value))
    return tuple(out)


def _is_absolute_http_url(value: object) -> bool:
    if not isinstance(value, str) or not value.isascii() or any(c.isspace() for c in value):
        return False
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def webhook_body(event: ExpiryEvent) -> bytes:
    """The JSON body of a webhook: the event's metadata (``ExpiryEvent.metadata``), ASCII-escaped."""
    return json.dumps(event.metadata(), separators=(",", ":"), sort_keys=True).encode("ascii")


@dataclass(frozen=True)
class WebhookDelivery:
    """How hard one webhook delivery tries (``event_webhook_timeout``, ``event_webhook_retries``)."""

    #: Deadline of one attempt, seconds.
    timeout: float = 10.0
    #: Retries after the first attempt.
    retries: int = 3
    backoff_base: float = 1.0
    backoff_cap: float = 30.0

    def __post_init__(self) -> None:
        problems = []
        if not 0 < self.timeout <= 300:
            problems.append(Problem("event_webhook_timeout",
                                    f"expected more than 0s and at most 300s, got {self.timeout}"))
        if isinstance(self.retries, bool) or not 0 <= self.retries <= 10:
            problems.append(Problem("event_webhook_retries", f"expected 0 to 10, got {self.retries}"))
        if problems:
            raise ConfigError(problems)

    @property
    def delays(self) -> tuple[float, ...]:
        """The waits before each retry (:func:`retry_delays`)."""
        return retry_delays(self.retries, base=self.backoff_base, cap=self.backoff_cap)


def retry_delays(retries: int, *, base: float = 1.0, cap: float = 30.0) -> tuple[float, ...]:
    """Seconds to wait before each retry: ``base``, doubling, at most ``cap``.

    Args:
        retries: how many retries after the first attempt (0: none).
        base: the first delay.
        cap: the longest delay.

    Returns:
        ``retries`` delays, e.g. ``(1.0, 2.0, 4.0)``.
    """
    return tuple(min(cap, base * 2**i) for i in range(max(0, retries)))


def is_retryable_status(status: int) -> bool:
    """Whether a webhook answer is worth another try: 408, 429 and every 5xx.

    Args:
        status: the HTTP status received.

    Returns:
        True for a temporary failure; False for success (2xx) and other refusals.
    """
    return status in (408, 429) or 500 <= status <= 599
