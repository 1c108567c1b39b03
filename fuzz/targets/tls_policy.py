"""Fuzz target ``tls-policy``: cipher, version and session settings → TLS policy → SSLContext.

The input is split on ``|`` into values for the downstream setting keys
(``DOWNSTREAM_SETTING_KEYS``, in order) and, after a ``#``, the upstream keys.
An empty value means "unset" (``None``); for the boolean settings the values
``on``/``off`` become ``True``/``False`` (the settings loader's types) and
anything else is passed through as text.  A policy that parses is then carried
out on a real ``ssl.SSLContext`` by the gateway's own context builder.
"""

from __future__ import annotations

import ssl
from typing import Any

from fuzz.targets._support import InvariantViolation
from trio_gw.errors import ConfigError
from trio_gw.net.contexts import new_server_context
from trio_gw.tls.downstream import (
    DOWNSTREAM_SETTING_KEYS,
    UPSTREAM_SETTING_KEYS,
    parse_downstream_policy,
    parse_upstream_policy,
)

INVARIANT = """\
Any setting values give a policy or ``ConfigError``, nothing else; a policy's
``describe()``/``warnings()`` never raise; and a downstream policy that parses
can be applied to an ``SSLContext`` by ``net.contexts.new_server_context``
without an error (``set_ciphers`` never meets a name the parser accepted).
"""

_BOOLEAN_KEYS = {"ssl_prefer_server_ciphers", "ssl_session_tickets", "proxy_ssl_disable_renegotiation"}


def _value(key: str, raw: bytes) -> Any:
    text = raw.decode("utf-8", "replace")
    if text == "":
        return None
    if key in _BOOLEAN_KEYS and text in ("on", "off"):
        return text == "on"
    return text


def settings_from(data: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
    """The downstream and upstream setting mappings an input stands for."""
    down, _, up = data.partition(b"#")
    downstream = {k: _value(k, v) for k, v in zip(DOWNSTREAM_SETTING_KEYS, down.split(b"|"))}
    upstream = {k: _value(k, v) for k, v in zip(UPSTREAM_SETTING_KEYS, up.split(b"|"))}
    return downstream, upstream


def fuzz_one(data: bytes) -> None:
    """Parse both policies from ``data``; apply a downstream policy to a context."""
    downstream, upstream = settings_from(data)
    try:
        policy = parse_downstream_policy(downstream)
    except ConfigError:
        pass
    else:
        policy.describe()
        policy.warnings()
        try:
            new_server_context(policy)
        except (ssl.SSLError, ValueError) as exc:
            raise InvariantViolation(f"accepted policy {policy.describe()!r} cannot be applied: {exc!r}") from exc
    try:
        up = parse_upstream_policy(upstream)
    except ConfigError:
        return
    up.describe()
    up.warnings()


SEEDS: dict[str, bytes] = {
    "defaults": b"",
    "kong-protocols": b"TLSv1.2 TLSv1.3|||intermediate||on|on|1d",
    "custom-iana": b"||1.3|custom|TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384|off|off|5m",
    "custom-openssl": b"|1.2|1.2|custom|ECDHE-RSA-AES128-GCM-SHA256,ECDHE-ECDSA-CHACHA20-POLY1305|on|on|300",
    "old": b"|||old||||",
    "modern-12": b"|TLSv1.2||modern||||",
    "inverted": b"|1.3|1.2|||||",
    "upstream": b"#1.2|1.3|ECDHE-ECDSA-AES256-GCM-SHA384|on",
    "tls10": b"TLSv1 TLSv1.1|||custom|AES128-SHA||||",
    "cipher-words": b"|||custom|ALL:!aNULL:@SECLEVEL=0||||",
}
