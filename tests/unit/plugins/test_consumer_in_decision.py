"""The consumer the plugins authenticated travels with the decision (access log, metrics): on a Forward, and on
an Answer when a later plugin refused the authenticated request — never when nobody was authenticated."""

from __future__ import annotations

from typing import Any

from trio_gw.decision import Answer, Forward, decide_request
from trio_gw.http.facts import ConnectionFacts, RequestFacts
from trio_gw.model.entities import Consumer
from trio_gw.plugins.base import Allow, BoundPlugin, Deny, PluginSpec, RequestContext, decide_all
from trio_gw.settings import default_settings
from trio_gw.snapshot import build_snapshot

from .conftest import NOW, Pki, document, load, request

ALICE = Consumer(id="c-alice", username="alice")


def _spec(name: str, priority: int, decision: Allow | Deny) -> BoundPlugin:
    def decide(_config: Any, _request: RequestContext) -> Allow | Deny:
        return decision

    return BoundPlugin(PluginSpec(name=name, priority=priority, parse_config=lambda c, _p: c, decide=decide), {})


def test_a_refusal_after_authentication_names_the_consumer(pki: Pki) -> None:
    identify = _spec("identify", 20, Allow(consumer=ALICE, credential="cr-1"))
    refuse = _spec("refuse", 10, Deny(403, "Forbidden", "not_allowed"))
    denied = decide_all((identify, refuse), request())
    assert isinstance(denied, Deny) and denied.consumer == ALICE and denied.reason == "not_allowed"
    # refused before anyone was authenticated: no consumer
    first = decide_all((refuse, identify), request())
    assert isinstance(first, Deny) and first.consumer is None
    allowed = decide_all((identify,), request())
    assert isinstance(allowed, Allow) and allowed.consumer == ALICE


def _decide(pki: Pki, cert: Any, plugins: list[dict[str, Any]]) -> Forward | Answer:
    doc = document(pki, plugins=plugins, consumers=[
        {"username": "alice", "mtls_auth_credentials": [{"certificate": pki.alice.cert_pem()}]},
        {"username": "bob", "keyauth_credentials": [{"key": "bob-key"}]}])
    snapshot = build_snapshot(default_settings(), load(doc), now=NOW)
    facts = RequestFacts(method="GET", host="api.example", path="/x", protocol="https", sni="api.example")
    conn = ConnectionFacts("192.0.2.1", 5000, 443, tls=True, tls_version="TLSv1.3", sni="api.example",
                           peer_certificate_der=cert.cert_der() if cert is not None else None)
    return decide_request(facts, [(b"host", b"api.example")], conn, snapshot, method=b"GET", chunked=False, now=NOW)


def test_a_forward_carries_the_consumer_the_certificate_identified(pki: Pki) -> None:
    forward = _decide(pki, pki.alice, [{"name": "mtls-auth", "config": {}}])  # the credential anchors its leaf
    assert isinstance(forward, Forward) and forward.consumer is not None and forward.consumer.username == "alice"
    refused = _decide(pki, None, [{"name": "mtls-auth", "config": {}}])
    assert isinstance(refused, Answer) and refused.reason == "no_cert" and refused.consumer is None


def test_an_answer_names_who_a_later_plugin_refused(pki: Pki) -> None:
    both = [{"name": "mtls-auth", "config": {}}, {"name": "key-auth", "config": {}}]
    answer = _decide(pki, pki.alice, both)  # mtls-auth (1600) identifies alice, key-auth (1250) wants a key
    assert isinstance(answer, Answer) and answer.status == 401
    assert answer.consumer is not None and answer.consumer.username == "alice"
