"""Kong's ``acme`` plugin: its configuration, checked like any plugin's, and the node's ACME settings from it.

Theory of operation
-------------------
The ``acme`` plugin does nothing per request: it configures the node.  Like
Kong's it "can only be configured as a global plugin"; a configuration with
one on a route, a service or a consumer is refused (:func:`acme_config`,
naming the plugin), and so are two of them.  Its configuration keeps Kong's
names and defaults (:func:`trio_gw.tls.acme.parse_acme_config`); the
``eab_hmac_key`` is secret (sealed at rest, never shown by the Admin API).

What the node does with it is elsewhere: the snapshot carries the parsed
:class:`~trio_gw.tls.acme.AcmeConfig` (:func:`acme_config`), the request
decision answers http-01 validations before routing for the hosts it covers,
the SNI callback answers tls-alpn-01 validations, and the runtime's ACME task
issues and renews (``trio_gw.runtime.acme_service``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from trio_gw.errors import ConfigError, Problem
from trio_gw.model.entities import Entities
from trio_gw.plugins.base import ALLOW, Decision, PluginSpec, RequestContext, register
from trio_gw.tls.acme import ACME_SECRET_FIELDS, AcmeConfig, parse_acme_config

__all__ = ["NAME", "SPEC", "acme_config"]

NAME = "acme"
#: Kong's priority for ``acme`` (it runs first, in the access phase, to answer challenges).
PRIORITY = 1705


def parse_config(raw: Mapping[str, Any], path: str) -> Mapping[str, Any]:
    """Check Kong's ``acme`` configuration and return it with Kong's defaults filled in.

    Raises:
        ConfigError: every problem, at its key's path.
    """
    config = parse_acme_config(raw, path)
    out = dataclasses.asdict(config)
    out["domains"] = list(config.domains)
    out["storage_config"] = dict(raw.get("storage_config") or {})
    return out


def decide(config: Any, request: RequestContext) -> Decision:
    """Nothing per request: challenges are answered before routing (see the module docstring)."""
    return ALLOW


def acme_config(entities: Entities) -> AcmeConfig | None:
    """The node's ACME configuration: the one enabled, global ``acme`` plugin, or ``None``.

    Raises:
        ConfigError: an ``acme`` plugin on a route, service or consumer, or more than one.
    """
    problems: list[Problem] = []
    found = []
    for plugin in sorted(entities.plugins.values(), key=lambda p: p.id):
        if plugin.name != NAME:
            continue
        for scope in ("route", "service", "consumer"):
            if getattr(plugin, scope) is not None:
                problems.append(Problem(f"plugins[{plugin.id}].{scope}",
                                        "the acme plugin can only be configured as a global plugin"))
        if plugin.enabled:
            found.append(plugin)
    if len(found) > 1:
        problems.append(Problem(f"plugins[{found[1].id}]", "only one acme plugin can be enabled"))
    if problems:
        raise ConfigError(problems)
    if not found:
        return None
    return parse_acme_config(found[0].config, f"plugins[{found[0].id}].config")


SPEC = register(PluginSpec(
    name=NAME, priority=PRIORITY, parse_config=parse_config, decide=decide,
    secret_fields=ACME_SECRET_FIELDS, per_request=False,
))
