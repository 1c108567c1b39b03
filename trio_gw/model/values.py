"""Syntax rules for single configuration values: names, ids, hosts, paths, headers.

Each ``check_*`` function takes one value that is already known to be a ``str``
and returns it normalised (host names lowercased, ids lowercased), or raises
:class:`InvalidValue` with a message meant to follow ``path:`` in an error.
The rules follow Kong's typedefs (``kong/db/schema/typedefs.lua``) where Kong
has one, and say so where trio-gw is stricter.

:func:`parse_path_regex` is the one place where a route's ``~`` regex path is
turned into a Python pattern: the loader uses it to validate, and the router
must use it too, so both agree on what a path means.
"""

from __future__ import annotations

import ipaddress
import re
import urllib.parse
from typing import Final

from trio_gw.errors import ConfigError

#: Kong's ``utf8_name``: letters and digits (any script) plus ``.``, ``-``, ``_``, ``~``.
_NAME: Final = re.compile(r"[\w.~-]+")
_UUID: Final = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_LABEL: Final = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")
_TOKEN: Final = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_METHOD: Final = re.compile(r"[A-Z]+")
#: RFC 3986 unreserved + reserved characters, and ``%`` for escapes.
_PATH_CHARS: Final = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]*")
_BAD_ESCAPE: Final = re.compile(r"%(?![0-9A-Fa-f]{2})")
#: PCRE's ``(?<name>`` named group (used in Kong configs); Python spells it ``(?P<name>``.
_PCRE_NAMED_GROUP: Final = re.compile(r"\(\?<(?=[A-Za-z_])")
#: Kong 3.0's test for "this pre-3.0 path is a regex" (``route_path.lua``).
_LEGACY_PLAIN_PATH: Final = re.compile(r"[A-Za-z0-9._~/%-]*")
_MAX_HOST_LENGTH: Final = 253


class InvalidValue(Exception):
    """A value broke a syntax rule; ``str()`` is the message for the user."""


def check_name(value: str) -> str:
    """Check a service or route ``name`` (Kong's ``utf8_name``).

    Args:
        value: the name.

    Returns:
        The name unchanged.

    Raises:
        InvalidValue: empty, or holds characters other than letters, digits, ``.-_~``.
    """
    if not _NAME.fullmatch(value):
        raise InvalidValue(
            f"invalid name {value!r}: use letters, digits and '.', '-', '_', '~' only"
        )
    return value


def check_uuid(value: str) -> str:
    """Check an entity ``id``: a UUID in its canonical hyphenated form.

    Args:
        value: the id.

    Returns:
        The id in lowercase.

    Raises:
        InvalidValue: not a hyphenated UUID.
    """
    if not _UUID.fullmatch(value):
        raise InvalidValue(f"expected a UUID such as '4ae235fd-bcc0-4d08-9689-5ade8f14b3f7', got {value!r}")
    return value.lower()


def check_tag(value: str) -> str:
    """Check one tag: non-empty printable ASCII without ``,`` or ``/`` (Kong's rule).

    Args:
        value: the tag.

    Returns:
        The tag unchanged.

    Raises:
        InvalidValue: empty, or holds a comma, slash or non-printable character.
    """
    if not value or any(c in ",/" or not " " <= c <= "~" for c in value):
        raise InvalidValue(f"invalid tag {value!r}: use printable ASCII without ',' or '/'")
    return value


def _check_hostname(host: str, *, wildcard: bool) -> str:
    name = host.lower()
    if len(name) > _MAX_HOST_LENGTH:
        raise InvalidValue(f"invalid host {host!r}: longer than {_MAX_HOST_LENGTH} characters")
    labels = name.split(".")
    if "*" in name:
        if not wildcard:
            raise InvalidValue(f"invalid host {host!r}: wildcards are not allowed here")
        if name.count("*") > 1:
            raise InvalidValue(f"invalid host {host!r}: only one wildcard is allowed")
        if len(labels) < 2 or "*" not in (labels[0], labels[-1]):
            raise InvalidValue(
                f"invalid host {host!r}: the wildcard must be the whole leftmost "
                "or rightmost label ('*.example.com' or 'example.*')"
            )
        labels = [label for label in labels if label != "*"]
    if not all(_LABEL.fullmatch(label) for label in labels):
        raise InvalidValue(f"invalid host {host!r}")
    return name


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _split_port(value: str) -> tuple[str, int | None]:
    if value.startswith("["):
        host, sep, rest = value[1:].partition("]")
        if not sep or not _is_ip(host) or (rest and not rest.startswith(":")):
            raise InvalidValue(f"invalid host {value!r}")
        return host, _parse_port(value, rest[1:]) if rest else None
    if value.count(":") == 1:
        host, _, port = value.partition(":")
        return host, _parse_port(value, port)
    return value, None


def _parse_port(value: str, port: str) -> int:
    if not port.isascii() or not port.isdigit() or len(port) > 5 or int(port) > 65535:
        raise InvalidValue(f"invalid port in {value!r}: expected an integer between 0 and 65535")
    return int(port)


def check_service_host(value: str) -> str:
    """Check a service ``host``: a host name or IP address, without port or scheme.

    Args:
        value: the host.

    Returns:
        The host, lowercased.

    Raises:
        InvalidValue: a URL, a port, a wildcard, or not a valid host name.
    """
    if "://" in value:
        raise InvalidValue(f"expected a host name, got the URL {value!r} (set 'url' instead of 'host')")
    if _is_ip(value):
        return value.lower()
    if ":" in value:
        raise InvalidValue(f"invalid host {value!r}: set the port in 'port'")
    return _check_hostname(value, wildcard=False)


def parse_service_url(url: str) -> tuple[str, str, int, str | None]:
    """Split a service ``url`` (``http://example.com:8080/base``) into its parts.

    Args:
        url: the URL; the port defaults to 80 (http) or 443 (https).

    Returns:
        ``(protocol, host, port, path)``; ``path`` is ``None`` when the URL has none.

    Raises:
        InvalidValue: not an http(s) URL with a valid host, or with user info, query or fragment.
    """
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidValue(f"invalid URL {url!r}: {exc}") from exc
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        known = scheme in ("grpc", "grpcs", "tcp", "tls", "tls_passthrough", "udp", "ws", "wss")
        raise InvalidValue(
            f"protocol {scheme!r} is not supported yet (supported: http, https)"
            if known
            else f"invalid URL {url!r}: expected http:// or https://"
        )
    if parts.username is not None or parts.query or parts.fragment or "#" in url or "?" in url:
        raise InvalidValue(f"invalid URL {url!r}: user information, query or fragment not allowed")
    if not parts.hostname:
        raise InvalidValue(f"invalid URL {url!r}: no host")
    host = check_service_host(parts.hostname)
    path = check_plain_path(parts.path) if parts.path else None
    return scheme, host, (443 if scheme == "https" else 80) if port is None else port, path


def check_route_host(value: str) -> str:
    """Check one of a route's ``hosts``: a name (one wildcard at either end) or IP, optional ``:port``.

    Args:
        value: the host, e.g. ``*.example.com``, ``example.*:8443`` or ``[::1]:80``.

    Returns:
        The host, lowercased.

    Raises:
        InvalidValue: when the host or port is invalid.
    """
    if value == "*":
        raise InvalidValue("'*' is not a host: leave 'hosts' out to match any host")
    host, port = _split_port(value)
    if _is_ip(host):
        return value.lower()
    name = _check_hostname(host, wildcard=True)
    return name if port is None else f"{name}:{port}"


def check_sni_name(value: str) -> str:
    """Check an SNI entity ``name``: a host name with an optional wildcard at one end, or ``*``.

    Args:
        value: the server name.

    Returns:
        The name, lowercased.

    Raises:
        InvalidValue: an IP address, a port, or not a valid host name.
    """
    if value == "*":
        return value
    if _is_ip(value) or _is_ip(value.strip("[]")):
        raise InvalidValue(f"invalid server name {value!r}: must not be an IP address")
    if ":" in value:
        raise InvalidValue(f"invalid server name {value!r}: must not have a port")
    return _check_hostname(value, wildcard=True)


def check_route_sni(value: str) -> str:
    """Check one of a route's ``snis``: an exact host name (Kong's ``typedefs.sni``).

    Args:
        value: the server name.

    Returns:
        The name, lowercased.

    Raises:
        InvalidValue: an IP address, a port, a wildcard, or not a valid host name.
    """
    if value != "*" and "*" in value:
        raise InvalidValue(f"invalid server name {value!r}: wildcards are not allowed in route snis")
    if value == "*":
        raise InvalidValue("'*' is not a server name: leave 'snis' out to match any")
    return check_sni_name(value)


def check_method(value: str) -> str:
    """Check an HTTP method token: uppercase letters only (Kong's rule).

    Args:
        value: the method.

    Returns:
        The method unchanged.

    Raises:
        InvalidValue: not uppercase letters.
    """
    if not _METHOD.fullmatch(value):
        hint = f" (did you mean {value.upper()!r}?)" if _METHOD.fullmatch(value.upper()) else ""
        raise InvalidValue(f"invalid method {value!r}: use uppercase letters only{hint}")
    return value


def check_header_name(value: str) -> str:
    """Check a header name used for route matching.

    Args:
        value: the header name.

    Returns:
        The name, lowercased.

    Raises:
        InvalidValue: not an RFC 9110 token, or ``host`` (which belongs in ``hosts``).
    """
    if not _TOKEN.fullmatch(value):
        raise InvalidValue(f"invalid header name {value!r}")
    if value.lower() == "host":
        raise InvalidValue("the 'host' header cannot be matched here: use the route's 'hosts'")
    return value.lower()


def check_header_value(value: str) -> str:
    """Check a header value to match: non-empty, and a valid regex after a ``~*`` prefix.

    Args:
        value: the value.

    Returns:
        The value unchanged.

    Raises:
        InvalidValue: empty, or an invalid regex.
    """
    if not value:
        raise InvalidValue("expected a non-empty string")
    if value.startswith("~*"):
        _compile(value[2:], value)
    return value


def _compile(pattern: str, shown: str) -> re.Pattern[str]:
    try:
        return re.compile(_PCRE_NAMED_GROUP.sub("(?P<", pattern))
    except (re.error, RecursionError, OverflowError) as exc:
        raise InvalidValue(f"invalid regex {shown!r}: {exc}") from exc


def parse_path_regex(path: str) -> re.Pattern[str]:
    """Compile a route's regex path (``~/...``) into the pattern the router matches with.

    PCRE named groups ``(?<name>...)``, common in Kong configurations, are
    accepted and mean the same as Python's ``(?P<name>...)``.

    Args:
        path: the path as configured, starting with ``~``.

    Returns:
        The compiled pattern (without the ``~``), to be matched from the start of the path.

    Raises:
        ConfigError: the path does not start with ``~/`` or does not compile.
    """
    try:
        return _regex_path(path)
    except InvalidValue as exc:
        raise ConfigError(str(exc)) from exc


def _regex_path(path: str) -> re.Pattern[str]:
    if not path.startswith("~/"):
        raise InvalidValue(f"invalid path {path!r}: a regex path starts with '~/'")
    return _compile(path[1:], path)


def check_route_path(value: str) -> str:
    """Check one of a route's ``paths``: ``/plain`` or ``~/regex``.

    Args:
        value: the path.

    Returns:
        The path unchanged.

    Raises:
        InvalidValue: neither form, characters outside RFC 3986, a bad ``%`` escape, or a bad regex.
    """
    if value.startswith("~"):
        _regex_path(value)
        return value
    return check_plain_path(value)


def check_plain_path(value: str) -> str:
    """Check a plain path (a service ``path``, or a route path without ``~``).

    Args:
        value: the path.

    Returns:
        The path unchanged.

    Raises:
        InvalidValue: not starting with ``/``, characters outside RFC 3986, or a bad ``%`` escape.
    """
    if not value.startswith("/"):
        raise InvalidValue(f"invalid path {value!r}: should start with '/' (or '~/' for a regex)")
    if not _PATH_CHARS.fullmatch(value):
        raise InvalidValue(f"invalid path {value!r}: characters outside RFC 3986 (percent-encode them)")
    if _BAD_ESCAPE.search(value):
        raise InvalidValue(f"invalid path {value!r}: '%' must start an escape such as '%20'")
    return value


def migrate_legacy_path(value: str) -> str:
    """Give a path from a pre-3.0 file its 3.0 meaning (Kong's ``route_path.lua`` migration).

    Before format 3.0 a path holding regex characters was a regex; 3.0 marks
    regexes with ``~``.

    Args:
        value: a route path from a ``_format_version`` 1.1 or 2.1 file.

    Returns:
        The path, prefixed with ``~`` when it holds characters other than ``A-Za-z0-9._~/%-``.
    """
    if value.startswith("~") or _LEGACY_PLAIN_PATH.fullmatch(value):
        return value
    return "~" + value
