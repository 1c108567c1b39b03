"""Host name rules shared by SNI certificate selection and upstream verification.

Theory of operation
-------------------
Every name the gateway compares (an SNI sent by a client, a configured SNI
entity, a certificate's dNSName, an upstream host) is first brought to one
canonical form by :func:`normalize_server_name`:

* one trailing dot is removed (``example.com.`` is ``example.com``);
* Unicode labels become IDNA A-labels (``bücher.example`` →
  ``xn--bcher-kva.example``) with the standard library's IDNA 2003 codec, the
  same codec :mod:`ssl` uses to encode ``server_hostname``;
* ASCII is lowercased (DNS names compare case-insensitively, RFC 4343);
* the result must be a DNS name of LDH labels (letters, digits, hyphen; no
  leading or trailing hyphen; underscore tolerated because internal service
  names use it) of 1–63 octets, at most 253 octets in all — or an IP literal,
  which is returned in its canonical :mod:`ipaddress` spelling.

Comparing canonical strings makes matching a dict lookup or an ``==``.  Names
that cannot be brought to that form raise :class:`InvalidServerName` (input
from the network) or :class:`~trio_gw.errors.ConfigError` (configured names,
via :func:`parse_configured_name`).  Matching functions (``matches_*``) never
raise: a name that is not valid matches nothing.

Wildcards follow RFC 6125 §6.4.3 as OpenSSL and Python's ``ssl`` apply it: only
a whole leftmost label may be ``*``; it stands for exactly one non-empty label,
so ``*.example.com`` covers ``api.example.com`` but neither ``example.com`` nor
``a.b.example.com``; partial wildcards (``f*o.example.com``) match nothing; the
part after ``*.`` needs at least two labels (``*.com`` matches nothing, as in
OpenSSL and Kong).  IP literals are matched only by iPAddress entries, never by
dNSNames or wildcards.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from encodings import idna as _idna

from trio_gw.errors import ConfigError, GatewayError

#: Longest DNS name in its dotted text form, without the trailing dot (RFC 1035 §2.3.4).
MAX_NAME_LENGTH = 253
#: Longest DNS label (RFC 1035 §2.3.4).
MAX_LABEL_LENGTH = 63
#: Inputs longer than this are rejected before any IDNA work, bounding the cost
#: of one call on hostile input (IDNA mapping can only shrink a name so much).
MAX_INPUT_LENGTH = 1024

_ASCII_NAME_RE = re.compile(
    r"(?:[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?\.)*"
    r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
)
#: Label separators the IDNA codec recognises (RFC 3490 §3.1).
_DOT_CHARS = ".\u3002\uff0e\uff61"
_DOTS_RE = re.compile(f"[{_DOT_CHARS}]")

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class InvalidServerName(GatewayError):
    """A name from outside (SNI, Host, upstream host) that is not a usable host name.

    ``reason`` says what is wrong, for logs; the offending name is ``name``.
    """

    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        self.reason = reason
        super().__init__(f"invalid server name {name[:80]!r}: {reason}")


def normalize_server_name(name: str) -> str:
    """Return the canonical form of a host name or IP literal.

    Args:
        name: a DNS name (ASCII or Unicode, any case, optional trailing dot) or
            an IP literal without brackets or zone index.

    Returns:
        The lowercase A-label form without trailing dot, or the canonical text
        of the IP address.

    Raises:
        InvalidServerName: ``name`` is empty, too long, has empty labels, labels
            over 63 octets, characters outside LDH (``:`` of a port, ``*``,
            spaces, controls), or Unicode the IDNA codec refuses.
    """
    if len(name) > MAX_INPUT_LENGTH:
        raise InvalidServerName(name, "too long")
    if name.isascii():
        text = (name[:-1] if name.endswith(".") else name).lower()
    else:
        text = name[:-1] if name[-1] in _DOT_CHARS else name
        text = ".".join(_to_a_label(name, label) for label in _DOTS_RE.split(text))
    if len(text) <= MAX_NAME_LENGTH and _ASCII_NAME_RE.fullmatch(text):
        return _canonical_ip(text) or text
    if ip := _canonical_ip(text):
        return ip
    raise InvalidServerName(name, _ascii_problem(text))


def parse_configured_name(name: str, path: str) -> str:
    """Return the canonical form of a configured DNS name (never an IP literal).

    Args:
        name: the configured host name.
        path: where it was configured, e.g. ``snis[3].name``.

    Returns:
        The canonical name, as :func:`normalize_server_name` gives it.

    Raises:
        ConfigError: the name is invalid or an IP address; its problem's path is
            ``path``.
    """
    try:
        canonical = normalize_server_name(name)
    except InvalidServerName as exc:
        raise ConfigError(f"{name!r} is not a valid host name: {exc.reason}", path) from exc
    if is_ip_literal(canonical):
        raise ConfigError(f"{name!r} must not be an IP address", path)
    return canonical


def is_ip_literal(name: str) -> bool:
    """Tell whether ``name`` is an IPv4 or IPv6 literal (no brackets, no zone index).

    Args:
        name: any text.

    Returns:
        True when :mod:`ipaddress` parses it (IPv4 in strict dotted-quad form).
    """
    return _canonical_ip(name) is not None


def matches_wildcard(pattern: str, name: str) -> bool:
    """Tell whether a leftmost-label wildcard such as ``*.example.com`` covers ``name``.

    Args:
        pattern: a dNSName of the form ``*.`` + a name of at least two labels;
            case, trailing dot and IDNA as in :func:`normalize_server_name`.
        name: the host name to test.

    Returns:
        True when ``name`` is the pattern's base with exactly one non-empty
        label in front.  False for anything else, including invalid or partial
        wildcard patterns, invalid names and IP literals.
    """
    base = wildcard_base(pattern)
    if base is None:
        return False
    try:
        canonical = normalize_server_name(name)
    except InvalidServerName:
        return False
    if is_ip_literal(canonical):
        return False
    _, dot, rest = canonical.partition(".")
    return bool(dot) and rest == base


def wildcard_base(pattern: str) -> str | None:
    """Return the canonical part after ``*.`` of a valid leftmost wildcard, else None.

    Args:
        pattern: a candidate wildcard name such as ``*.Example.COM.``.

    Returns:
        ``example.com`` for the example; None when ``pattern`` is not a
        leftmost wildcard, has a second ``*``, or its base has fewer than two
        labels or is invalid.
    """
    if not pattern.startswith("*."):
        return None
    try:
        base = normalize_server_name(pattern[2:])
    except InvalidServerName:
        return None
    if "." not in base or is_ip_literal(base):
        return None
    return base


def matches_hostname(cert_names: Iterable[str | IpAddress], name: str) -> bool:
    """Tell whether a certificate's subjectAltName entries cover ``name``.

    Args:
        cert_names: the certificate's identities: ``str`` entries are dNSNames
            (exact or leftmost wildcard), :mod:`ipaddress` objects are
            iPAddress entries.  (Whether a CN stands in for a missing SAN is the
            caller's decision; see ``docs/tls-stack.md`` §6.)
        name: the host name or IP literal to check.

    Returns:
        True when some entry matches.  An IP literal matches only an equal
        iPAddress entry; a DNS name matches an equal dNSName or a wildcard
        covering it.  Invalid names and entries match nothing.
    """
    try:
        target = normalize_server_name(name)
    except InvalidServerName:
        return False
    ip = _canonical_ip(target)
    for entry in cert_names:
        if isinstance(entry, str):
            if ip is None and _dns_entry_matches(entry, target):
                return True
        elif ip is not None and str(entry) == ip:
            return True
    return False


def _dns_entry_matches(entry: str, target: str) -> bool:
    if entry.startswith("*"):
        return matches_wildcard(entry, target)
    try:
        return normalize_server_name(entry) == target
    except InvalidServerName:
        return False


def _canonical_ip(text: str) -> str | None:
    if not text or "%" in text or not (":" in text or text[-1].isdigit()):
        return None
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def _to_a_label(name: str, label: str) -> str:
    try:
        encoded = _idna.ToASCII(label).decode("ascii")
    except UnicodeError as exc:
        raise InvalidServerName(name, f"IDNA conversion failed ({exc})") from exc
    if "." in encoded:
        # IDNA 2003 maps e.g. U+2024 ONE DOT LEADER to "."; a label must not
        # turn into two, or one configured name could stand for another.
        raise InvalidServerName(name, "a label maps to a dot under IDNA")
    return encoded.lower()


def _ascii_problem(text: str) -> str:
    if not text:
        return "empty"
    if len(text) > MAX_NAME_LENGTH:
        return f"longer than {MAX_NAME_LENGTH} characters"
    if ":" in text:
        host, _, port = text.rpartition(":")
        if port.isdigit() and ":" not in host:
            return "must not have a port"
        return "not an IPv6 literal (give it without brackets or zone index)"
    if "*" in text:
        return "wildcards are not allowed here"
    for label in text.split("."):
        if not label:
            return "empty label"
        if len(label) > MAX_LABEL_LENGTH:
            return f"label longer than {MAX_LABEL_LENGTH} characters"
        if label.startswith("-") or label.endswith("-"):
            return "label starts or ends with a hyphen"
    return "characters other than letters, digits, hyphen and underscore"
