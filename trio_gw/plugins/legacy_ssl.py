"""Kong's legacy ``ssl`` plugin: a certificate per API, and HTTPS-only APIs.

* ``config.cert`` / ``config.key``: the certificate is bound to the hosts of the
  routes the plugin applies to (the old ``request_host``).  The snapshot turns it
  into an SNI candidate of *custom-domain* scope, so it wins over global
  certificates matched by name (Tyk's rule for API custom domains).
* ``config.only_https``: plain-HTTP requests get 426 ``Please use HTTPS protocol``
  (with ``Upgrade: TLS/1.2, HTTP/1.1``) — unless
  ``config.accept_http_if_already_terminated`` is on, the request carries
  ``X-Forwarded-Proto: https`` *and* comes from ``trusted_ips``: a header from
  anyone else proves nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from trio_gw.errors import ConfigError, Problem
from trio_gw.model.certificates import parse_certificate_entity
from trio_gw.model.fields import field_label
from trio_gw.plugins.base import ALLOW, Decision, Deny, PluginSpec, RequestContext, register

FIELDS = ("cert", "key", "only_https", "accept_http_if_already_terminated")


def parse_config(raw: Mapping[str, Any], path: str) -> Mapping[str, Any]:
    """Check the plugin config; a certificate pair is validated like a certificate entity."""
    problems = [Problem(field_label(k), "unknown field") for k in raw if k not in FIELDS]
    out: dict[str, Any] = {}
    for flag in ("only_https", "accept_http_if_already_terminated"):
        value = raw.get(flag, False)
        if not isinstance(value, bool):
            if isinstance(value, str) and value.lower() in ("true", "false"):
                value = value.lower() == "true"
            else:
                problems.append(Problem(flag, f"expected a boolean, got {value!r}"))
        out[flag] = value
    cert, key = raw.get("cert"), raw.get("key")
    if (cert is None) != (key is None):
        problems.append(Problem("key" if key is None else "cert", "cert and key must be given together"))
    elif cert is not None:
        try:
            # now=0: plugin schemas get no clock; an expired pair is reported by the
            # node's expiry warnings instead of being refused here.
            entity = parse_certificate_entity({"cert": cert, "key": key}, now=0, id="ssl-plugin")
            out["cert"], out["key"] = entity.cert, entity.key
        except ConfigError as exc:
            problems.extend(exc.problems)
    if problems:
        raise ConfigError(problems)
    return out


def decide(config: Mapping[str, Any], request: RequestContext) -> Decision:
    if not config.get("only_https") or request.tls:
        return ALLOW
    if (
        config.get("accept_http_if_already_terminated")
        and request.trusted_client
        and (request.header(b"x-forwarded-proto") or b"").lower() == b"https"
    ):
        return ALLOW
    return Deny(426, "Please use HTTPS protocol", "https_required",
                headers=((b"upgrade", b"TLS/1.2, HTTP/1.1"), (b"connection", b"Upgrade")))


SPEC = register(PluginSpec(name="ssl", priority=1000, parse_config=parse_config, decide=decide,
                          secret_fields=frozenset({"key"})))
