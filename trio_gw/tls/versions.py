"""TLS protocol version policy: settings in, a validated ``VersionRange`` out.

Theory of operation
-------------------
OpenSSL enables a *contiguous* range of protocol versions, set with
``SSLContext.minimum_version``/``maximum_version``.  This module turns the
spellings users bring from other gateways into that range:

* one version: ``"1.2"``, ``1.2`` (YAML reads an unquoted ``1.2`` as a float),
  ``"TLSv1.2"`` (Kong, nginx), ``"TLSv1_2"`` (Envoy), ``"VersionTLS12"``
  (Traefik), ``771`` or ``"771"`` (Tyk's wire code points 769..772), or an
  ``ssl.TLSVersion``;
* a Kong ``ssl_protocols`` list: ``"TLSv1.2 TLSv1.3"`` or ``["TLSv1.2", "TLSv1.3"]``.

Facts from ``docs/tls-stack.md`` §4 this module exists for: stdlib ``ssl``
accepts ``minimum_version > maximum_version`` silently and every handshake then
fails with ``NO_PROTOCOLS_AVAILABLE``; and TLS 1.0/1.1 handshakes also need the
OpenSSL security level lowered to 0 (``downstream.py`` does that, through the
cipher policy).  So the range is validated here, at load time, and TLS 1.0/1.1
are only ever enabled when a setting asks for them; ``VersionRange.warnings()``
reports them as insecure (RFC 8996) so the IO layer can log it.

Decision for lists with a gap: Kong's ``ssl_protocols`` is a set, so it can say
"TLSv1.1 TLSv1.3" without TLSv1.2.  A min/max range cannot express that (the
``OP_NO_TLSv1_2`` flags that could are deprecated in Python), and spanning the
gap would enable a version the user left out.  Such a list is rejected with an
error naming the missing version.

``ssl`` is imported for its constants only.
"""

from __future__ import annotations

import re
import ssl
from dataclasses import dataclass

from trio_gw.errors import ConfigError

__all__ = [
    "DEFAULT_MAXIMUM_VERSION",
    "DEFAULT_MINIMUM_VERSION",
    "DEFAULT_VERSION_RANGE",
    "INSECURE_VERSIONS",
    "SUPPORTED_VERSIONS",
    "VersionRange",
    "parse_ssl_protocols",
    "parse_tls_version",
    "parse_version_range",
    "version_name",
]

TLSVersion = ssl.TLSVersion

#: Kong's default ``ssl_protocols = TLSv1.2 TLSv1.3`` (Mozilla "intermediate" v5.7);
#: also Tyk's default minimum (771) and Envoy's ``tls_minimum_protocol_version``.
DEFAULT_MINIMUM_VERSION = TLSVersion.TLSv1_2
#: TLS 1.3, the highest this OpenSSL supports (Kong, Envoy server default TLSv1_3).
#: Tyk defaults its maximum to 1.2; trio-gw follows Kong and Mozilla instead.
DEFAULT_MAXIMUM_VERSION = TLSVersion.TLSv1_3

#: The versions a range may contain, oldest first.  SSLv3 and below are refused.
SUPPORTED_VERSIONS: tuple[ssl.TLSVersion, ...] = (
    TLSVersion.TLSv1,
    TLSVersion.TLSv1_1,
    TLSVersion.TLSv1_2,
    TLSVersion.TLSv1_3,
)
#: Deprecated by RFC 8996; enabled only when a setting asks for them.
INSECURE_VERSIONS = frozenset({TLSVersion.TLSv1, TLSVersion.TLSv1_1})

# Kong/nginx spelling, used in messages and by ``VersionRange.as_ssl_protocols``.
_NAMES = {
    TLSVersion.TLSv1: "TLSv1",
    TLSVersion.TLSv1_1: "TLSv1.1",
    TLSVersion.TLSv1_2: "TLSv1.2",
    TLSVersion.TLSv1_3: "TLSv1.3",
}
_BY_MINOR = {minor: version for minor, version in enumerate(SUPPORTED_VERSIONS)}
_FLOATS = {
    1.0: TLSVersion.TLSv1,
    1.1: TLSVersion.TLSv1_1,
    1.2: TLSVersion.TLSv1_2,
    1.3: TLSVersion.TLSv1_3,
}
# "1.2", "tls1.2", "TLSv1.2", "TLSv1_2", "TLSv1", "VersionTLS12" (matched lower-cased).
_SPELLING = re.compile(r"(?:(?P<prefix>tls\s*v?|versiontls)\s*)?1(?:[._]?(?P<minor>[0-3]))?")
_SSL_SPELLING = re.compile(r"sslv?\s*[23](?:[._]0)?")
_EXPECTED = "expected 1.0, 1.1, 1.2 or 1.3 (also spelled TLSv1.2, TLSv1_2 or 771)"


def version_name(version: ssl.TLSVersion) -> str:
    """Return Kong's spelling of ``version`` (``"TLSv1.2"``).

    Args:
        version: a supported version.

    Returns:
        The name used by Kong's ``ssl_protocols`` and by nginx.
    """
    return _NAMES.get(version, version.name)


@dataclass(frozen=True)
class VersionRange:
    """An inclusive, validated range of TLS versions.

    Validated on construction: both ends must be in ``SUPPORTED_VERSIONS`` and
    ``minimum <= maximum``, else ``ConfigError`` (without a path; the
    ``parse_*`` functions check first and name the setting).
    """

    minimum: ssl.TLSVersion = DEFAULT_MINIMUM_VERSION
    maximum: ssl.TLSVersion = DEFAULT_MAXIMUM_VERSION

    def __post_init__(self) -> None:
        for end in (self.minimum, self.maximum):
            if end not in SUPPORTED_VERSIONS:
                raise ConfigError(f"unsupported TLS version {end!r}; {_EXPECTED}")
        if self.minimum > self.maximum:
            raise ConfigError(_inverted(self.minimum, self.maximum, "minimum", "maximum"))

    @property
    def versions(self) -> tuple[ssl.TLSVersion, ...]:
        """Every version in the range, oldest first."""
        return tuple(v for v in SUPPORTED_VERSIONS if self.minimum <= v <= self.maximum)

    def includes(self, version: ssl.TLSVersion) -> bool:
        """Return whether ``version`` is in the range."""
        return self.minimum <= version <= self.maximum

    def warnings(self) -> list[str]:
        """Return one message per insecure version the range enables (for the log)."""
        return [
            f"{version_name(v)} is enabled: it is deprecated (RFC 8996) and insecure"
            for v in self.versions
            if v in INSECURE_VERSIONS
        ]

    def as_ssl_protocols(self) -> str:
        """Return the range as a Kong ``ssl_protocols`` value that parses back to it."""
        return " ".join(version_name(v) for v in self.versions)

    def describe(self) -> str:
        """Return a short human-readable form such as ``"TLSv1.2 to TLSv1.3"``."""
        if self.minimum == self.maximum:
            return f"{version_name(self.minimum)} only"
        return f"{version_name(self.minimum)} to {version_name(self.maximum)}"


#: Secure default: TLS 1.2 to 1.3 (see ``DEFAULT_MINIMUM_VERSION``).
DEFAULT_VERSION_RANGE = VersionRange()


def parse_tls_version(value: object, *, path: str) -> ssl.TLSVersion:
    """Parse one TLS version in any of the spellings listed in the module doc.

    Args:
        value: the raw setting value (str, int, float or ``ssl.TLSVersion``).
        path: the setting key, used as the error path.

    Returns:
        The ``ssl.TLSVersion`` (TLSv1 .. TLSv1_3).

    Raises:
        ConfigError: unknown, unsupported (SSLv3, ``MINIMUM_SUPPORTED``...) or
            wrongly typed value; the message names the value.
    """
    version = _select_version(value)
    if version is None:
        raise ConfigError(_unknown_message(value), path=path)
    return version


def parse_ssl_protocols(value: object, *, path: str = "ssl_protocols") -> VersionRange:
    """Parse Kong's ``ssl_protocols`` (``"TLSv1.2 TLSv1.3"`` or a list) into a range.

    Args:
        value: a string of names separated by spaces or commas, or a list of
            names/numbers.
        path: the setting key, used as the error path.

    Returns:
        The range from the oldest to the newest listed version.

    Raises:
        ConfigError: empty list, unknown name, or a gap (e.g. TLSv1.1 and
            TLSv1.3 without TLSv1.2), which a min/max range cannot express.
    """
    items = _split_protocols(value, path=path)
    listed = sorted({parse_tls_version(item, path=path) for item in items})
    full = VersionRange(listed[0], listed[-1]).versions
    missing = [v for v in full if v not in listed]
    if missing:
        names = ", ".join(version_name(v) for v in listed)
        gap = ", ".join(version_name(v) for v in missing)
        raise ConfigError(
            f"{names} leaves out {gap}: TLS versions are enabled as one contiguous "
            f"range (minimum to maximum); add {gap} or remove the versions on one side",
            path=path,
        )
    return VersionRange(listed[0], listed[-1])


def parse_version_range(
    minimum: object,
    maximum: object,
    *,
    minimum_path: str,
    maximum_path: str,
    default: VersionRange = DEFAULT_VERSION_RANGE,
) -> VersionRange:
    """Parse a minimum and maximum setting; an absent (``None``) end takes ``default``'s.

    Args:
        minimum: raw value of the minimum setting, or ``None``.
        maximum: raw value of the maximum setting, or ``None``.
        minimum_path: key of the minimum setting (error path).
        maximum_path: key of the maximum setting (error path).
        default: where missing ends come from.

    Returns:
        The validated range.

    Raises:
        ConfigError: an unknown value (path of that setting), or minimum >
            maximum (path of the minimum setting if it was given, else the maximum's).
    """
    low = default.minimum if minimum is None else parse_tls_version(minimum, path=minimum_path)
    high = default.maximum if maximum is None else parse_tls_version(maximum, path=maximum_path)
    if low > high:
        path = minimum_path if minimum is not None else maximum_path
        raise ConfigError(_inverted(low, high, minimum_path, maximum_path), path=path)
    return VersionRange(low, high)


def _select_version(value: object) -> ssl.TLSVersion | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, ssl.TLSVersion):
        return value if value in SUPPORTED_VERSIONS else None
    if isinstance(value, int):
        return _by_code(value)
    if isinstance(value, float):
        return _FLOATS.get(value)
    if isinstance(value, str):
        return _by_spelling(value.strip().lower())
    return None


def _by_code(code: int) -> ssl.TLSVersion | None:
    if TLSVersion.TLSv1 <= code <= TLSVersion.TLSv1_3:
        return TLSVersion(code)
    return None


def _by_spelling(text: str) -> ssl.TLSVersion | None:
    if text.isascii() and text.isdigit():
        return _by_code(int(text))
    match = _SPELLING.fullmatch(text)
    if match is None or (match["prefix"] is None and match["minor"] is None):
        return None
    return _BY_MINOR[int(match["minor"] or 0)]


def _unknown_message(value: object) -> str:
    if isinstance(value, str) and _SSL_SPELLING.fullmatch(value.strip().lower()):
        return f"{value!r}: SSL 2.0/3.0 are not supported; {_EXPECTED}"
    if isinstance(value, int) and not isinstance(value, bool) and value == 768:
        return f"{value!r} (SSL 3.0) is not supported; {_EXPECTED}"
    return f"unknown TLS version {value!r}; {_EXPECTED}"


def _split_protocols(value: object, *, path: str) -> list[object]:
    if isinstance(value, str):
        items: list[object] = [item for item in re.split(r"[\s,]+", value) if item]
    elif isinstance(value, (list, tuple)):
        items = []
        for item in value:
            items.extend(_split_protocols(item, path=path) if isinstance(item, str) else [item])
    else:
        raise ConfigError(
            f"expected a list of TLS versions such as 'TLSv1.2 TLSv1.3', got {value!r}", path=path
        )
    if not items:
        raise ConfigError("no TLS version listed; expected e.g. 'TLSv1.2 TLSv1.3'", path=path)
    return items


def _inverted(low: ssl.TLSVersion, high: ssl.TLSVersion, low_key: str, high_key: str) -> str:
    return (
        f"{low_key} {version_name(low)} is above {high_key} {version_name(high)}; "
        "no TLS version would be enabled and every handshake would fail"
    )
