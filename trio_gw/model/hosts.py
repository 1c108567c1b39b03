"""Route host patterns (``route.hosts``): exact names, ``*.suffix`` and ``prefix.*`` wildcards, optional port.

Routing matches Host headers against them (:mod:`trio_gw.http.routing`) and the
listener's client-certificate policy works out which TLS server names can reach a
route (:mod:`trio_gw.tls.listener_client_auth`); both read them from here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from trio_gw.errors import ConfigError

__all__ = ["HostPattern", "parse_host_pattern"]

_LABELS = re.compile(r"[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*")


@dataclass(frozen=True, slots=True)
class HostPattern:
    """One entry of ``route.hosts``.

    ``kind`` is ``exact`` (``name`` is the host), ``suffix`` (``*.example.com``,
    ``name`` is ``.example.com``) or ``prefix`` (``example.*``, ``name`` is
    ``example.``); ``text`` is the entry as configured.
    """

    kind: str
    name: str
    port: int | None
    text: str

    def matches(self, host: str, port: int) -> bool:
        """Whether ``host``/``port`` (lowercase, effective port) match this entry."""
        if self.port is not None and self.port != port:
            return False
        if self.kind == "exact":
            return host == self.name
        if self.kind == "suffix":
            return len(host) > len(self.name) and host.endswith(self.name)
        return len(host) > len(self.name) and host.startswith(self.name)


def parse_host_pattern(text: str) -> HostPattern:
    """Parse a ``route.hosts`` entry.

    Args:
        text: ``example.com``, ``*.example.com``, ``example.*``, optionally ``:port``.

    Returns:
        The pattern.

    Raises:
        ConfigError: not one of those shapes.
    """
    value = text.strip().lower()
    port: int | None = None
    split_at = value.rfind("]:") + 1 if value.startswith("[") else value.find(":")
    if split_at > 0 and (value.startswith("[") or value.count(":") == 1):
        value, digits = value[:split_at], value[split_at + 1 :]
        if not digits.isdigit() or not 0 < int(digits) <= 65535:
            raise ConfigError(f"invalid port in host {text!r}")
        port = int(digits)
    value = value.rstrip(".") if value != "." else value
    if value.startswith("*."):
        kind, name, check = "suffix", value[1:], value[2:]
    elif value.endswith(".*"):
        kind, name, check = "prefix", value[:-1], value[:-2]
    else:
        kind, name, check = "exact", value, value
    valid_ip_literal = kind == "exact" and value.startswith("[") and value.endswith("]")
    if not valid_ip_literal and ("*" in check or not _LABELS.fullmatch(check)):
        raise ConfigError(f"invalid host {text!r}")
    return HostPattern(kind, name, port, text)
