"""The certificate-lifecycle steps of decision.decide_request: ACME http-01, ssl_ocsp; and the acme plugin's scope."""

from __future__ import annotations

from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from trio_gw.decision import Answer, Forward, decide_request
from trio_gw.errors import ConfigError
from trio_gw.http.facts import ConnectionFacts, RequestFacts
from trio_gw.model.declarative import parse_declarative
from trio_gw.settings import default_settings
from trio_gw.snapshot import Snapshot, build_snapshot
from trio_gw.testing.pki import crl_pem, issue, make_ca

NOW = 1_750_000_000
TOKEN = "A" * 43
ACME = {"name": "acme", "config": {"account_email": "ops@example.test", "api_uri": "https://127.0.0.1:14000/dir",
                                   "domains": ["*.example.test"]}}
SERVICE = {"name": "s", "url": "http://127.0.0.1:9", "routes": [{"name": "r", "paths": ["/"]}]}


class Challenges:
    def __init__(self, answers: dict[str, str]) -> None:
        self.answers = answers

    def http01_response(self, target: str) -> bytes | None:
        token = target.rsplit("/", 1)[-1]
        answer = self.answers.get(token)
        return answer.encode() if answer is not None else None


def snapshot(doc: dict[str, Any]) -> Snapshot:
    entities = parse_declarative({"_format_version": "3.0", **doc}, now=NOW)
    return build_snapshot(default_settings(), entities, now=NOW)


def decide(snap: Snapshot, path: str, *, host: str = "api.example.test", tls: bool = False,
           challenges: Challenges | None = None, cert: bytes | None = None, **kw: Any) -> Forward | Answer:
    facts = RequestFacts("GET", host, path, protocol="https" if tls else "http")
    conn = ConnectionFacts("127.0.0.1", 40000, 443 if tls else 80, tls=tls, peer_certificate_der=cert)
    return decide_request(facts, [(b"host", host.encode())], conn, snap, method=b"GET", chunked=False, now=NOW,
                          challenges=challenges, **kw)


def test_http01_is_answered_before_routing() -> None:
    snap = snapshot({"plugins": [ACME], "services": [SERVICE]})
    known = decide(snap, f"/.well-known/acme-challenge/{TOKEN}", challenges=Challenges({TOKEN: "key.auth"}))
    assert isinstance(known, Answer) and (known.status, known.reason, known.body) == (200, "acme_challenge",
                                                                                   b"key.auth")
    assert (b"content-type", b"text/plain") in known.headers
    unknown = decide(snap, "/.well-known/acme-challenge/x", challenges=Challenges({}))
    assert isinstance(unknown, Answer) and (unknown.status, unknown.body) == (404, b"Not found\n")  # Kong's body


@pytest.mark.parametrize("case", ["tls", "host not covered", "no acme plugin", "other path"])
def test_http01_only_where_the_plugin_answers(case: str) -> None:
    doc: dict[str, Any] = {"services": [SERVICE]} if case == "no acme plugin" else {"plugins": [ACME],
                                                                                 "services": [SERVICE]}
    snap = snapshot(doc)
    path = "/.well-known/other" if case == "other path" else f"/.well-known/acme-challenge/{TOKEN}"
    decision = decide(snap, path, tls=case == "tls", host="www.other.test" if case == "host not covered"
                      else "api.example.test", challenges=Challenges({TOKEN: "key.auth"}))
    assert isinstance(decision, Forward)  # routed like any request


def test_acme_is_a_global_plugin_only() -> None:
    with pytest.raises(ConfigError) as info:
        snapshot({"services": [{**SERVICE, "plugins": [ACME]}]})
    assert "the acme plugin can only be configured as a global plugin" in str(info.value)
    snap = snapshot({"plugins": [ACME], "services": [SERVICE]})
    assert snap.acme is not None and snap.acme.domains == ("*.example.test",)
    assert all(not plugins for plugins in snap.route_plugins.values())  # configures the node, never bound to routes


def test_ssl_ocsp_refuses_before_routing() -> None:
    root = make_ca(common_name="clients")
    alice, bob = issue(root, "alice.test"), issue(root, "bob.test")
    entities = parse_declarative({"_format_version": "3.0", "services": [SERVICE]}, now=NOW)
    crl = crl_pem(root, [alice], now=NOW).encode()
    snap = build_snapshot(default_settings(ssl_verify_client="on", ssl_ocsp="leaf"), entities, now=NOW,
                          client_truststore=[root.cert_pem()], client_crls=[crl])
    refused = decide(snap, "/nowhere", host="x.test", tls=True, cert=alice.cert.public_bytes(Encoding.DER))
    assert isinstance(refused, Answer) and (refused.status, refused.reason) == (401, "revoked")
    allowed = decide(snap, "/", tls=True, cert=bob.cert.public_bytes(Encoding.DER))
    assert isinstance(allowed, Forward)
    without = decide(snap, "/", tls=True)
    assert isinstance(without, Forward)  # no certificate, nothing to check (ssl_verify_client decides)
