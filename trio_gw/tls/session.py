"""TLS session resumption policy, and when a listener's context must be replaced.

Theory of operation
-------------------
Resumption is what makes TLS cheap (``docs/tls-stack.md`` §9: a resumed
TLS 1.2 handshake costs the server 60 µs against 195 µs for a full one), so it
is on by default, as in Kong and nginx: ``ssl_session_tickets = on``,
``ssl_session_timeout = 1d`` (Kong; nginx's own default is 5m).

The hazard (docs/tls-stack.md §10): session tickets are encrypted with the keys of the
*listener* context, the one new ``SSLStream``s are created with, not the
context the SNI callback swaps in.  A client holding a ticket issued before an
allowlist change resumes after it, with the old peer certificate, and no
verification runs.  Two rules close that gap, and this module decides the
second one:

1. the HTTP layer re-checks the leaf fingerprint against the current policy on
   every request (the leaf survives resumption);
2. when anything the listener context fixes changes (TLS policy, whether a
   client certificate is requested, or the client-auth policy), the listener
   context is replaced, which invalidates every outstanding ticket.

``ListenerPolicyKey`` is everything the listener context fixes;
``needs_new_listener_context`` compares the previous and the new key.  A
snapshot rebuild that changes nothing in the key keeps the context, so routine
changes (a new route, a rotated server certificate served through SNI) do not
throw away every client's session.

Disabling tickets: ``OP_NO_TICKET`` plus ``num_tickets = 0``.  TLS 1.3 then resumes
nothing (no ticket is issued); TLS 1.2 clients still resume by session ID, as with
nginx, from the server-side session cache.

The session cache: OpenSSL keeps the sessions of TLS 1.2 clients that resume by
session ID (no ticket) in the listener context.  Its size is Kong's
``ssl_session_cache_size`` (default ``10m``, nginx ``ssl_session_cache
shared:SSL:10m``), read as nginx reads a zone: about 4,000 sessions per megabyte,
so ``10m`` holds 40,000 sessions; when it is full the oldest session makes room.
Unlike nginx's shared zone, each worker process has its own cache (tickets, not
the cache, are what the workers share).  Replacing the listener context empties
it, as it invalidates the tickets.

Python 3.11 has no API for ``SSL_CTX_set_timeout``; the IO layer applies
``timeout_seconds`` through ctypes, as it does ``SSL_CTX_set_ciphersuites``.
``ssl`` is imported for its constants only.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Hashable
from dataclasses import dataclass

from trio_gw.errors import ConfigError, Problem

__all__ = [
    "DEFAULT_NUM_TICKETS",
    "DEFAULT_SESSION_CACHE_SIZE",
    "DEFAULT_SESSION_TICKETS",
    "DEFAULT_SESSION_TIMEOUT",
    "MAXIMUM_SESSION_TIMEOUT",
    "MINIMUM_SESSION_CACHE_SIZE",
    "ListenerPolicyKey",
    "SessionPolicy",
    "listener_context_change_reasons",
    "needs_new_listener_context",
    "parse_bool",
    "parse_duration",
    "parse_session_policy",
    "parse_size",
]

SECONDS = 1
MINUTES = 60 * SECONDS
HOURS = 60 * MINUTES
DAYS = 24 * HOURS
WEEKS = 7 * DAYS

#: Kong ``ssl_session_tickets = on`` (also nginx's default).
DEFAULT_SESSION_TICKETS = True
#: Kong ``ssl_session_timeout = 1d``.
DEFAULT_SESSION_TIMEOUT = 1 * DAYS
#: RFC 8446 §4.6.1: a TLS 1.3 ticket lifetime MUST NOT exceed 7 days.
MAXIMUM_SESSION_TIMEOUT = 7 * DAYS
#: OpenSSL's and Python's default ``SSLContext.num_tickets`` (TLS 1.3 tickets per handshake).
DEFAULT_NUM_TICKETS = 2
#: Kong ``ssl_session_cache_size = 10m`` (bytes).
DEFAULT_SESSION_CACHE_SIZE = 10 * 1024 * 1024
#: nginx: "one megabyte of the cache contains about 4000 sessions".
SESSIONS_PER_MEGABYTE = 4000
#: nginx's smallest shared zone: 8 pages of 4 KiB (about 125 sessions).
MINIMUM_SESSION_CACHE_SIZE = 32 * 1024
_SIZE_UNITS = {"": 1, "k": 1024, "m": 1024 * 1024, "g": 1024 * 1024 * 1024}
_SIZE = re.compile(r"([0-9]+)\s*([kmg]?)", re.IGNORECASE)

_UNITS = {"s": SECONDS, "m": MINUTES, "h": HOURS, "d": DAYS, "w": WEEKS}
_DURATION = re.compile(r"(?:[0-9]+\s*[smhdw]\s*)+")
_PART = re.compile(r"([0-9]+)\s*([smhdw])")
_TRUE = frozenset({"on", "true", "yes", "1"})
_FALSE = frozenset({"off", "false", "no", "0"})


@dataclass(frozen=True)
class SessionPolicy:
    """How a listener resumes sessions; validated on construction."""

    tickets: bool = DEFAULT_SESSION_TICKETS
    timeout_seconds: int = DEFAULT_SESSION_TIMEOUT
    #: The session cache's size in bytes, as configured (``ssl_session_cache_size``).
    cache_size: int = DEFAULT_SESSION_CACHE_SIZE

    def __post_init__(self) -> None:
        _check_timeout(self.timeout_seconds, path="")
        _check_cache_size(self.cache_size, path="")

    @property
    def cache_sessions(self) -> int:
        """How many sessions the cache holds (``SSL_CTX_sess_set_cache_size``): nginx's 4,000 per megabyte."""
        return self.cache_size * SESSIONS_PER_MEGABYTE // (1024 * 1024)

    @property
    def num_tickets(self) -> int:
        """Value for ``SSLContext.num_tickets``: OpenSSL's default, or 0 when tickets are off."""
        return DEFAULT_NUM_TICKETS if self.tickets else 0

    @property
    def options(self) -> int:
        """``ssl.OP_*`` flags to OR into the context options (``OP_NO_TICKET`` when off)."""
        return 0 if self.tickets else int(ssl.OP_NO_TICKET)

    def describe(self) -> str:
        """Return a short human-readable form for logs."""
        tickets = "session tickets on" if self.tickets else "session tickets off"
        return (f"{tickets}, session timeout {self.timeout_seconds} s, "
                f"session cache {self.cache_sessions} sessions")


@dataclass(frozen=True)
class ListenerPolicyKey:
    """Everything fixed by a listener's initial context.

    Attributes:
        tls_policy: the listener's downstream TLS policy (a frozen, hashable
            ``DownstreamTlsPolicy``; versions, options and tickets cannot be
            changed through the SNI callback).
        requests_client_cert: whether the listener context uses ``CERT_OPTIONAL``
            (some route served on it needs a client certificate).
        client_auth_generation: an opaque digest, computed by the snapshot
            compiler, of everything that decides which client certificates the
            listener accepts: trust anchors, allowlisted leaves, revocation
            lists, partial-chain flag.  ``""`` when no client certificate is requested.
    """

    tls_policy: Hashable
    requests_client_cert: bool = False
    client_auth_generation: str = ""


def listener_context_change_reasons(
    old: ListenerPolicyKey | None, new: ListenerPolicyKey
) -> tuple[str, ...]:
    """Say why the listener context must be replaced; empty if it may be kept.

    Args:
        old: the key of the context in use, or ``None`` if there is none yet.
        new: the key compiled from the new snapshot.

    Returns:
        Human-readable reasons, for the log line that accompanies the swap.
    """
    if old is None:
        return ("no listener context yet",)
    reasons = []
    if old.tls_policy != new.tls_policy:
        reasons.append("the TLS policy changed")
    if old.requests_client_cert != new.requests_client_cert:
        reasons.append("whether a client certificate is requested changed")
    if old.client_auth_generation != new.client_auth_generation:
        reasons.append(
            "the client-certificate policy changed; outstanding session tickets "
            "could otherwise resume past it"
        )
    return tuple(reasons)


def needs_new_listener_context(old: ListenerPolicyKey | None, new: ListenerPolicyKey) -> bool:
    """Return whether the listener context must be replaced (invalidating all tickets).

    Args:
        old: the key of the context in use, or ``None`` if there is none yet.
        new: the key compiled from the new snapshot.

    Returns:
        ``True`` when anything in the key differs (see ``listener_context_change_reasons``).
    """
    return bool(listener_context_change_reasons(old, new))


def parse_bool(value: object, *, path: str) -> bool:
    """Parse a flag: ``True``/``False`` or Kong's ``on``/``off``/``true``/``false`` (any case).

    Args:
        value: the raw setting value; ``yes``/``no`` and ``1``/``0`` are accepted too.
        path: the setting key, used as the error path.

    Returns:
        The flag.

    Raises:
        ConfigError: any other value.
    """
    if isinstance(value, bool):
        return value
    text = ""
    if isinstance(value, str):
        text = value.strip().lower()
    elif isinstance(value, int):
        text = str(value)
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ConfigError(f"expected on or off, got {value!r}", path=path)


def parse_duration(value: object, *, path: str) -> int:
    """Parse a duration in seconds: an int, ``"300"`` or nginx-style ``"5m"``, ``"1h30m"``.

    Args:
        value: the raw setting value.  Units: ``s``, ``m`` (minutes), ``h``,
            ``d``, ``w``.  nginx's ``ms``, ``M`` (months) and ``y`` are refused.
        path: the setting key, used as the error path.

    Returns:
        The duration in whole seconds.

    Raises:
        ConfigError: wrong type, negative, or an unknown unit.
    """
    number = _plain_number(value, "duration", path=path)
    if number is not None:
        return number
    if isinstance(value, str):
        text = value.strip()
        if text.isascii() and text.isdigit():
            return int(text)
        if _DURATION.fullmatch(text):
            return sum(int(n) * _UNITS[unit] for n, unit in _PART.findall(text))
    raise ConfigError(
        f"expected a duration such as 300, '5m', '1h30m' or '1d' (units s, m, h, d, w), "
        f"got {value!r}",
        path=path,
    )


def _plain_number(value: object, what: str, *, path: str) -> int | None:
    """``value`` when it is an int (not a bool), ``None`` when it is anything else.

    Raises:
        ConfigError: a negative int.
    """
    if not isinstance(value, int) or isinstance(value, bool):
        return None
    if value < 0:
        raise ConfigError(f"{what} {value!r} is negative", path=path)
    return value


def parse_size(value: object, *, path: str) -> int:
    """Parse an nginx size in bytes: an int, ``"1048576"``, ``"512k"``, ``"10m"`` or ``"1g"`` (any case).

    Raises:
        ConfigError: wrong type, negative, or an unknown unit.
    """
    number = _plain_number(value, "size", path=path)
    if number is not None:
        return number
    if isinstance(value, str):
        m = _SIZE.fullmatch(value.strip())
        if m and m.group(1).isascii():
            return int(m.group(1)) * _SIZE_UNITS[m.group(2).lower()]
    raise ConfigError(f"expected a size such as 10m, 512k or 1048576 (bytes; units k, m, g), got {value!r}",
                      path=path)


def parse_session_policy(
    tickets: object = None,
    timeout: object = None,
    cache_size: object = None,
    *,
    tickets_path: str = "ssl_session_tickets",
    timeout_path: str = "ssl_session_timeout",
    cache_size_path: str = "ssl_session_cache_size",
) -> SessionPolicy:
    """Parse ``ssl_session_tickets``, ``ssl_session_timeout`` and ``ssl_session_cache_size``;
    ``None`` takes the default.

    Args:
        tickets: raw flag (see ``parse_bool``) or ``None``.
        timeout: raw duration (see ``parse_duration``) or ``None``.
        cache_size: raw size (see ``parse_size``) or ``None``.
        tickets_path: key of the tickets setting (error path).
        timeout_path: key of the timeout setting (error path).
        cache_size_path: key of the cache size setting (error path).

    Returns:
        The validated policy.

    Raises:
        ConfigError: a malformed value, a timeout of 0 or above 7 days, or a cache under 32k.
    """
    problems: list[Problem] = []
    policy_tickets, seconds, size = DEFAULT_SESSION_TICKETS, DEFAULT_SESSION_TIMEOUT, DEFAULT_SESSION_CACHE_SIZE
    try:
        if tickets is not None:
            policy_tickets = parse_bool(tickets, path=tickets_path)
    except ConfigError as exc:
        problems.extend(exc.problems)
    try:
        if timeout is not None:
            seconds = parse_duration(timeout, path=timeout_path)
        _check_timeout(seconds, path=timeout_path)
    except ConfigError as exc:
        problems.extend(exc.problems)
    try:
        if cache_size is not None:
            size = parse_size(cache_size, path=cache_size_path)
        _check_cache_size(size, path=cache_size_path)
    except ConfigError as exc:
        problems.extend(exc.problems)
    if problems:
        raise ConfigError(problems)
    return SessionPolicy(tickets=policy_tickets, timeout_seconds=seconds, cache_size=size)


def _check_cache_size(size: int, *, path: str) -> None:
    if size < MINIMUM_SESSION_CACHE_SIZE:
        raise ConfigError(
            f"session cache size {size} bytes is under 32k, nginx's smallest cache (about 125 sessions); "
            "a TLS 1.2 client that sends no ticket resumes from this cache",
            path=path,
        )


def _check_timeout(seconds: int, *, path: str) -> None:
    if seconds <= 0:
        raise ConfigError(
            f"session timeout must be positive, got {seconds} s; to stop resumption "
            "set ssl_session_tickets = off",
            path=path,
        )
    if seconds > MAXIMUM_SESSION_TIMEOUT:
        raise ConfigError(
            f"session timeout {seconds} s is above 7 days ({MAXIMUM_SESSION_TIMEOUT} s), "
            "the longest ticket lifetime TLS 1.3 allows (RFC 8446 4.6.1)",
            path=path,
        )
