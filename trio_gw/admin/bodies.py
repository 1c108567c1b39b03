"""Request bodies of the Admin API: JSON, url-encoded forms and multipart forms.

Kong reads all three into one shape (``kong/api/arguments.lua``), and so does
:func:`parse_body`:

- ``application/json``: an object.
- ``application/x-www-form-urlencoded``: Kong's key syntax: ``a.b=c`` nests
  (``service.id=...``, ``config.minute=5``), ``paths[]=/x`` and repeated keys
  make arrays, ``paths[1]=/y`` places by index.  An empty value means null.
- ``multipart/form-data``: the same keys, one part each, as ``curl -F
  cert=@cert.pem -F key=@key.pem`` sends (file parts give their content).

Form values are text; :data:`FORM_TYPES` turns the known integer, boolean and
array fields of each kind into those types, as Kong does from its schemas.  A
value that does not convert is left as text, so the field rules report it with
their usual message.  Plugin ``config`` values stay text (no plugin schema
exposes its field types yet).
"""

from __future__ import annotations

import email.parser
import email.policy
import json
import re
import urllib.parse
from collections.abc import Mapping
from typing import Any, Final

from trio_gw.admin.errors import bad_body, unsupported_media_type

_INT: Final = "int"
_BOOL: Final = "bool"
_LIST: Final = "list"
_TIMES: Final = {"created_at": _INT, "updated_at": _INT, "tags": _LIST}
#: Field types of each kind, for form bodies (top-level fields only).
FORM_TYPES: Final[Mapping[str, Mapping[str, str]]] = {
    "services": {
        **_TIMES, "port": _INT, "retries": _INT, "connect_timeout": _INT, "read_timeout": _INT,
        "write_timeout": _INT, "tls_verify_depth": _INT, "enabled": _BOOL, "tls_verify": _BOOL,
        "ca_certificates": _LIST, "certificates": _LIST,
    },
    "routes": {
        **_TIMES, "protocols": _LIST, "methods": _LIST, "hosts": _LIST, "paths": _LIST, "snis": _LIST,
        "https_redirect_status_code": _INT, "regex_priority": _INT, "strip_path": _BOOL,
        "preserve_host": _BOOL, "request_buffering": _BOOL, "response_buffering": _BOOL,
    },
    "certificates": {**_TIMES, "snis": _LIST},
    "ca_certificates": dict(_TIMES),
    "snis": dict(_TIMES),
    "consumers": dict(_TIMES),
    "plugins": {**_TIMES, "protocols": _LIST, "enabled": _BOOL},
}  # fmt: skip
_INDEX: Final = re.compile(r"(.*)\[(\d*)\]")
_DIGITS: Final = re.compile(r"-?[0-9]{1,18}")
#: Nesting deeper than this in a form key is refused (Kong's configs nest 3–4 levels).
MAX_FORM_DEPTH: Final = 8


def media_type(headers: Mapping[str, str]) -> str:
    """Give the request's media type, lowercased, without parameters ("" when absent)."""
    return headers.get("content-type", "").split(";", 1)[0].strip().lower()


def parse_body(headers: Mapping[str, str], body: bytes, kind: str) -> dict[str, Any]:
    """Decode a write request's body into the entity's fields.

    Args:
        headers: request headers, lowercase names.
        body: the raw body.
        kind: the entity kind written (``services``, ...), for form field types.

    Returns:
        The fields as Kong would read them (an empty body gives ``{}``).

    Raises:
        AdminError: 415 for another media type, 400 for an undecodable body.
    """
    kind_types = FORM_TYPES.get(kind, {})
    media = media_type(headers)
    if media == "application/json" or (not media and not body.strip()):
        return _json(body)
    if media == "application/x-www-form-urlencoded":
        return _coerce(_nest(_urlencoded(body)), kind_types, kind)
    if media == "multipart/form-data":
        return _coerce(_nest(_multipart(headers.get("content-type", ""), body)), kind_types, kind)
    raise unsupported_media_type(media)


def _json(body: bytes) -> dict[str, Any]:
    if not body.strip():
        return {}
    try:
        data = json.loads(body, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:
        raise bad_body("Cannot parse JSON body") from exc
    if not isinstance(data, dict):
        raise bad_body("Cannot parse JSON body: expected an object")
    return data


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _urlencoded(body: bytes) -> list[tuple[str, str]]:
    try:
        text = body.decode("utf-8")
        return urllib.parse.parse_qsl(text, keep_blank_values=True, strict_parsing=False, max_num_fields=10_000)
    except (UnicodeDecodeError, ValueError) as exc:
        raise bad_body("Cannot parse form body: expected UTF-8 'key=value' pairs") from exc


def _multipart(content_type: str, body: bytes) -> list[tuple[str, str]]:
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode("latin-1", "replace")
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    if not message.is_multipart() or message.get_boundary() is None:
        raise bad_body("Cannot parse multipart body: missing or wrong boundary")
    pairs: list[tuple[str, str]] = []
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str) or not name:
            raise bad_body("Cannot parse multipart body: a part has no name")
        payload = part.get_payload(decode=True)
        try:
            text = payload.decode("utf-8") if isinstance(payload, bytes) else ""
        except UnicodeDecodeError as exc:
            raise bad_body(f"Cannot parse multipart body: part {name[:60]!r} is not UTF-8 text") from exc
        pairs.append((name, text))
    return pairs


def _nest(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Turn Kong form keys into nested fields (see the module docstring)."""
    top: dict[str, Any] = {}
    indexed: dict[tuple[int, str], dict[int, str]] = {}
    for key, value in pairs:
        parts = key.split(".")
        if len(parts) > MAX_FORM_DEPTH or not all(parts):
            raise bad_body(f"Cannot parse form key {key[:60]!r}")
        target = top
        for part in parts[:-1]:
            child = target.setdefault(part, {})
            if not isinstance(child, dict):
                raise bad_body(f"Cannot parse form key {key[:60]!r}: conflicts with another key")
            target = child
        _put(target, parts[-1], value, key, indexed)
    return top


def _put(target: dict[str, Any], last: str, value: str, key: str, indexed: dict[tuple[int, str], dict[int, str]]) -> None:
    match = _INDEX.fullmatch(last)
    name = match.group(1) if match else last
    if not name:
        raise bad_body(f"Cannot parse form key {key[:60]!r}")
    current = target.get(name)
    if isinstance(current, dict):
        raise bad_body(f"Cannot parse form key {key[:60]!r}: conflicts with another key")
    if match and match.group(2):  # paths[1]=...: place by index, order fixed at the end
        slots = indexed.setdefault((id(target), name), {})
        if len(match.group(2)) > 4:
            raise bad_body(f"Cannot parse form key {key[:60]!r}: index too large")
        slots[int(match.group(2))] = value
        target[name] = [slots[i] for i in sorted(slots)]
    elif match or name in target:
        items = current if isinstance(current, list) else ([] if current is None else [current])
        target[name] = [*items, value]
    else:
        target[name] = value


def _coerce(fields: dict[str, Any], types: Mapping[str, str], kind: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in fields.items():
        wanted = types.get(name)
        if wanted == _LIST:
            out[name] = [] if value == "" else value if isinstance(value, list) else [value]
        elif value == "":
            out[name] = None
        elif isinstance(value, str) and wanted == _INT and _DIGITS.fullmatch(value):
            out[name] = int(value)
        elif isinstance(value, str) and wanted == _BOOL and value in ("true", "false"):
            out[name] = value == "true"
        else:
            out[name] = value
    if kind == "routes" and isinstance(out.get("headers"), dict):
        out["headers"] = {k: v if isinstance(v, list) else [v] for k, v in out["headers"].items()}
    return out

