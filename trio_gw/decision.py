"""The whole decision about one request head: an answer from the gateway, or a forward upstream.

Theory of operation
-------------------
Both protocol drivers (``trio_gw.net.http1`` and ``trio_gw.net.http2``) parse a
request head, run their protocol's guards, and hand the result to
:func:`decide_request` with the connection's facts and the snapshot of the
generation the request pinned.  Everything else is decided here, without IO:

    ACME http-01 (plain HTTP, a host the acme plugin covers,
      /.well-known/acme-challenge/)                        → Answer 200 key authorization / 404
    ssl_ocsp (a client certificate of the server truststore)
                                     revoked / unknown     → Answer 401 revoked / revocation_unknown
    route (http.routing)            no match              → Answer 404 no_route
      → https enforcement            http on an https route → Answer 426 / redirect
      → plugins (plugins.base)       a denial              → Answer (status, reason)
      → the upstream request head    target, headers (hop-by-hop removed,
                                     X-Forwarded-* added, identity headers stripped,
                                     the plugins' headers added, re-framed chunked)
                                                           → Forward

A :class:`Forward` carries the upstream request head complete, and the id of
the service whose upstream plan (TLS context, pool key, timeouts) the IO layer
takes from the *same* generation: a request never mixes two configurations.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Protocol
from urllib.parse import parse_qsl, urlencode

from trio_gw.http.facts import ConnectionFacts, RequestFacts
from trio_gw.http.headers import upstream_request_headers
from trio_gw.http.routing import https_redirect, select_route
from trio_gw.model.entities import Consumer
from trio_gw.plugins.base import CrlSource, Deny, RequestContext, decide_all
from trio_gw.plugins.identity import IDENTITY_HEADERS
from trio_gw.snapshot import Snapshot
from trio_gw.tls.acme import HTTP01_NOT_FOUND, HTTP01_PREFIX, is_domain_allowed
from trio_gw.tls.client_revocation import OcspAnswers
from trio_gw.tls.truststore_revocation import check_truststore_revocation

__all__ = ["STRIP_UPSTREAM", "Answer", "ChallengeAnswers", "Forward", "decide_request", "without_params"]

Header = tuple[bytes, bytes]

#: Headers never forwarded from a client: ``Expect`` (the gateway answers
#: 100-continue itself) and every identity header the gateway sets, so no client
#: can claim a consumer or a certificate by sending them.
STRIP_UPSTREAM = frozenset({b"expect"}) | IDENTITY_HEADERS


@dataclass(slots=True)
class Forward:
    """Send the request upstream: the complete upstream request head, and whose plan to use.

    Treat as immutable; not ``frozen`` because one is built per proxied request
    and a frozen dataclass's ``__init__`` costs about a microsecond more.
    """

    service_id: str
    route_label: str
    service_label: str
    method: bytes
    target: bytes
    headers: list[Header]
    #: The consumer the plugins authenticated, for the access log and metrics.
    consumer: Consumer | None = None
    #: The request asks to switch to WebSocket, and its ``Upgrade`` goes upstream (a 101 is relayed).
    upgrade: bool = False


@dataclass(frozen=True, slots=True)
class Answer:
    """The gateway answers itself.

    ``body`` is ``None`` for a JSON error document (``message`` or the status's
    standard text, with ``reason``); otherwise it is the exact body, and
    ``headers`` carry everything but the length (the https redirect).
    ``route_label``/``service_label`` name what matched, and ``consumer`` who a
    plugin authenticated before another refused the request, for the access log.
    """

    status: int
    reason: str | None
    message: str | None = None
    headers: tuple[Header, ...] = ()
    body: bytes | None = None
    route_label: str | None = None
    service_label: str | None = None
    consumer: Consumer | None = None


class ChallengeAnswers(Protocol):
    """The ACME http-01 answers the node's issuer published (``trio_gw.net.acme_challenges.ChallengeStore``)."""

    def http01_response(self, target: str) -> bytes | None:
        """The key authorization for a ``/.well-known/acme-challenge/<token>`` path, or ``None``."""
        ...


_TEXT = ((b"content-type", b"text/plain"),)
_REVOKED_MESSAGE = "TLS certificate failed verification"


def decide_request(
    facts: RequestFacts,
    headers: Sequence[Header],
    conn: ConnectionFacts,
    snapshot: Snapshot,
    *,
    method: bytes,
    chunked: bool,
    now: float,
    upgrade: bool = False,
    crl_source: CrlSource | None = None,
    ocsp_source: OcspAnswers | None = None,
    challenges: ChallengeAnswers | None = None,
) -> Forward | Answer:
    """Decide what to do with one request head (both protocols; no IO).

    Args:
        facts: the request facts (the protocol's guards already passed).
        headers: the client's header fields, lowercase names (``host`` included).
        conn: the connection's facts (TLS version, SNI, client certificate, peer).
        snapshot: the snapshot of the generation the request pinned.
        method: the request method, as sent.
        chunked: the body's length is unknown: re-frame it chunked upstream.
        now: the time, for the plugins (certificate validity windows...).
        upgrade: the request asks for WebSocket and the driver can relay the
            switch (HTTP/1.1): its ``Upgrade`` goes upstream.
        crl_source: where the plugins find fetched CRLs.
        ocsp_source: where the plugins and ``ssl_ocsp`` find verified OCSP answers.
        challenges: the ACME http-01 answers published now.

    Returns:
        :class:`Forward` to go upstream, or the :class:`Answer` the gateway gives
        itself (an ACME validation, a revoked truststore certificate, 404 no
        route, https enforcement, a plugin's denial).
    """
    acme = snapshot.acme
    if acme is not None and not conn.tls and facts.path.startswith(HTTP01_PREFIX) and (
            is_domain_allowed(acme, facts.host)):
        body = challenges.http01_response(facts.path) if challenges is not None else None
        if body is None:
            return Answer(404, "acme_challenge_unknown", headers=_TEXT, body=HTTP01_NOT_FOUND)
        return Answer(200, "acme_challenge", headers=_TEXT, body=body)
    if conn.peer_certificate_der is not None and snapshot.truststore_revocation.active:
        refusal = check_truststore_revocation(
            snapshot.truststore_revocation, conn.peer_certificate_der, conn.peer_chain_der,
            crl_for=crl_source.crl_for if crl_source is not None else None, ocsp=ocsp_source, now=now)
        if refusal is not None:
            return Answer(401, refusal[0], _REVOKED_MESSAGE)
    match = select_route(snapshot.router, facts)
    if match is None:
        return Answer(404, "no_route")
    route_label = match.route.name or match.route.id
    service_label = match.service.name or match.service.id
    if match.https_required:
        redirect = https_redirect(match, facts, snapshot.https_port)
        return Answer(redirect.status, "https_required", headers=redirect.headers, body=redirect.body,
                      route_label=route_label, service_label=service_label)
    extra: tuple[Header, ...] = ()
    consumer: Consumer | None = None
    strip = STRIP_UPSTREAM
    plugins = snapshot.route_plugins.get(match.route.id, ())
    if plugins:
        decision = decide_all(plugins, RequestContext(
            facts=facts, headers=headers, client_ip=conn.client_ip,
            trusted_client=conn.is_trusted(snapshot.trusted), tls=conn.tls,
            tls_version=conn.tls_version, sni=conn.sni, now=now,
            peer_certificate_der=conn.peer_certificate_der, peer_chain_der=conn.peer_chain_der,
            crl_source=crl_source, ocsp_source=ocsp_source,
        ))
        if isinstance(decision, Deny):
            return Answer(decision.status, decision.reason, decision.message, headers=decision.headers,
                          route_label=route_label, service_label=service_label, consumer=decision.consumer)
        consumer = decision.consumer
        extra = decision.upstream_headers
        if decision.strip_headers:
            strip = STRIP_UPSTREAM | decision.strip_headers
        if decision.strip_query and facts.query:
            facts = replace(facts, query=without_params(facts.query, decision.strip_query))
    up_headers = upstream_request_headers(
        headers, match, facts, client_ip=conn.client_ip, server_port=conn.server_port,
        trusted=conn.is_trusted(snapshot.trusted), strip=strip, upgrade=upgrade,
    )
    up_headers.extend(extra)
    if chunked:  # re-frame: the hop-by-hop filter dropped the client's framing
        up_headers.append((b"transfer-encoding", b"chunked"))
    target = match.upstream_path.encode() + (b"?" + facts.query.encode() if facts.query else b"")
    return Forward(match.service.id, route_label, service_label, method, target, up_headers, consumer, upgrade)


def without_params(query: str, names: frozenset[str]) -> str:
    """``query`` without the parameters ``names`` (a hidden API key never reaches the upstream)."""
    return urlencode([(k, v) for k, v in parse_qsl(query, keep_blank_values=True) if k not in names])
