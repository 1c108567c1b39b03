"""Kong's ``key-auth`` with Tyk 5.12 certificate-token binding.

Configuration (Kong's names and defaults): ``key_names`` (``["apikey"]``),
``key_in_header`` (true), ``key_in_query`` (true), ``key_in_body`` (only
false), ``hide_credentials`` (false: the key header is removed from the
upstream request when true; a key in the query string is left in place),
``anonymous``, ``run_on_preflight`` (accepted); trio-gw adds
``require_subscription`` (Gravitee plans).

Keys are ``keyauth_credentials`` (``key``), each with an optional validity
window and status like every credential.  A key listing
``bound_certificates`` (fingerprints) is accepted only on a connection whose
client certificate is one of them → otherwise 401 ``binding_mismatch``: the
key alone does not prove possession of the certificate's private key.  The
node setting ``allow_unsafe_dynamic_mtls_token`` (Tyk's name, default off)
restores the legacy token-only behaviour when *no* certificate is presented;
every key-auth plugin then appears in the node's warnings.
"""

from __future__ import annotations

import hashlib
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final

from trio_gw.errors import ConfigError, Problem
from trio_gw.model.credentials import Credential
from trio_gw.model.entities import Consumer, Route
from trio_gw.model.fields import Context, Fields
from trio_gw.model.values import InvalidValue
from trio_gw.plugins.base import Allow, Decision, Deny, PluginSpec, PrepareEnv, RequestContext, register
from trio_gw.plugins.identity import IDENTITY_HEADERS, consumer_headers
from trio_gw.plugins.mtls_auth import sni_host_mismatch

#: Kong's key-auth priority.
PRIORITY = 1250
_FIELDS: Final = ("key_names", "key_in_header", "key_in_query", "key_in_body", "hide_credentials",
                  "anonymous", "run_on_preflight", "realm", "require_subscription")


@dataclass(frozen=True)
class KeyAuth:
    """The prepared plugin: keys → credentials, consumers, subscriptions."""

    config: Mapping[str, Any]
    keys: Mapping[str, Credential]
    consumers: Mapping[str, Consumer]
    anonymous: Consumer | None
    subscription_windows: Mapping[tuple[str, str], tuple[Credential, ...]] = field(default_factory=dict)
    allow_unsafe_token: bool = False
    service: str | None = None


def parse_config(raw: Mapping[str, Any], path: str) -> Mapping[str, Any]:
    """Check the config; returns it with every default filled in."""
    ctx = Context(problems=[], now=0)
    f = Fields(raw, "", ctx)
    f.check_keys(_FIELDS)
    out = {
        "key_names": list(f.strings("key_names", _key_name, ("apikey",))),
        "key_in_header": f.boolean("key_in_header", True),
        "key_in_query": f.boolean("key_in_query", True),
        "key_in_body": f.boolean("key_in_body", False),
        "hide_credentials": f.boolean("hide_credentials", False),
        "anonymous": f.string("anonymous"),
        "run_on_preflight": f.boolean("run_on_preflight", True),
        "realm": f.string("realm"),
        "require_subscription": f.boolean("require_subscription", False),
    }
    if out["key_in_body"]:
        f.report("key_in_body", "not supported yet (only false)")
    if not out["key_names"]:
        f.report("key_names", "must list at least one name")
    if ctx.problems:
        raise ConfigError(ctx.problems)
    return out


def _key_name(value: str) -> str:
    if not value.isascii() or not all(c.isalnum() or c in "-_" for c in value):
        raise InvalidValue("expected a header or query parameter name (letters, digits, '-' and '_')")
    return value


def prepare(config: Mapping[str, Any], env: PrepareEnv) -> KeyAuth:
    """Index keys and subscriptions once per snapshot."""
    entities = env.entities
    anonymous = None
    ref = config.get("anonymous")
    if ref is not None:
        anonymous = entities.consumers.get(str(ref).lower()) or next(
            (c for c in entities.consumers.values() if c.username == ref), None
        )
        if anonymous is None:
            raise ConfigError([Problem("anonymous", f"no consumer with id or username {ref!r}")])
    creds = sorted(entities.credentials.values(), key=lambda c: c.created_at)
    subscriptions: dict[tuple[str, str], tuple[Credential, ...]] = {}
    for c in creds:
        if c.kind == "subscription" and c.service is not None:
            subscriptions[(c.consumer, c.service)] = (*subscriptions.get((c.consumer, c.service), ()), c)
    return KeyAuth(
        config=dict(config),
        keys={c.key: c for c in creds if c.kind == "key_auth" and c.key is not None},
        consumers=entities.consumers,
        anonymous=anonymous,
        subscription_windows=subscriptions,
        allow_unsafe_token=bool(env.options.get("allow_unsafe_dynamic_mtls_token", False)),
    )


def for_route(prepared: KeyAuth, route: Route) -> KeyAuth:
    """Bind the route's service (subscriptions)."""
    return replace(prepared, service=route.service) if prepared.config.get("require_subscription") else prepared


def warnings(prepared: KeyAuth) -> Sequence[str]:
    """The unsafe token-only mode, when on and some key is bound to certificates."""
    if prepared.allow_unsafe_token and any(c.bound_certificates for c in prepared.keys.values()):
        return ("allow_unsafe_dynamic_mtls_token is on: keys bound to client certificates are accepted "
                "without the certificate (the key alone does not prove possession of the private key)",)
    return ()


def decide(plugin: KeyAuth, request: RequestContext) -> Decision:
    """Authenticate by API key, enforcing certificate binding."""
    config = plugin.config
    names = [str(n) for n in config["key_names"]]
    strip = IDENTITY_HEADERS | (frozenset(n.lower().encode() for n in names) if config["hide_credentials"] else frozenset())
    if request.facts.method == "OPTIONS" and not config.get("run_on_preflight", True):
        return Allow(strip_headers=strip)
    key = _find_key(plugin, names, request)
    if key is None:
        return _fail(plugin, strip, 401, "No API key found in request", "no_key")
    cred = plugin.keys.get(key)
    if cred is None:
        return _fail(plugin, strip, 401, "Invalid authentication credentials", "invalid_key")
    refusal = cred.refusal(request.now)
    if refusal is not None:
        return Deny(401, f"Invalid authentication credentials: the key is {refusal.replace('_', ' ')}", refusal)
    if cred.bound_certificates and not _binding_ok(plugin, cred, request):
        # A connection opened for another host may never have been asked for a
        # certificate (tls/listener_client_auth.py asks per server name): 421 makes
        # the client retry on a connection of its own, as mtls-auth does.
        mismatch = sni_host_mismatch(request)
        if mismatch is not None:
            return mismatch
        return Deny(401, "The API key is bound to a client certificate that was not presented",
                    "binding_mismatch")
    consumer = plugin.consumers.get(cred.consumer)
    if config.get("require_subscription") and not _subscribed(plugin, cred.consumer, request.now):
        return Deny(403, "no active subscription to this API", "no_subscription")
    hidden = frozenset(names) if config["hide_credentials"] else frozenset()
    return Allow(consumer_headers(consumer, credential=cred.id), consumer, strip, cred.id, strip_query=hidden)


def _find_key(plugin: KeyAuth, names: list[str], request: RequestContext) -> str | None:
    config = plugin.config
    if config["key_in_header"]:
        for name in names:
            value = request.header(name.lower().encode())
            if value:
                return value.decode("latin-1")
    if config["key_in_query"] and request.facts.query:
        query = urllib.parse.parse_qs(request.facts.query, keep_blank_values=False)
        for name in names:
            if query.get(name):
                return query[name][0]
    return None


def _binding_ok(plugin: KeyAuth, cred: Credential, request: RequestContext) -> bool:
    leaf = request.peer_certificate_der
    if not leaf:
        return plugin.allow_unsafe_token
    return hashlib.sha256(leaf).hexdigest() in cred.bound_certificates


def _subscribed(plugin: KeyAuth, consumer: str, now: float) -> bool:
    if plugin.service is None:
        return False
    return any(s.refusal(now) is None for s in plugin.subscription_windows.get((consumer, plugin.service), ()))


def _fail(plugin: KeyAuth, strip: frozenset[bytes], status: int, message: str, reason: str) -> Decision:
    if plugin.anonymous is not None:
        return Allow(consumer_headers(plugin.anonymous, anonymous=True), plugin.anonymous, strip)
    return Deny(status, message, reason, headers=((b"www-authenticate", b'Key realm="trio-gw"'),))


SPEC = register(PluginSpec(
    name="key-auth", priority=PRIORITY, parse_config=parse_config, decide=decide,
    prepare=prepare, for_route=for_route, warnings=warnings,
))
