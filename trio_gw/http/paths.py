"""Request-path rules: normalisation before routing, and Kong's upstream path joining.

Normalisation (:func:`normalize_path`) happens once, before routing, so that a
route's prefix cannot be bypassed by an equivalent spelling of the path
(``/public/%2e%2e/admin``, ``/public/../admin``, ``//admin``) and so that the
path forwarded upstream is the one that was matched.  It follows Kong
(``kong.tools.uri.normalize`` with ``merge_slashes``): RFC 3986 §6.2.2
percent-encoding normalisation (decode unreserved characters, upper-case the
other escapes), merge repeated slashes, then remove dot segments (§5.2.4).
Reserved escapes such as ``%2F`` stay encoded, so the result is still a valid
origin-form path.

Joining (:func:`join_upstream_path`) is Kong's ``path_handling`` table.  With
``service.path = /s`` and a request of ``<route.path>req``:

=========  ==========  ==========  ====  ===========  =============
route      strip_path  handling    →     request      upstream path
=========  ==========  ==========  ====  ===========  =============
``/fv0``   false       v0                /fv0req      /s/fv0req
``/fv1``   false       v1                /fv1req      /sfv1req
``/tv0``   true        v0                /tv0req      /s/req
``/tv1``   true        v1                /tv1req      /sreq
``/fv0/``  false       v0                /fv0/req     /s/fv0/req
``/fv1/``  false       v1                /fv1/req     /sfv1/req
``/tv0/``  true        v0                /tv0/req     /s/req
``/tv1/``  true        v1                /tv1/req     /sreq
=========  ==========  ==========  ====  ===========  =============

v1 is Kong's deprecated algorithm (plain concatenation); it is kept because
routes migrated from Kong 1.x/2.x still use it.
"""

from __future__ import annotations

import re

_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_HEX = frozenset("0123456789abcdefABCDEF")
_SLASHES = re.compile(r"//+")


def _normalize_escapes(path: str) -> str:
    parts = path.split("%")
    out = [parts[0]]
    for part in parts[1:]:
        if len(part) >= 2 and part[0] in _HEX and part[1] in _HEX:
            char = chr(int(part[:2], 16))
            out.append(char if char in _UNRESERVED else "%" + part[:2].upper())
            out.append(part[2:])
        else:  # not an escape: keep the '%' as it came
            out.append("%" + part)
    return "".join(out)


def _remove_dot_segments(path: str) -> str:
    segments = path.split("/")
    out: list[str] = []
    for segment in segments[1:]:
        if segment == "..":
            if out:
                out.pop()
        elif segment != ".":
            out.append(segment)
    result = "/" + "/".join(out)
    if segments[-1] in (".", "..") and not result.endswith("/"):
        result += "/"
    return result


def normalize_path(path: str) -> str:
    """Normalise an origin-form path for routing and forwarding.

    Args:
        path: the request-target path without the query, starting with ``/``.

    Returns:
        The normalised path (the same object when nothing needed changing,
        which is the common case and costs three substring scans).
    """
    if "%" in path:
        path = _normalize_escapes(path)
    if "//" in path:
        path = _SLASHES.sub("/", path)
    if "/." in path:
        path = _remove_dot_segments(path)
    return path


def sanitize_postfix(postfix: str) -> str:
    """Drop a leading dot segment left over after stripping a matched prefix.

    A prefix that ends inside a segment (route ``/foo``, request ``/foo../x``)
    leaves ``../x``; joined under the service path it would climb out of it.
    Kong's ``sanitize_uri_postfix`` does the same.

    Args:
        postfix: the part of the request path after the matched prefix.

    Returns:
        ``postfix`` without a leading ``.``/``..`` segment.
    """
    if postfix in (".", ".."):
        return ""
    if postfix.startswith("./"):
        return postfix[2:]
    if postfix.startswith("../"):
        return postfix[3:]
    return postfix


def join_upstream_path(
    service_path: str | None,
    request_path: str,
    postfix: str,
    *,
    strip_path: bool,
    path_handling: str,
) -> str:
    """Combine the service path with the request path, as Kong does.

    Args:
        service_path: the service's ``path``; ``None`` means ``/``.
        request_path: the (normalised) request path.
        postfix: what follows the matched route path in ``request_path``
            (``request_path[1:]`` when the route has no paths).
        strip_path: the route's ``strip_path``.
        path_handling: ``"v0"`` or ``"v1"``.

    Returns:
        The upstream path, without query.
    """
    base = service_path or "/"
    if strip_path:
        postfix = sanitize_postfix(postfix)
    if path_handling == "v1":
        if not strip_path:
            return base + request_path[1:]
        if base.endswith("/") and postfix.startswith("/"):
            return base[:-1] + postfix
        return base + postfix
    if base.endswith("/"):
        if not strip_path:
            return base + request_path[1:]
        if postfix == "":
            if base == "/" or request_path.endswith("/"):
                return base
            return base[:-1]
        if postfix.startswith("/"):
            return base[:-1] + postfix
        return base + postfix
    if not strip_path:
        return base if request_path == "/" else base + request_path
    if postfix == "":
        return base + "/" if len(request_path) > 1 and request_path.endswith("/") else base
    if postfix.startswith("/"):
        return base + postfix
    return base + "/" + postfix
