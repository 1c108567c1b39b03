"""Downstream (listener) and upstream TLS policies, parsed from raw settings.

Theory of operation
-------------------
``parse_downstream_policy`` reads the Kong-spelled settings of a listener and
combines the pure policies of this package into one frozen
``DownstreamTlsPolicy``; ``parse_upstream_policy`` does the same for the
gateway's client side (Tyk's ``proxy_ssl_*`` keys).  The IO layer builds the
``SSLContext`` from the result and decides nothing itself.

Precedence of the version settings, per bound (minimum and maximum separately):

1. ``ssl_min_version`` / ``ssl_max_version``, when set (explicit always wins);
2. else ``ssl_protocols`` (Kong's list), when set;
3. else the protocols of the ``ssl_cipher_suite`` preset (``modern``: TLS 1.3
   only; ``intermediate``: 1.2 to 1.3; ``old``: 1.0 to 1.3; Kong ``CIPHER_SUITES``);
4. else ``DEFAULT_VERSION_RANGE`` (1.2 to 1.3).

Kong honours ``ssl_protocols``, ``ssl_ciphers`` and ``ssl_prefer_server_ciphers``
only with ``ssl_cipher_suite = custom`` and ignores them otherwise.  trio-gw never
ignores a setting: ``ssl_protocols`` and ``ssl_prefer_server_ciphers`` override
the preset's values, and ``ssl_ciphers`` with a named preset is an error (see
``ciphers.parse_cipher_policy``).  An override of ``ssl_protocols`` by an explicit
bound is reported by ``warnings()``.

Cross-checks (each a ``ConfigError`` whose path is the setting to change):
TLS 1.2 enabled but no TLS 1.2 suite (``modern`` with ``ssl_min_version = 1.2``,
or ``ssl_ciphers`` listing only TLS 1.3 suites); a maximum of TLS 1.1 or below
with only TLS 1.2 suites (GCM/SHA-256 suites do not exist before TLS 1.2).
When TLS 1.0/1.1 are enabled, the OpenSSL security level is lowered to 0 in the
cipher string: OpenSSL 3 refuses their SHA-1/MD5 handshake signatures at level 1
and above (``docs/tls-stack.md`` §4); ``warnings()`` says so.

Key exchange: ``ssl_ecdh_curve`` (``tls.groups``; Mozilla's X25519, P-256, P-384
unless set) and the DH parameters of the DHE suites (``tls.dhparams``: ``ffdhe2048``,
or ``ssl_dhparam``, loaded only when a DHE suite can be negotiated; a value that
cannot be used is reported by ``warnings()``).

Every problem found is reported at once (``ConfigError`` carries several).
Keys not listed in ``DOWNSTREAM_SETTING_KEYS`` are ignored here, so the whole
settings mapping can be passed; rejecting unknown keys is the loader's job.
"""

from __future__ import annotations

import dataclasses
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import TypeVar

from trio_gw.errors import ConfigError, Problem
from trio_gw.tls import renegotiation
from trio_gw.tls.ciphers import (
    PRESETS,
    CipherPolicy,
    CipherPreset,
    parse_cipher_policy,
    preset_policy,
)
from trio_gw.tls.dhparams import DEFAULT_GROUP, DhParams, ffdhe_group, parse_dhparam
from trio_gw.tls.groups import GroupPolicy, parse_ecdh_curve
from trio_gw.tls.session import ListenerPolicyKey, SessionPolicy, parse_bool, parse_session_policy
from trio_gw.tls.versions import (
    DEFAULT_VERSION_RANGE,
    VersionRange,
    parse_ssl_protocols,
    parse_tls_version,
    version_name,
)

__all__ = [
    "DEFAULT_PREFER_SERVER_CIPHERS",
    "DOWNSTREAM_SETTING_KEYS",
    "UPSTREAM_SETTING_KEYS",
    "DownstreamTlsPolicy",
    "UpstreamTlsPolicy",
    "parse_downstream_policy",
    "parse_upstream_policy",
]

_T = TypeVar("_T")
_V = ssl.TLSVersion

#: The settings ``parse_downstream_policy`` reads (Kong spelling, plus Tyk-style min/max).
DOWNSTREAM_SETTING_KEYS = (
    "ssl_protocols", "ssl_min_version", "ssl_max_version", "ssl_cipher_suite", "ssl_ciphers",
    "ssl_prefer_server_ciphers", "ssl_session_tickets", "ssl_session_timeout", "ssl_session_cache_size",
    "ssl_dhparam", "ssl_ecdh_curve",
)  # fmt: skip
#: The settings ``parse_upstream_policy`` reads (Tyk spelling).
UPSTREAM_SETTING_KEYS = (
    "proxy_ssl_min_version", "proxy_ssl_max_version", "proxy_ssl_ciphers",
    "proxy_ssl_disable_renegotiation",
)  # fmt: skip
#: Kong ``ssl_prefer_server_ciphers = on``, used with ``custom``; presets bring their own.
DEFAULT_PREFER_SERVER_CIPHERS = True
_DEFAULT_CIPHERS = preset_policy(CipherPreset.INTERMEDIATE)
#: What the default (intermediate) suites need for their DHE members.
_DEFAULT_DH_PARAMS = ffdhe_group(DEFAULT_GROUP)


@dataclass(frozen=True)
class DownstreamTlsPolicy:
    """Everything a listener context is built from, validated on construction.

    ``notices`` (override messages) do not take part in equality, so two
    spellings of the same policy compare equal (see ``session.ListenerPolicyKey``).
    """

    versions: VersionRange = DEFAULT_VERSION_RANGE
    ciphers: CipherPolicy = _DEFAULT_CIPHERS
    session: SessionPolicy = SessionPolicy()
    prefer_server_ciphers: bool = False
    notices: tuple[str, ...] = field(default=(), compare=False)
    #: The DH parameters of the DHE suites (``None``: no DHE suite can be negotiated).
    dh_params: DhParams | None = _DEFAULT_DH_PARAMS
    #: The key-exchange groups (``ssl_ecdh_curve``: Mozilla's unless set; no names for ``auto``).
    groups: GroupPolicy = GroupPolicy()

    def __post_init__(self) -> None:
        _check_fit(self.versions, self.ciphers, versions_path="", ciphers_path="")
        _check_security_level(self.versions, self.ciphers)

    @property
    def options_to_set(self) -> int:
        """``ssl.OP_*`` flags to OR into ``ctx.options``: renegotiation, tickets, preference."""
        preference = int(ssl.OP_CIPHER_SERVER_PREFERENCE) if self.prefer_server_ciphers else 0
        return renegotiation.DOWNSTREAM_OPTIONS | self.session.options | preference

    @property
    def options_to_clear(self) -> int:
        """Flags to clear (``ctx.options &= ~flags``).

        Python sets ``OP_CIPHER_SERVER_PREFERENCE`` on every new context, so
        "let the client choose" (Mozilla modern/intermediate) means clearing it.
        """
        return 0 if self.prefer_server_ciphers else int(ssl.OP_CIPHER_SERVER_PREFERENCE)

    def listener_key(
        self, *, requests_client_cert: bool = False, client_auth_generation: str = ""
    ) -> ListenerPolicyKey:
        """Return the key ``session.needs_new_listener_context`` compares."""
        return ListenerPolicyKey(self, requests_client_cert, client_auth_generation)

    def warnings(self) -> list[str]:
        """Return every message the IO layer should log when it loads this policy."""
        return [*self.notices, *self.versions.warnings(), *self.ciphers.warnings()]

    def describe(self) -> str:
        """Return a one-line human-readable summary."""
        preference = "on" if self.prefer_server_ciphers else "off"
        dhe = f"; DHE with {self.dh_params.describe()}" if self.dh_params is not None else ""
        return (
            f"{self.versions.describe()}; {self.ciphers.describe()}; {self.groups.describe()}; "
            f"{self.session.describe()}; server cipher preference {preference}{dhe}; renegotiation refused"
        )


@dataclass(frozen=True)
class UpstreamTlsPolicy:
    """Versions and ciphers of the gateway's connections to upstream services."""

    versions: VersionRange = DEFAULT_VERSION_RANGE
    ciphers: CipherPolicy = _DEFAULT_CIPHERS
    notices: tuple[str, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        _check_fit(self.versions, self.ciphers, versions_path="", ciphers_path="")
        _check_security_level(self.versions, self.ciphers)

    @property
    def options_to_set(self) -> int:
        """``ssl.OP_*`` flags to OR into the upstream ``ctx.options``."""
        return renegotiation.UPSTREAM_OPTIONS

    def warnings(self) -> list[str]:
        """Return every message the IO layer should log when it loads this policy."""
        return [*self.notices, *self.versions.warnings(), *self.ciphers.warnings()]

    def describe(self) -> str:
        """Return a one-line human-readable summary."""
        return f"{self.versions.describe()}; {self.ciphers.describe()}; renegotiation refused"


def parse_downstream_policy(settings: Mapping[str, object]) -> DownstreamTlsPolicy:
    """Build a listener's TLS policy from raw settings (``None`` values count as unset).

    Args:
        settings: raw values keyed by ``DOWNSTREAM_SETTING_KEYS``; other keys are ignored.

    Returns:
        The validated policy.

    Raises:
        ConfigError: one problem per bad setting, each with the setting key as path.
    """
    problems = _Problems()
    ciphers = problems.attempt(
        lambda: parse_cipher_policy(settings.get("ssl_cipher_suite"), settings.get("ssl_ciphers"))
    )
    preset = ciphers.preset if ciphers is not None else None
    versions = problems.attempt(lambda: _downstream_versions(settings, preset))
    session = problems.attempt(
        lambda: parse_session_policy(
            settings.get("ssl_session_tickets"), settings.get("ssl_session_timeout"),
            settings.get("ssl_session_cache_size"),
        )
    )
    prefer = problems.attempt(lambda: _prefer_server_ciphers(settings, preset))
    raw_groups = settings.get("ssl_ecdh_curve")
    groups = problems.attempt(lambda: parse_ecdh_curve(raw_groups)) if raw_groups is not None else GroupPolicy()
    raw_dh = settings.get("ssl_dhparam")
    configured_dh = problems.attempt(lambda: parse_dhparam(str(raw_dh))) if raw_dh is not None else None
    problems.raise_if_any()
    assert ciphers is not None and versions is not None  # raise_if_any guarantees it
    assert session is not None and prefer is not None and groups is not None
    ranged, notices = versions
    fitted = _fit(ranged, ciphers, settings, prefix="ssl_")
    notices += _notes(ranged, fitted)
    dh_params, dh_notices = _dh_params(ranged, fitted, configured_dh)
    notices += dh_notices
    return DownstreamTlsPolicy(ranged, fitted, session, prefer, tuple(notices), dh_params, groups)


def parse_upstream_policy(settings: Mapping[str, object]) -> UpstreamTlsPolicy:
    """Build the upstream TLS policy from raw settings (``None`` values count as unset).

    Defaults are the downstream defaults: TLS 1.2 to 1.3, Mozilla intermediate
    suites.  Renegotiation is always refused; ``proxy_ssl_disable_renegotiation``
    (Tyk) is accepted when true and rejected when false.

    Args:
        settings: raw values keyed by ``UPSTREAM_SETTING_KEYS``; other keys are ignored.

    Returns:
        The validated policy.

    Raises:
        ConfigError: one problem per bad setting, each with the setting key as path.
    """
    problems = _Problems()
    ciphers = problems.attempt(
        lambda: parse_cipher_policy(
            None, settings.get("proxy_ssl_ciphers"), ciphers_path="proxy_ssl_ciphers"
        )
    )
    versions = problems.attempt(
        lambda: _explicit_range(settings, "proxy_ssl_", DEFAULT_VERSION_RANGE, "")
    )
    problems.attempt(lambda: _check_renegotiation_setting(settings))
    problems.raise_if_any()
    assert ciphers is not None and versions is not None  # raise_if_any guarantees it
    ranged, notices = versions
    fitted = _fit(ranged, ciphers, settings, prefix="proxy_ssl_")
    notices += _notes(ranged, fitted)
    return UpstreamTlsPolicy(ranged, fitted, tuple(notices))


class _Problems:
    """Collects the problems of independent settings so all are reported at once."""

    def __init__(self) -> None:
        self.found: list[Problem] = []

    def attempt(self, parse: Callable[[], _T]) -> _T | None:
        try:
            return parse()
        except ConfigError as exc:
            self.found.extend(exc.problems)
            return None

    def raise_if_any(self) -> None:
        if self.found:
            raise ConfigError(self.found)


def _downstream_versions(
    settings: Mapping[str, object], preset: CipherPreset | None
) -> tuple[VersionRange, list[str]]:
    protocols = settings.get("ssl_protocols")
    if protocols is not None:
        return _explicit_range(settings, "ssl_", parse_ssl_protocols(protocols), "ssl_protocols")
    if preset is not None and preset in PRESETS:
        return _explicit_range(settings, "ssl_", PRESETS[preset].versions, "ssl_cipher_suite")
    return _explicit_range(settings, "ssl_", DEFAULT_VERSION_RANGE, "")


def _explicit_range(
    settings: Mapping[str, object], prefix: str, base: VersionRange, base_key: str
) -> tuple[VersionRange, list[str]]:
    """Apply ``<prefix>min_version``/``<prefix>max_version`` over ``base`` (set by ``base_key``)."""
    keys = (f"{prefix}min_version", f"{prefix}max_version")
    raw = [settings.get(key) for key in keys]
    ends = [base.minimum, base.maximum]
    problems = _Problems()
    for i, (key, value) in enumerate(zip(keys, raw, strict=True)):
        if value is not None:
            parsed = problems.attempt(partial(parse_tls_version, value, path=key))
            ends[i] = ends[i] if parsed is None else parsed
    problems.raise_if_any()
    sources = [
        key if raw[i] is not None else (base_key or "the default") for i, key in enumerate(keys)
    ]
    if ends[0] > ends[1]:
        raise ConfigError(
            f"the minimum {version_name(ends[0])} (from {sources[0]}) is above the maximum "
            f"{version_name(ends[1])} (from {sources[1]}); every handshake would fail",
            path=keys[0] if raw[0] is not None else keys[1],
        )
    base_ends = (base.minimum, base.maximum)
    notices = [
        f"{keys[i]} {version_name(ends[i])} overrides the {which} of {base_key} "
        f"({version_name(base_ends[i])})"
        for i, which in enumerate(("minimum", "maximum"))
        if raw[i] is not None and base_key and ends[i] != base_ends[i]
    ]
    return VersionRange(ends[0], ends[1]), notices


def _prefer_server_ciphers(settings: Mapping[str, object], preset: CipherPreset | None) -> bool:
    value = settings.get("ssl_prefer_server_ciphers")
    if value is not None:
        return parse_bool(value, path="ssl_prefer_server_ciphers")
    if preset is not None and preset in PRESETS:
        return PRESETS[preset].prefer_server_ciphers
    return DEFAULT_PREFER_SERVER_CIPHERS


def _dh_params(
    versions: VersionRange, ciphers: CipherPolicy, configured: DhParams | None
) -> tuple[DhParams | None, list[str]]:
    """The DH parameters to load: those configured, else ``ffdhe2048``, when a DHE suite can be negotiated."""
    dhe = [s.openssl_name for s in ciphers.suites if s.kx == "DH"]
    if dhe and versions.minimum <= _V.TLSv1_2:
        return (configured or ffdhe_group(DEFAULT_GROUP)), []
    if configured is None:
        return None, []
    why = "TLS 1.2 is disabled" if versions.minimum > _V.TLSv1_2 else "no DHE suite (DHE-RSA-*) is enabled"
    return None, [f"ssl_dhparam is unused: {why}"]


def _check_renegotiation_setting(settings: Mapping[str, object]) -> None:
    value = settings.get("proxy_ssl_disable_renegotiation")
    if value is not None and not parse_bool(value, path="proxy_ssl_disable_renegotiation"):
        raise ConfigError(
            "renegotiation is always refused on upstream connections (CVE-2009-3555); "
            "remove this setting or set it to true",
            path="proxy_ssl_disable_renegotiation",
        )


def _fit(
    versions: VersionRange, ciphers: CipherPolicy, settings: Mapping[str, object], *, prefix: str
) -> CipherPolicy:
    """Cross-check versions and ciphers; lower the security level for TLS 1.0/1.1."""
    min_key = f"{prefix}min_version" if settings.get(f"{prefix}min_version") is not None else None
    protocols_key = (
        "ssl_protocols" if prefix == "ssl_" and settings.get("ssl_protocols") is not None else None
    )
    versions_path = min_key or protocols_key or f"{prefix}min_version"
    named_preset = prefix == "ssl_" and ciphers.preset is not CipherPreset.CUSTOM
    ciphers_path = "ssl_cipher_suite" if named_preset else f"{prefix}ciphers"
    _check_fit(versions, ciphers, versions_path=versions_path, ciphers_path=ciphers_path)
    if versions.minimum < _V.TLSv1_2:
        return dataclasses.replace(ciphers, security_level=0)
    return ciphers


def _check_fit(
    versions: VersionRange, ciphers: CipherPolicy, *, versions_path: str, ciphers_path: str
) -> None:
    if versions.minimum <= _V.TLSv1_2 and not ciphers.suites:
        raise ConfigError(
            f"{version_name(versions.minimum)} is enabled, but cipher suite policy "
            f"'{ciphers.preset}' has no TLS 1.2 (or older) suite; raise the minimum "
            "version to TLSv1.3 or configure TLS 1.2 suites",
            path=versions_path,
        )
    if versions.maximum <= _V.TLSv1_1 and all(s.protocol == "TLSv1.2" for s in ciphers.suites):
        raise ConfigError(
            f"the maximum version is {version_name(versions.maximum)}, but every configured "
            "cipher suite needs TLS 1.2; add suites usable with TLS 1.0/1.1 (e.g. "
            "ECDHE-RSA-AES128-SHA) or raise the maximum version",
            path=ciphers_path,
        )


def _check_security_level(versions: VersionRange, ciphers: CipherPolicy) -> None:
    if versions.minimum < _V.TLSv1_2 and ciphers.security_level != 0:
        raise ConfigError("TLS 1.0/1.1 need the cipher policy's security_level set to 0")


def _notes(versions: VersionRange, ciphers: CipherPolicy) -> list[str]:
    notes = []
    if ciphers.security_level == 0:
        notes.append(
            "OpenSSL security level lowered to 0 because TLS 1.0/1.1 are enabled "
            "(OpenSSL 3 refuses their SHA-1/MD5 signatures above level 0); this also "
            "admits keys and DH groups below 112-bit security"
        )
    if ciphers.preset is CipherPreset.CUSTOM and ciphers.suites and versions.minimum >= _V.TLSv1_3:
        notes.append("the TLS 1.2 cipher suites configured are unused: TLS 1.2 is disabled")
    if ciphers.tls13_suites and versions.maximum < _V.TLSv1_3:
        notes.append("the TLS 1.3 cipher suites configured are unused: TLS 1.3 is disabled")
    return notes
