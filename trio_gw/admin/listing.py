"""Listing endpoints: pagination, tag filters and expiry windows.

Kong's list shape is ``{"data": [...], "next": "/path?offset=..." | null}``
plus ``"offset"`` when there is a next page.  Entities are listed in id order;
``offset`` is an opaque token naming where the next page starts (the last id
shown, base64url-encoded), so pages stay consistent while entities are added.

- ``size``: 1..:data:`MAX_PAGE_SIZE`, default :data:`DEFAULT_PAGE_SIZE` (Kong's).
- ``tags``: ``a,b`` (every tag) or ``a/b`` (any tag), as Kong; not both.
- ``expiring_within`` (certificates, CA certificates): ``30d``, ``12h``,
  ``90m``, ``45s`` or plain seconds; lists those whose leaf expires within the
  window from ``now``, expired ones included.
"""

from __future__ import annotations

import base64
import binascii
import re
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from trio_gw.admin import errors
from trio_gw.admin.representation import not_after
from trio_gw.model.values import InvalidValue, check_tag

#: Kong's default and maximum ``size``.
DEFAULT_PAGE_SIZE: Final = 100
MAX_PAGE_SIZE: Final = 1000
_DURATION: Final = re.compile(r"([0-9]{1,12})([smhd]?)")
_UNITS: Final = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86_400}
_KEPT: Final = ("size", "tags", "expiring_within")


def last(query: Mapping[str, Sequence[str]], name: str) -> str | None:
    """The last value of a query argument, ``None`` when absent."""
    values = query.get(name) or ()
    return values[-1] if values else None


def parse_duration(text: str) -> int:
    """Read a window such as ``30d``, ``12h``, ``90m``, ``45s`` or ``3600`` as seconds.

    Raises:
        AdminError: 400 for anything else.
    """
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise errors.invalid_option("expiring_within", "expected a duration such as '30d', '12h', '90m' or seconds")
    return int(match.group(1)) * _UNITS[match.group(2)]


def _size(query: Mapping[str, Sequence[str]]) -> int:
    text = last(query, "size")
    if text is None:
        return DEFAULT_PAGE_SIZE
    if len(text) > 6 or not text.isascii() or not text.isdigit() or not 1 <= int(text) <= MAX_PAGE_SIZE:
        raise errors.invalid_size(f"size must be an integer between 1 and {MAX_PAGE_SIZE}")
    return int(text)


def _start_after(query: Mapping[str, Sequence[str]]) -> str | None:
    token = last(query, "offset")
    if token is None:
        return None
    try:
        return base64.urlsafe_b64decode(token.encode("ascii") + b"==").decode("utf-8")
    except (ValueError, binascii.Error, UnicodeError) as exc:
        raise errors.invalid_offset(token) from exc


def _token(entity_id: str) -> str:
    return base64.urlsafe_b64encode(entity_id.encode("utf-8")).decode("ascii").rstrip("=")


def tag_filter(query: Mapping[str, Sequence[str]]) -> Callable[[Sequence[str]], bool]:
    """The ``tags`` filter: ``a,b`` all of them, ``a/b`` any of them.

    Raises:
        AdminError: 400 when both separators are used or a tag is invalid.
    """
    text = last(query, "tags")
    if text is None:
        return lambda tags: True
    if "," in text and "/" in text:
        raise errors.invalid_option("tags", "use ',' (all tags) or '/' (any tag), not both")
    wanted = text.split("/") if "/" in text else text.split(",")
    try:
        checked = {check_tag(t) for t in wanted}
    except InvalidValue as exc:
        raise errors.invalid_option("tags", str(exc)) from exc
    if "/" in text:
        return lambda tags: not checked.isdisjoint(tags)
    return lambda tags: checked.issubset(tags)


def list_page(
    path: str,
    kind: str,
    items: Sequence[Any],
    query: Mapping[str, Sequence[str]],
    *,
    now: int,
    present: Callable[[Any], dict[str, Any]],
) -> dict[str, Any]:
    """Give one page of a list endpoint.

    Args:
        path: the request path (for ``next``).
        kind: the collection listed.
        items: the entities to list (already scoped to a parent if nested).
        query: the query arguments.
        now: current Unix time (``expiring_within``).
        present: turns an entity into its JSON shape.

    Returns:
        ``{"data": [...], "next": ..., ["offset": ...]}``.

    Raises:
        AdminError: 400 for a bad ``size``, ``offset``, ``tags`` or ``expiring_within``.
    """
    size, start, keep = _size(query), _start_after(query), tag_filter(query)
    window = last(query, "expiring_within")
    deadline = now + parse_duration(window) if window is not None and kind in ("certificates", "ca_certificates") else None
    chosen = sorted((e for e in items if keep(e.tags)), key=lambda e: str(e.id))
    if deadline is not None:
        chosen = [e for e in chosen if not_after(e.cert) <= deadline]
    if start is not None:
        chosen = [e for e in chosen if str(e.id) > start]
    page = chosen[:size]
    body: dict[str, Any] = {"data": [present(e) for e in page], "next": None}
    if len(chosen) > size:
        token = _token(str(page[-1].id))
        kept = [(k, v) for k in _KEPT if (v := last(query, k)) is not None]
        body["next"] = f"{path}?{urllib.parse.urlencode([('offset', token), *kept])}"
        body["offset"] = token
    return body
