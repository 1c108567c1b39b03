"""Rejected handshakes in the log, one line per reason and client network per interval (pure).

Theory of operation
-------------------
Every failed inbound handshake has a reason code
(``tls.handshake_errors.classify_handshake_failure``) and is counted in
``trio_gw_tls_handshake_failures_total``; the log must name each one too, but
a scanner opening thousands of connections must not flood it.
:class:`RejectionLogLimiter` keys failures by ``(reason, client network)`` —
IPv4 /24, IPv6 /64 (an IPv4-mapped IPv6 address counts as IPv4), so one scan
from one network is one key — and lets the first failure of a key through,
then holds back the others until ``interval`` seconds have passed since that
line; the next line of the key says how many were held back
(:attr:`RejectionLine.suppressed`).  :meth:`RejectionLogLimiter.flush`, run
periodically, reports keys whose interval ended with failures held back (a scan
that stopped is still told) and forgets quiet keys.

Memory is bounded: at most ``max_keys`` networks are tracked; past that, new
networks share one key per reason (network ``*``), so a scan from many
networks still yields one line per reason per interval.  Time is a parameter;
nothing here logs.  The IO layer calls :meth:`~RejectionLogLimiter.admit` on the
handshake failure path and logs :func:`format_rejection` of what it returns.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

__all__ = ["DEFAULT_INTERVAL", "RejectionLine", "RejectionLogLimiter", "client_network", "format_rejection"]

#: Seconds between two lines of one key (setting ``rejection_log_interval``).
DEFAULT_INTERVAL: Final = 60.0
#: Networks tracked at once before new ones share a key per reason.
DEFAULT_MAX_KEYS: Final = 10_000
#: The network of the shared key.
OVERFLOW: Final = "*"


@dataclass(frozen=True)
class RejectionLine:
    """A log line to write: the failure let through, and how many of its key were held back before it."""

    reason: str
    network: str
    client_ip: str
    #: Failures of this key held back since its previous line.
    suppressed: int
    #: ``True`` for a summary from :meth:`RejectionLogLimiter.flush` (no new failure: ``client_ip`` is the last one).
    summary: bool = False


@dataclass
class _Key:
    since: float
    held: int
    last_ip: str


def client_network(client_ip: str) -> str:
    """The network a client address is counted in: IPv4 /24, IPv6 /64.

    Args:
        client_ip: the peer address as text.

    Returns:
        ``"203.0.113.0/24"``, ``"2001:db8:1:2::/64"``; the input unchanged when it is not an IP address.
    """
    try:
        address = ipaddress.ip_address(client_ip.split("%", 1)[0])
    except ValueError:
        return client_ip
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    prefix = 24 if address.version == 4 else 64
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


class RejectionLogLimiter:
    """Decides which handshake failures are logged (see the module docstring)."""

    def __init__(self, interval: float = DEFAULT_INTERVAL, *, max_keys: int = DEFAULT_MAX_KEYS) -> None:
        """Args:
            interval: seconds between two lines of one ``(reason, network)``; must be positive.
            max_keys: networks tracked before new ones share the overflow key.

        Raises:
            ValueError: ``interval`` not positive or ``max_keys`` below 1.
        """
        if not interval > 0 or max_keys < 1:
            raise ValueError("interval must be positive and max_keys at least 1")
        self.interval = interval
        self.max_keys = max_keys
        self._keys: dict[tuple[str, str], _Key] = {}

    def __len__(self) -> int:
        return len(self._keys)

    def admit(self, reason: str, client_ip: str, now: float) -> RejectionLine | None:
        """Record one failure; say whether it is logged.

        Args:
            reason: the failure's reason code.
            client_ip: the client's address.
            now: the time of the failure (seconds, any monotonic origin).

        Returns:
            The line to log, or ``None`` when held back (counted for the next line).
        """
        network = client_network(client_ip)
        key = (reason, network)
        state = self._keys.get(key)
        if state is None and len(self._keys) >= self.max_keys:
            network, key = OVERFLOW, (reason, OVERFLOW)
            state = self._keys.get(key)
        if state is None:
            self._keys[key] = _Key(now, 0, client_ip)
            return RejectionLine(reason, network, client_ip, 0)
        state.last_ip = client_ip
        if now - state.since < self.interval:
            state.held += 1
            return None
        held, state.since, state.held = state.held, now, 0
        return RejectionLine(reason, network, client_ip, held)

    def flush(self, now: float) -> list[RejectionLine]:
        """Summaries of the keys whose interval ended with failures held back; quiet keys are forgotten.

        Args:
            now: the current time, on the clock given to :meth:`admit`.

        Returns:
            One summary line per key with held-back failures whose interval has ended.
        """
        out: list[RejectionLine] = []
        for key, state in list(self._keys.items()):
            if now - state.since < self.interval:
                continue
            if state.held:
                out.append(RejectionLine(key[0], key[1], state.last_ip, state.held, summary=True))
                state.since, state.held = now, 0
            else:
                del self._keys[key]
        return out


def format_rejection(line: RejectionLine, *, listener: str, interval: float,
                     details: Mapping[str, str | None] = {}) -> str:
    """The log line of a rejected handshake.

    Args:
        line: what :meth:`RejectionLogLimiter.admit` or ``flush`` returned.
        listener: which listener (``proxy``, ``admin``, ``status``).
        interval: the limiter's interval, for the held-back count.
        details: more facts (``sni``, ``version``, ``alert``...), each shown as ``name=value`` when not
            ``None``; client-controlled text is escaped so it cannot forge log lines.

    Returns:
        ``TLS handshake rejected: reason=unknown_ca client=203.0.113.7 network=203.0.113.0/24 listener=proxy
        sni=api.example (41 more from this network in the last 60s)``.
    """
    head = "TLS handshake rejections continued" if line.summary else "TLS handshake rejected"
    words = [f"reason={_safe(line.reason)}", f"client={_safe(line.client_ip)}", f"network={line.network}",
             f"listener={_safe(listener)}"]
    words += [f"{name}={_safe(value)}" for name, value in details.items() if value is not None]
    text = f"{head}: {' '.join(words)}"
    if line.suppressed:
        where = "from many networks" if line.network == OVERFLOW else "from this network"
        text += f" ({line.suppressed} more {where} in the last {interval:g}s)"
    return text


def _safe(value: str) -> str:
    """Printable ASCII, no spaces: anything else escaped (``\\x0a``...), so a value stays one word."""
    return "".join(c if "!" <= c <= "~" and c != "\\" else _escape(ord(c)) for c in value) or '""'


def _escape(code: int) -> str:
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"
