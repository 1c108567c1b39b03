"""Key-exchange groups a listener offers (``ssl_ecdh_curve``): names in, a validated OpenSSL list out.

Theory of operation
-------------------
nginx's ``ssl_ecdh_curve`` (Kong users set it as ``nginx_http_ssl_ecdh_curve``)
is a colon-separated list of the groups the server accepts for the ECDHE key
exchange of TLS 1.2 and for the key shares of TLS 1.3, most preferred first;
``auto`` keeps OpenSSL's own list.  Envoy calls it
``ecdh_curves``, Traefik ``curvePreferences`` (``CurveP256``...), Caddy
``curves`` (``secp256r1``...): every spelling of those is accepted here,
case-insensitively, and mapped to the name OpenSSL's
``SSL_CTX_set1_groups_list`` takes (the IO layer calls it through the shim;
CPython 3.11's ``set_ecdh_curve`` takes one curve and only for TLS 1.2).

Only groups a TLS 1.3 client can use are offered: X25519, X448, the NIST
curves P-256/P-384/P-521 and the RFC 7919 finite-field groups.  OpenSSL also
knows secp256k1 and the brainpool curves, which TLS 1.3 deprecated; they are
refused by name, as an unknown name is, with a suggestion.  A name listed twice
is an error (OpenSSL refuses the whole list for it).

The list is explicit, so "no silent drops" holds as it does for cipher suites:
what is configured is exactly what OpenSSL is given.

The default is not OpenSSL's list but Mozilla's "TLS curves" of Server Side TLS
5.7, the recommendations Kong's ``ssl_cipher_suite`` presets come from, for all
three of them: X25519, P-256, P-384.  OpenSSL 3.0's own list (nginx's ``auto``)
adds X448, P-521 and, for TLS 1.3, the five RFC 7919 finite-field groups: a
client that offers only ``ffdhe8192`` makes the server generate and combine an
8192-bit DH key for its one cheap ClientHello (sslscan lists all ten groups as
accepted by a default OpenSSL server).  ``auto`` remains available.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from trio_gw.errors import ConfigError

__all__ = ["AUTO", "DEFAULT_GROUPS", "GROUPS", "GroupPolicy", "parse_ecdh_curve"]

#: The value that keeps OpenSSL's default list (nginx ``ssl_ecdh_curve auto``).
AUTO = "auto"

#: OpenSSL's name for each group, and every spelling accepted for it (lower case).
GROUPS: dict[str, tuple[str, ...]] = {
    "X25519": ("x25519", "curvex25519"),
    "X448": ("x448",),
    "P-256": ("p-256", "p256", "prime256v1", "secp256r1", "curvep256"),
    "P-384": ("p-384", "p384", "secp384r1", "curvep384"),
    "P-521": ("p-521", "p521", "secp521r1", "curvep521"),
    "ffdhe2048": ("ffdhe2048",),
    "ffdhe3072": ("ffdhe3072",),
    "ffdhe4096": ("ffdhe4096",),
    "ffdhe6144": ("ffdhe6144",),
    "ffdhe8192": ("ffdhe8192",),
}
#: Mozilla Server Side TLS 5.7 "TLS curves" (modern, intermediate and old alike): the default.
DEFAULT_GROUPS = ("X25519", "P-256", "P-384")
_BY_SPELLING = {spelling: name for name, spellings in GROUPS.items() for spelling in spellings}
_REFUSED = {
    "secp256k1": "is not usable with TLS 1.3 (RFC 8446 dropped it) and no mainstream client offers it",
    "brainpoolp256r1": "is not usable with TLS 1.3 in this OpenSSL and no mainstream client offers it",
    "brainpoolp384r1": "is not usable with TLS 1.3 in this OpenSSL and no mainstream client offers it",
    "brainpoolp512r1": "is not usable with TLS 1.3 in this OpenSSL and no mainstream client offers it",
}


@dataclass(frozen=True)
class GroupPolicy:
    """The groups a listener accepts, most preferred first; empty means OpenSSL's default (``auto``)."""

    names: tuple[str, ...] = DEFAULT_GROUPS

    @property
    def openssl_list(self) -> str | None:
        """The argument of ``SSL_CTX_set1_groups_list``, or ``None`` to leave OpenSSL's default."""
        return ":".join(self.names) if self.names else None

    def describe(self) -> str:
        """Return a short form for logs."""
        return f"key exchange groups {':'.join(self.names)}" if self.names else "OpenSSL's key exchange groups"


def parse_ecdh_curve(value: object, *, path: str = "ssl_ecdh_curve") -> GroupPolicy:
    """Parse ``ssl_ecdh_curve``: ``auto``, or groups separated by ``:`` (nginx), ``,`` or spaces, or a list.

    Raises:
        ConfigError: every unknown, refused or repeated name, each with the reason.
    """
    if isinstance(value, (list, tuple)):
        words = [str(v).strip() for v in value]
    elif isinstance(value, str):
        words = value.replace(",", ":").replace(" ", ":").split(":")
    else:
        raise ConfigError(f"expected '{AUTO}' or a list of groups, got {type(value).__name__}", path=path)
    words = [w for w in (w.strip() for w in words) if w]
    if not words:
        raise ConfigError(f"no group given; use '{AUTO}' for OpenSSL's default list", path=path)
    if len(words) == 1 and words[0].lower() == AUTO:
        return GroupPolicy(())
    problems = []
    names: list[str] = []
    for word in words:
        key = word.lower()
        if key == AUTO:
            problems.append(f"'{AUTO}' cannot be combined with named groups")
        elif key in _REFUSED:
            problems.append(f"{word} {_REFUSED[key]}")
        elif key not in _BY_SPELLING:
            close = difflib.get_close_matches(key, _BY_SPELLING, n=1, cutoff=0.6)
            hint = f" (did you mean {_BY_SPELLING[close[0]]}?)" if close else ""
            problems.append(f"unknown group {word!r}{hint}; known: {', '.join(GROUPS)}")
        elif _BY_SPELLING[key] in names:
            problems.append(f"{word} is listed twice (as {_BY_SPELLING[key]})")
        else:
            names.append(_BY_SPELLING[key])
    if problems:
        raise ConfigError("; ".join(problems), path=path)
    return GroupPolicy(tuple(names))
