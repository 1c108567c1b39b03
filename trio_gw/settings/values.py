"""Value parsers of node settings: raw value (YAML, environment, ``--set``) → typed value, or ValueError.

Each parser names what it expected and what it got; :func:`trio_gw.settings.parse_settings`
prefixes the setting name and where the value came from.  ``ListenAddress`` and the
``*_listen`` parser live here too.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from dataclasses import dataclass

from trio_gw.errors import ConfigError
from trio_gw.tls.session import parse_size as tls_parse_size


#: The listen backlog when a listener names none: Kong's (``backlog=16384`` in its default ``proxy_listen``).
DEFAULT_BACKLOG = 16384


@dataclass(frozen=True)
class ListenAddress:
    """One entry of a ``*_listen`` setting: ``host:port`` plus flags (``ssl``, ``http2``, ``reuseport``,
    ``backlog=N``)."""

    host: str
    port: int
    ssl: bool = False
    http2: bool = False
    reuseport: bool = False
    #: The listen queue of pending connections (Kong's ``backlog=N``; the kernel caps it at
    #: ``net.core.somaxconn``).
    backlog: int = DEFAULT_BACKLOG

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        flags = "".join(f" {f}" for f in ("ssl", "http2", "reuseport") if getattr(self, f))
        if self.backlog != DEFAULT_BACKLOG:
            flags += f" backlog={self.backlog}"
        return f"{host}:{self.port}{flags}"


def serves_http2(address: ListenAddress, enable_http2: bool = False) -> bool:
    """Whether a proxy listener offers HTTP/2: an ``ssl`` listener with the ``http2`` flag or
    ``enable_http2`` on (Tyk).  HTTP/2 is negotiated by ALPN, so never on a plain listener."""
    return address.ssl and (address.http2 or enable_http2)


def http2_flag_warnings(
    proxy_listen: tuple[ListenAddress, ...],
    admin_listen: tuple[ListenAddress, ...] = (),
    status_listen: tuple[ListenAddress, ...] = (),
) -> list[str]:
    """One warning per listener whose ``http2`` flag has no effect (never ignored silently).

    Kong accepts ``http2`` on any listener; trio-gw offers HTTP/2 only through
    ALPN on ``ssl`` proxy listeners, and the Admin API and status listeners
    speak HTTP/1.1 only.
    """
    out = [
        f"proxy_listen {a}: `http2` needs `ssl` (HTTP/2 is offered by ALPN; h2c is not supported): "
        "this listener serves HTTP/1.1 only"
        for a in proxy_listen if a.http2 and not a.ssl
    ]
    for name, addresses in (("admin_listen", admin_listen), ("status_listen", status_listen)):
        out += [f"{name} {a}: `http2` is ignored: this listener serves HTTP/1.1 only" for a in addresses if a.http2]
    return out


# --- value parsers: raw value -> typed value, or ValueError with a reason -------------

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
_TRUE = {"on", "true", "yes", "1"}
_FALSE = {"off", "false", "no", "0"}


def parse_bool(v: object) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, (str, int)) and str(v).strip().lower() in _TRUE | _FALSE:
        return str(v).strip().lower() in _TRUE
    raise ValueError(f"expected on/off (a boolean), got {v!r}")


def parse_int(v: object) -> int:
    if isinstance(v, bool):
        raise ValueError(f"expected an integer, got {v!r}")
    if isinstance(v, int):
        return v
    if isinstance(v, str) and re.fullmatch(r"\s*-?\d+\s*", v):
        return int(v)
    raise ValueError(f"expected an integer, got {v!r}")


def parse_positive_int(v: object) -> int:
    n = parse_int(v)
    if n < 1:
        raise ValueError(f"expected a positive integer, got {n}")
    return n


def parse_size(v: object) -> int:
    """Bytes, from a number or nginx's ``"512k"``, ``"10m"``, ``"1g"`` (the parser of ``ssl_session_cache_size``)."""
    try:
        return tls_parse_size(v, path="")
    except ConfigError as exc:
        raise ValueError(exc.problems[0].message) from None


def parse_duration(v: object) -> float:
    """Seconds, from a number or ``"500ms"``, ``"30s"``, ``"5m"``, ``"1h"``, ``"1d"``."""
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        if v < 0:
            raise ValueError(f"expected a non-negative duration, got {v!r}")
        return float(v)
    if isinstance(v, str):
        m = _DURATION.match(v)
        if m:
            return float(m.group(1)) * _UNITS[m.group(2)]
    raise ValueError(f"expected a duration such as 30, '30s', '5m' or '1d', got {v!r}")


def parse_rotation_interval(v: object) -> float:
    """A session-ticket key rotation interval: a duration of at least 5 seconds.

    A new key is published a fifth of the interval (at most 5 minutes) before it encrypts,
    so that every worker and node has it first; below 5 s that lead would be under a second.
    """
    seconds = parse_duration(v)
    if seconds < 5:
        raise ValueError(f"expected at least 5s between session-ticket key rotations, got {v!r}")
    return seconds


def parse_str(v: object) -> str:
    if isinstance(v, (str, int, float)) and not isinstance(v, bool):
        return str(v)
    raise ValueError(f"expected a string, got {v!r}")


def parse_optional_str(v: object) -> str | None:
    if v is None or (isinstance(v, str) and v.strip().lower() in ("", "off", "none")):
        return None
    return parse_str(v)


def parse_str_list(v: object) -> tuple[str, ...]:
    """A YAML list, or a comma-separated string (as kong.conf and env vars write lists)."""
    if v is None:
        return ()
    if isinstance(v, str):
        return tuple(s.strip() for s in v.split(",") if s.strip())
    if isinstance(v, (list, tuple)):
        return tuple(parse_str(x) for x in v)
    raise ValueError(f"expected a list or a comma-separated string, got {v!r}")


def choice(*choices: str) -> Callable[[object], str]:
    def parse(v: object) -> str:
        s = parse_str(v).strip().lower()
        if s not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}, got {v!r}")
        return s

    return parse


def parse_staple_policy(v: object) -> str:
    """Envoy's ``ocsp_staple_policy``: ``lenient``, ``strict`` or ``must_staple`` (its enum names accepted too)."""
    s = parse_str(v).strip().lower()
    s = {"lenient_stapling": "lenient", "strict_stapling": "strict"}.get(s, s)
    if s not in ("lenient", "strict", "must_staple"):
        raise ValueError(f"expected one of lenient, strict, must_staple, got {v!r}")
    return s


def parse_listen(v: object) -> tuple[ListenAddress, ...]:
    """Parse ``"127.0.0.1:8000, 127.0.0.1:8443 ssl"`` (or a list); ``off`` gives no listener."""
    entries = parse_str_list(v)
    if len(entries) == 1 and entries[0].lower() == "off":
        return ()
    out = []
    for entry in entries:
        words = entry.split()
        addr, flags = words[0], [w.lower() for w in words[1:]]
        unknown = [f for f in flags if f not in ("ssl", "http2", "reuseport") and not f.startswith("backlog=")]
        if unknown:
            raise ValueError(f"{entry!r}: unknown flag {unknown[0]!r} (known: ssl, http2, reuseport, backlog=N)")
        backlog = DEFAULT_BACKLOG
        for flag in flags:
            if flag.startswith("backlog="):
                number = flag[len("backlog="):]
                if not number.isdigit() or not 1 <= int(number) <= 65535:
                    raise ValueError(f"{entry!r}: backlog={number} is not a number from 1 to 65535")
                backlog = int(number)
        m = re.fullmatch(r"\[([0-9a-fA-F:.]+)\]:(\d+)|([^:\s\[\]]+):(\d+)", addr)
        if not m:
            raise ValueError(f"{entry!r}: expected host:port (IPv6 as [::1]:port)")
        host = m.group(1) or m.group(3)
        port = int(m.group(2) or m.group(4))
        if port > 65535:
            raise ValueError(f"{entry!r}: port {port} is out of range")
        out.append(ListenAddress(host, port, "ssl" in flags, "http2" in flags, "reuseport" in flags, backlog))
    return tuple(out)


def parse_verify_client(v: object) -> str:
    """nginx ``ssl_verify_client``: ``off``, ``optional`` or ``on`` (YAML booleans read as off/on)."""
    if isinstance(v, bool):
        return "on" if v else "off"
    return choice("off", "optional", "on")(v)


def parse_plugin_names(v: object) -> tuple[str, ...]:
    """Kong's ``plugins``: names, ``bundled`` (every plugin of trio-gw) or ``off`` (none).

    Returns the enabled names, sorted; an unknown name is refused with the closest known one.
    """
    import trio_gw.plugins  # noqa: F401  (registers every plugin)
    from trio_gw.plugins.base import REGISTRY

    entries = ["off"] if v is False else [e.strip().lower() for e in parse_str_list(v)]  # YAML reads `off` as false
    if entries == ["off"]:
        return ()
    enabled: set[str] = set()
    for entry in entries:
        if entry == "bundled":
            enabled.update(REGISTRY)
        elif entry in REGISTRY:
            enabled.add(entry)
        else:
            close = difflib.get_close_matches(entry, [*REGISTRY, "bundled", "off"], n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"unknown plugin {entry!r}{hint}; known: bundled, off, {', '.join(sorted(REGISTRY))}")
    return tuple(sorted(enabled))


def parse_optional_bool(v: object) -> bool | None:
    return None if v is None else parse_bool(v)


def parse_optional_int(v: object) -> int | None:
    return None if v is None or (isinstance(v, str) and not v.strip()) else parse_int(v)


def parse_workers(v: object) -> int | None:
    """``workers``: a positive number of worker processes, or ``auto`` (``None``: one per usable core).

    Kong's ``nginx_worker_processes`` takes the same values (its default is ``auto``).
    """
    if isinstance(v, str) and v.strip().lower() == "auto":
        return None
    try:
        return parse_positive_int(v)
    except ValueError:
        raise ValueError(f"expected a positive number of worker processes or 'auto', got {v!r}") from None


def as_written(v: object) -> object:
    """Kept as written: validated by the pure policy parser that owns the setting (``trio_gw.tls``)."""
    return v

